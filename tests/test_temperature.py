"""ABSGD with a target effective sample size, against independent float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from absgd import ABLoss, ABState, ABWeighting, ab_weights
from absgd.objective import build_objective
from absgd.temperature import solve_lam


def _ess64(values: np.ndarray, lam: float) -> float:
    """Normalised ESS of ``w ∝ exp(values / lam)``, in float64."""
    z = np.asarray(values, dtype=np.float64) / lam
    w = np.exp(z - z.max())
    return float(w.sum() ** 2 / (len(w) * (w * w).sum()))


def _bisect_lam(values: np.ndarray, target: float, sign: float) -> float:
    """|λ| with ESS = target by plain bisection on log|λ| (float64; an independent reference)."""
    lo, hi = math.log(1e-8), math.log(1e8)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _ess64(sign * values, math.exp(mid)) < target:
            lo = mid  # too concentrated: a larger |λ|
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _ess_of(weights: torch.Tensor) -> float:
    w = weights.double().numpy()
    return float(w.sum() ** 2 / (len(w) * (w * w).sum()))


@pytest.mark.parametrize("target", [0.2, 0.5, 0.7, 0.9, 0.99])
@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("batch", [16, 256])
def test_solved_lambda_matches_a_float64_bisection(target, sign, batch):
    g = torch.Generator().manual_seed(batch)
    losses = torch.rand(batch, generator=g) ** 2 * 6  # skewed, like per-sample losses
    lam = float(solve_lam(losses, target, sign=sign))
    ref = _bisect_lam(losses.double().numpy(), target, sign)
    assert lam == pytest.approx(ref, rel=2e-3)
    assert _ess64(sign * losses.double().numpy(), lam) == pytest.approx(target, abs=2e-3)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("lam", [1.0, -1.0])
def test_first_batch_weights_have_the_target_ess(target, lam):
    losses = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 1.2, 2.5, 0.01, 0.8, 3.5, 0.15])
    w = ABWeighting(lam, target_ess=target)
    weights = w.weights(losses)
    assert _ess_of(weights) == pytest.approx(target, abs=0.01)
    # the direction is the sign of lam: the highest loss weighs most, or least
    top = int(losses.argmax())
    assert int(weights.argmax() if lam > 0 else weights.argmin()) == top
    assert w.lam * lam > 0 and math.isfinite(w.lam)


def test_hand_computed_two_point_case():
    # Losses (0, 1), λ > 0: w = (1, e^{1/λ}); ESS = (1 + a)² / (2 (1 + a²)) with a = e^{1/λ}.
    # ESS = 0.9 ⇔ a = (9 + √80) / 1 ... solve 0.9·2(1 + a²) = (1 + a)²: 0.8 a² - 2a + 0.8 = 0.
    a = (2 + math.sqrt(4 - 4 * 0.8 * 0.8)) / (2 * 0.8)
    lam = float(solve_lam(torch.tensor([0.0, 1.0]), 0.9))
    assert lam == pytest.approx(1 / math.log(a), rel=1e-3)


def test_scale_and_shift_of_the_losses_leave_the_weights_unchanged():
    g = torch.Generator().manual_seed(3)
    batches = [torch.rand(32, generator=g) * 3 for _ in range(6)]
    runs = []
    for k, c in ((1.0, 0.0), (30.0, 0.0), (0.01, 0.0), (1.0, 5.0)):
        w = ABWeighting(1.0, target_ess=0.6)
        runs.append([w.weights(b * k + c) for b in batches])
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_equal_losses_give_uniform_weights():
    w = ABWeighting(1.0, target_ess=0.5)
    weights = w.weights(torch.full((8,), 2.3))
    torch.testing.assert_close(weights, torch.full((8,), 1 / 8))
    assert math.isinf(solve_lam(torch.full((5,), 0.7), 0.5).item())
    assert math.isinf(solve_lam(torch.rand(5), 1.0).item())  # target 1 is plain SGD


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_gives_an_infinite_lambda(bad):
    assert math.isinf(solve_lam(torch.tensor([0.1, bad, 0.3]), 0.5).item())


def test_a_target_below_the_reachable_ess_is_clamped_to_the_grid_end():
    # Four samples tied at the top of 16: ESS ≥ 4/16 for every λ, so target 0.05 cannot be
    # met; the solve stops at t = (max − min)/λ = 1e4, λ = 0.8 / 1e4.
    values = torch.tensor([0.1, 0.2, 0.3, 0.9]).repeat(4)
    assert solve_lam(values, 0.05).item() == pytest.approx(8e-5, rel=1e-5)
    assert _ess64(values.numpy(), 8e-5) == pytest.approx(0.25, abs=1e-6)


def test_class_weights_inside_the_exponent_cannot_push_the_ess_below_the_target():
    counts = [500, 100, 20, 5]
    torch.manual_seed(0)
    logits = torch.randn(64, 4) * 3
    target = torch.randint(0, 4, (64,))
    fixed = build_objective(
        "ldam",
        class_counts=counts,
        class_weighting="class_balanced",
        weighting="absgd",
        weighting_options={"lam": 1.0},
        loss_options={"scale": 30.0},
    )
    auto = build_objective(
        "ldam",
        class_counts=counts,
        class_weighting="class_balanced",
        weighting="absgd",
        weighting_options={"lam": 1.0, "target_ess": 0.7},
        loss_options={"scale": 30.0},
    )
    fixed(logits, target)
    auto(logits, target)
    assert _ess_of(fixed.last_weights) < 0.3  # λ = 1 on LDAM's scale concentrates the weight
    assert _ess_of(auto.last_weights) == pytest.approx(0.7, abs=0.01)


def test_lambda_is_smoothed_in_log_space_at_the_documented_rate():
    g = torch.Generator().manual_seed(1)
    batches = [torch.rand(40, generator=g) * (1 + i) for i in range(5)]
    w = ABWeighting(1.0, target_ess=0.5, lam_rate=0.25)
    log_lam = None
    for b in batches:
        w.weights(b)
        log_b = math.log(_bisect_lam(b.double().numpy(), 0.5, 1.0))
        log_lam = log_b if log_lam is None else 0.75 * log_lam + 0.25 * log_b
        assert math.log(w.lam) == pytest.approx(log_lam, abs=3e-3)


def test_the_average_is_carried_over_when_lambda_moves():
    # Constant losses c: at any λ the exact normaliser is exp(c/λ) and the weights are 1/B.
    # Carried over (log s · λ_old/λ_new) that stays exact when λ moves; a raw average of
    # exp(c/λ_old) and exp(c/λ_new) would not be (weights 0.01-ish here).
    w = ABWeighting(0.5, gamma=0.5)
    for lam in (0.5, 2.0, 0.25, 4.0):
        w.lam = lam
        weights = w.weights(torch.full((4,), 3.0))
        torch.testing.assert_close(weights, torch.full((4,), 0.25))
    # and a change of sign starts the average afresh (first-batch initialisation)
    w.lam = -1.0
    weights = w.weights(torch.tensor([1.0, 2.0]))
    assert float(weights.sum()) == pytest.approx(1.0, rel=1e-6)


def test_weights_keep_summing_to_about_one_while_lambda_jumps():
    # The same loss distribution every batch while λ jumps between 3 and 0.3 (as a per-batch
    # solved λ can): carried over, the average keeps the weights' sum near 1; the raw average
    # of exp(l/λ) over different λ (the state without its λ) sends it to ~0 every other batch.
    g = torch.Generator().manual_seed(4)
    sums: dict[bool, list[float]] = {True: [], False: []}
    for carry in (True, False):
        state = ABState.initial()
        for i in range(20):
            out = ab_weights(torch.rand(64, generator=g) * 4, 0.3 if i % 2 else 3.0, state)
            state = out.state if carry else out.state._replace(lam=None)
            sums[carry].append(float(out.weights.sum()))
    assert min(sums[True]) > 0.9 and max(sums[True]) < 1.15
    assert min(sums[False]) < 0.01


def test_rescale_gives_the_mean_loss_value_and_the_weighted_direction():
    torch.manual_seed(2)
    logits = torch.randn(10, 3, requires_grad=True)
    y = torch.randint(0, 3, (10,))
    per_sample = nn.functional.cross_entropy(logits, y, reduction="none")
    w = ABWeighting(1.0, target_ess=0.5)
    assert w.rescale
    loss = w(per_sample)
    assert float(loss.detach()) == pytest.approx(float(per_sample.mean()), rel=1e-5)
    loss.backward(retain_graph=True)
    # reference: Σ p_i ∇l_i from the per-sample gradients, times mean(l) / Σ p l
    p = w.last_weights.double()
    l64 = per_sample.detach().double()
    ratio = float(l64.mean() / (p * l64).sum())
    expected = torch.zeros(10, 3, dtype=torch.float64)
    for i in range(10):
        (g,) = torch.autograd.grad(per_sample[i], logits, retain_graph=True)
        expected += ratio * p[i] * g.double()
    torch.testing.assert_close(logits.grad.double(), expected, rtol=1e-4, atol=1e-7)
    # off: the authors' unscaled Σ p l
    plain = ABWeighting(1.0, target_ess=0.5, rescale=False)
    value = plain(per_sample.detach())
    assert float(value) == pytest.approx(float((plain.last_weights * per_sample.detach()).sum()))


def test_with_negative_lambda_the_target_form_keeps_the_unscaled_step_by_default():
    losses = torch.tensor([0.05, 0.1, 0.2, 1.5, 2.5, 3.0])
    w = ABWeighting(-1.0, target_ess=0.5)
    assert not w.rescale
    value = float(w(losses))
    p = w.last_weights.double()
    assert value == pytest.approx(float((p * losses.double()).sum()), rel=1e-6)
    # the weight sits on the small losses, so Σ p l is below the mean loss: rescaling would
    # multiply the step by mean l / Σ p l > 1
    assert float((p * losses.double()).sum()) < float(losses.mean()) / 2
    forced = ABWeighting(-1.0, target_ess=0.5, rescale=True)
    assert float(forced(losses)) == pytest.approx(float(losses.mean()), rel=1e-5)
    # decided from the sign in force: a two-stage run starts at λ = ∞ and switches later
    staged = ABWeighting(math.inf, target_ess=0.5)
    staged.lam = -1.0
    assert not staged.rescale
    staged.lam = 1.0
    assert staged.rescale


def test_plain_sgd_stage_is_untouched_by_the_target():
    losses = torch.rand(16) * 3
    w = ABWeighting(math.inf, target_ess=0.5)
    assert float(w(losses)) == float(losses.mean()) or torch.isclose(w(losses), losses.mean())
    torch.testing.assert_close(w.last_weights, torch.full((16,), 1 / 16))
    assert math.isinf(w.lam)


def test_resumed_state_continues_exactly():
    g = torch.Generator().manual_seed(6)
    batches = [torch.rand(24, generator=g) * 4 for _ in range(8)]
    a = ABLoss(nn.Identity(), lam=1.0, target_ess=0.6)
    for b in batches[:4]:
        a.weighting.weights(b)
    b_ = ABLoss(nn.Identity(), lam=1.0, target_ess=0.6)
    b_.load_state_dict(a.state_dict())
    for batch in batches[4:]:
        torch.testing.assert_close(a.weighting.weights(batch), b_.weighting.weights(batch))
        assert a.lam == b_.lam


def test_state_saved_before_the_new_buffers_still_loads():
    w = ABWeighting(2.0)
    w.weights(torch.rand(8))
    old = {k: v for k, v in w.state_dict().items() if k not in ("s_lam", "log_abs_lam")}
    fresh = ABWeighting(2.0)
    fresh.load_state_dict(old)
    x = torch.rand(8)
    torch.testing.assert_close(fresh.weights(x), w.weights(x))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_ess": 0.0}, "target_ess must be a number in \\(0, 1\\]"),
        ({"target_ess": 1.5}, "got 1.5"),
        ({"target_ess": True}, "target_ess"),
        ({"target_ess": 0.5, "lam_rate": 0.0}, "lam_rate must be in \\(0, 1\\], got 0.0"),
        ({"rescale": "yes"}, "rescale must be True, False or None, got 'yes'"),
    ],
)
def test_bad_options_are_refused_with_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ABWeighting(1.0, **kwargs)


def test_the_estimator_passes_target_ess_to_its_weighting():
    pytest.importorskip("sklearn")
    from absgd.sklearn import ABSGDClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=120) > 0.8).astype(int)  # about 1 in 5 positive
    clf = ABSGDClassifier(target_ess=0.6, solver="adam", max_iter=3, batch_size=40, random_state=0)
    clf.fit(X, y)
    assert clf.get_params()["target_ess"] == 0.6
    assert clf.weighting_.target_ess == 0.6 and clf.weighting_.rescale
    assert 0 < clf.weighting_.lam < math.inf  # solved from the batches, not the default 1.0
    with pytest.raises(ValueError, match="target_ess must be a number in"):
        ABSGDClassifier(target_ess=0.0).fit(X, y)
