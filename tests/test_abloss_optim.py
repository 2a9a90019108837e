"""ABLoss, ABSGD / ABAdam and the lockstep resume of a whole training state."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from absgd import ABSGD, ABAdam, ABLoss, ABWeighting, schedules


def test_abloss_equals_weighting_of_the_per_sample_criterion():
    torch.manual_seed(0)
    logits, y = torch.randn(10, 4), torch.randint(0, 4, (10,))
    criterion = nn.CrossEntropyLoss(reduction="none")
    loss_fn = ABLoss(criterion, lam=0.7, gamma=0.5)
    plain = ABWeighting(0.7, gamma=0.5)
    for shift in (0.0, 1.0, -2.0):
        out = loss_fn(logits + shift * torch.arange(4.0), y)
        ref = plain(criterion(logits + shift * torch.arange(4.0), y))
        assert torch.equal(out, ref)
    assert torch.equal(loss_fn.last_weights, plain.last_weights)


def test_abloss_with_infinite_lambda_is_the_mean_loss():
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    out = ABLoss(nn.CrossEntropyLoss(reduction="none"), lam=math.inf)(logits, y)
    torch.testing.assert_close(out, nn.functional.cross_entropy(logits, y))


def test_abloss_refuses_a_reducing_criterion_and_a_non_callable():
    with pytest.raises(ValueError, match=r"reduction='mean'.*reduction='none'"):
        ABLoss(nn.CrossEntropyLoss(), lam=1.0)
    with pytest.raises(TypeError, match="callable"):
        ABLoss("ce", lam=1.0)  # type: ignore[arg-type]


def test_abloss_refuses_a_criterion_that_returns_the_wrong_shape():
    loss_fn = ABLoss(lambda out, y: nn.functional.cross_entropy(out, y), lam=1.0)
    with pytest.raises(ValueError, match="one loss per sample"):
        loss_fn(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))


def test_abloss_state_dict_holds_the_weighting_state_and_restores_lambda():
    a = ABLoss(nn.CrossEntropyLoss(reduction="none"), lam=0.25)
    a(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]))
    assert {"weighting.log_s_ref", "weighting.step", "weighting.lam_value"} <= set(a.state_dict())
    b = ABLoss(nn.CrossEntropyLoss(reduction="none"), lam=9.0)
    b.load_state_dict(a.state_dict())
    assert b.lam == pytest.approx(0.25)
    b.lam = 3.0
    assert b.weighting.lam == 3.0


# -- optimisers -------------------------------------------------------------------------------


def test_absgd_defaults_and_step_equal_a_hand_written_heavy_ball_update():
    torch.manual_seed(1)
    w0 = torch.randn(5)
    param = nn.Parameter(w0.clone())
    opt = ABSGD([param], lr=0.1, weight_decay=0.01)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"] is False
    w, v = w0.clone().double(), torch.zeros(5, dtype=torch.float64)
    for k in range(4):
        g = torch.full((5,), float(k + 1))
        param.grad = g.clone()
        opt.step()
        d = g.double() + 0.01 * w
        v = d if k == 0 else 0.9 * v + d  # torch's heavy ball: buffer = grad on the first step
        w = w - 0.1 * v
    torch.testing.assert_close(param.detach().double(), w, rtol=1e-6, atol=1e-7)


def test_absgd_nesterov_step_equals_a_hand_written_update():
    # Sutskever-style Nesterov as torch writes it: v ← μ v + d (v = d on the first step),
    # w ← w − lr (d + μ v), with d = g + wd·w.
    w0 = torch.tensor([0.5, -1.0, 2.0])
    param = nn.Parameter(w0.clone())
    opt = ABSGD([param], lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True)
    w, v = w0.clone().double(), torch.zeros(3, dtype=torch.float64)
    for k, g in enumerate(([1.0, 2.0, -1.0], [0.5, -3.0, 0.0], [2.0, 1.0, 1.0])):
        param.grad = torch.tensor(g)
        opt.step()
        d = torch.tensor(g, dtype=torch.float64) + 0.1 * w
        v = d if k == 0 else 0.8 * v + d
        w = w - 0.05 * (d + 0.8 * v)
    torch.testing.assert_close(param.detach().double(), w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_abadam_steps_equal_a_hand_written_adam(amsgrad):
    # m ← β1 m + (1−β1) d, v ← β2 v + (1−β2) d², v̂ = max of the v so far with amsgrad,
    # w ← w − lr · (m / (1−β1^t)) / (sqrt(v̂ / (1−β2^t)) + eps), d = g + wd·w. The gradients
    # shrink, so that amsgrad's running maximum differs from v.
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.9, 0.1, 0.05
    w0 = torch.tensor([1.0, -2.0])
    param = nn.Parameter(w0.clone())
    opt = ABAdam([param], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, amsgrad=amsgrad)
    w = w0.clone().double()
    m, v, v_max = (torch.zeros(2, dtype=torch.float64) for _ in range(3))
    for t, g in enumerate(([4.0, -2.0], [1.0, 0.5], [0.1, -0.1]), start=1):
        param.grad = torch.tensor(g)
        opt.step()
        d = torch.tensor(g, dtype=torch.float64) + wd * w
        m = b1 * m + (1 - b1) * d
        v = b2 * v + (1 - b2) * d * d
        v_max = torch.maximum(v_max, v)
        v_hat = (v_max if amsgrad else v) / (1 - b2**t)
        w = w - lr * (m / (1 - b1**t)) / (v_hat.sqrt() + eps)
    torch.testing.assert_close(param.detach().double(), w, rtol=1e-6, atol=1e-7)


def test_abadam_is_adam_with_its_defaults():
    param = nn.Parameter(torch.ones(3))
    opt = ABAdam([param])
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.9, 0.999)
    assert isinstance(opt, torch.optim.Adam)


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (ABSGD, {"lr": -0.1}, "lr must be a finite number >= 0, got -0.1"),
        (ABSGD, {"lr": 0.1, "momentum": -1}, "momentum"),
        (ABSGD, {"lr": 0.1, "weight_decay": -1e-4}, "weight_decay"),
        (ABSGD, {"lr": 0.1, "momentum": 0.0, "nesterov": True}, "nesterov"),
        (ABAdam, {"lr": float("nan")}, "lr"),
        (ABAdam, {"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\)"),
        (ABAdam, {"eps": 0.0}, "eps"),
    ],
)
def test_bad_optimizer_options_are_refused(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls([nn.Parameter(torch.ones(2))], **kwargs)


# -- lockstep resume --------------------------------------------------------------------------


def _make(lam: float, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = ABSGD(model.parameters(), lr=0.1, weight_decay=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, schedules.WarmupStepLR(warmup=2, milestones=(5,), factors=(0.1,))
    )
    loss_fn = ABLoss(nn.CrossEntropyLoss(reduction="none"), lam=lam, gamma=0.8)
    return model, opt, sched, loss_fn


def _train_step(model, opt, sched, loss_fn, x, y, lam_schedule, t):
    loss_fn.lam = lam_schedule(t)
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    sched.step()
    return loss.detach()


def test_lockstep_resume_of_model_optimizer_scheduler_and_weighting():
    g = torch.Generator().manual_seed(7)
    data = [
        (torch.randn(16, 6, generator=g), torch.randint(0, 4, (16,), generator=g))
        for _ in range(12)
    ]
    lam_schedule = schedules.two_stage(0.5, switch=3)
    a = _make(lam=math.inf)
    for t in range(6):
        _train_step(*a, *data[t], lam_schedule, t)

    buf = io.BytesIO()
    torch.save({name: obj.state_dict() for name, obj in zip("mosl", a, strict=True)}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    b = _make(lam=2.0, seed=123)  # fresh objects, different init and λ
    for name, obj in zip("mosl", b, strict=True):
        obj.load_state_dict(saved[name])

    for t in range(6, 12):
        la = _train_step(*a, *data[t], lam_schedule, t)
        lb = _train_step(*b, *data[t], lam_schedule, t)
        assert torch.equal(la, lb)
        assert torch.equal(a[3].last_weights, b[3].last_weights)
        for pa, pb in zip(a[0].parameters(), b[0].parameters(), strict=True):
            assert torch.equal(pa, pb)
