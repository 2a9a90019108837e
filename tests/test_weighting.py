"""ABWeighting / ab_weights: reference values, invariances, stability, state and errors."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from absgd import ABState, ABWeighting, ab_weights, effective_sample_size
from reference import reference_weights


def _batches(seed: int, sizes=(16, 7, 32, 1, 9, 16), scale=3.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(n, generator=g, dtype=torch.float64) * scale for n in sizes]


def _run(module: ABWeighting, batches, dtype=torch.float32):
    weights, log_s = [], []
    for b in batches:
        weights.append(module.weights(b.to(dtype)).double())
        log_s.append(module.log_s_ref.double() + module.log_s_delta.double())
    return weights, log_s


# -- reference values -----------------------------------------------------------------------


@pytest.mark.parametrize("init", ["first_batch", "zero"])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
@pytest.mark.parametrize("lam", [0.7, 2.0, -0.5, -3.0])
@pytest.mark.parametrize("gamma", [0.9, 0.3, 1.0])
def test_matches_float64_reference(init, alpha, lam, gamma):
    batches = _batches(seed=1)
    module = ABWeighting(lam, gamma=gamma, alpha=alpha, init=init)
    got_w, got_log_s = _run(module, batches)
    ref_w, ref_s = reference_weights(
        [b.numpy() for b in batches], lam, gamma=gamma, alpha=alpha, init=init
    )
    for gw, rw, gls, rs in zip(got_w, ref_w, got_log_s, ref_s, strict=True):
        np.testing.assert_allclose(gw.numpy(), rw, rtol=1e-5, atol=0)
        np.testing.assert_allclose(math.exp(gls), rs, rtol=1e-5)
    assert int(module.step) == len(batches)


def test_first_batch_weights_sum_to_one_over_alpha_and_zero_init_to_one_over_gamma_alpha():
    losses = torch.tensor([0.3, 1.2, 2.5, 0.1])
    a = ABWeighting(1.0, alpha=0.5).weights(losses)
    z = ABWeighting(1.0, gamma=0.8, alpha=0.5, init="zero").weights(losses)
    assert a.sum().item() == pytest.approx(2.0, rel=1e-6)
    assert z.sum().item() == pytest.approx(1 / (0.8 * 0.5), rel=1e-6)


def test_hand_computed_two_batches():
    # lam = 1, gamma = 0.5, first_batch init. Batch 1: l = (0, ln 3) -> e = (1, 3), m = 2,
    # s_1 = 2, p = (1/4, 3/4). Batch 2: l = (ln 2, ln 2) -> m = 2, s_2 = 0.5*2 + 0.5*2 = 2,
    # p = (2/4, 2/4).
    w = ABWeighting(1.0, gamma=0.5)
    p1 = w.weights(torch.tensor([0.0, math.log(3.0)]))
    torch.testing.assert_close(p1, torch.tensor([0.25, 0.75]))
    p2 = w.weights(torch.tensor([math.log(2.0), math.log(2.0)]))
    torch.testing.assert_close(p2, torch.tensor([0.5, 0.5]))
    assert w.log_normalizer.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_pure_function_does_not_mutate_state():
    state = ABState.initial()
    before = [t.clone() for t in state]
    out = ab_weights(torch.tensor([1.0, 2.0]), 1.0, state)
    for b, t in zip(before, state, strict=True):
        torch.testing.assert_close(b, t, rtol=0, atol=0, equal_nan=True)
    assert int(out.state.step) == 1


# -- invariances ------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["first_batch", "zero"])
@pytest.mark.parametrize("lam", [1.5, -2.0])
def test_adding_a_constant_to_every_loss_leaves_weights_unchanged(init, lam):
    batches = _batches(seed=2)
    w1, _ = _run(ABWeighting(lam, init=init), batches)
    w2, _ = _run(ABWeighting(lam, init=init), [b + 7.25 for b in batches])
    for a, b in zip(w1, w2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=0)


def test_weight_is_monotone_in_the_loss_with_the_sign_of_lambda():
    losses = torch.tensor([0.1, 0.5, 0.9, 2.0, 3.5])
    pos = ABWeighting(1.0).weights(losses)
    neg = ABWeighting(-1.0).weights(losses)
    assert torch.all(pos[1:] > pos[:-1])
    assert torch.all(neg[1:] < neg[:-1])


def test_infinite_lambda_gives_exactly_uniform_weights_and_the_mean_loss():
    w = ABWeighting(math.inf)
    for n in (1, 3, 128):
        losses = torch.rand(n) * 10
        out = w(losses)
        assert torch.equal(w.last_weights, torch.full((n,), 1.0 / n))
        torch.testing.assert_close(out, losses.mean())
    assert int(w.step) == 0


def test_minus_infinity_is_plain_sgd_like_plus_infinity():
    w = ABWeighting(-math.inf)
    losses = torch.tensor([0.5, 4.0, 1.5])
    out = w(losses)
    assert torch.equal(w.last_weights, torch.full((3,), 1.0 / 3))
    torch.testing.assert_close(out, losses.mean())
    assert int(w.step) == 0


def test_zero_init_after_a_plain_first_stage_starts_from_s_zero():
    # The two-stage schedule of the reference code: λ = ∞ (s not updated), then a finite λ
    # with s_0 = 0, so s_1 = γ·α·m_1 and the first ABSGD batch's weights sum to 1/(γα) = 2.5.
    w = ABWeighting(math.inf, gamma=0.8, alpha=0.5, init="zero")
    for _ in range(3):
        w.weights(torch.tensor([0.2, 3.0, 1.0]))
    w.lam = 1.0
    losses = torch.tensor([0.0, math.log(3.0), math.log(5.0), math.log(7.0)])
    p = w.weights(losses)
    # e = (1, 3, 5, 7), m = 4, s_1 = 0.8 · 0.5 · 4 = 1.6, p = e / (4 · 1.6)
    torch.testing.assert_close(p, torch.tensor([1.0, 3.0, 5.0, 7.0]) / 6.4)
    assert p.sum().item() == pytest.approx(2.5, rel=1e-6)


def test_gradient_equals_weighted_sum_of_per_sample_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 4))
    x, y = torch.randn(12, 5), torch.randint(0, 4, (12,))
    criterion = nn.CrossEntropyLoss(reduction="none")
    weighting = ABWeighting(0.5)
    weighting.weights(criterion(model(x[:6]), y[:6]).detach())  # give it some history
    model.zero_grad()
    weighting(criterion(model(x), y)).backward()
    got = [p.grad.clone() for p in model.parameters()]
    p = weighting.last_weights
    expected = [torch.zeros_like(q) for q in model.parameters()]
    for i in range(len(x)):
        model.zero_grad()
        criterion(model(x[i : i + 1]), y[i : i + 1]).sum().backward()
        for e, q in zip(expected, model.parameters(), strict=True):
            e += p[i] * q.grad
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


# -- numerical stability ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lam", [0.01, -0.01, 0.1, 1.0])
def test_huge_losses_and_tiny_lambda_give_finite_weights_that_sum_to_one(dtype, lam):
    g = torch.Generator().manual_seed(3)
    losses = (torch.rand(64, generator=g) * 1e4).to(dtype)
    w = ABWeighting(lam)
    for _ in range(6):  # steady batches
        p = w.weights(losses)
        assert p.dtype == torch.float32
        assert torch.isfinite(p).all()
        assert p.sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lam", [1.0, -1.0, 0.01, -0.01])
def test_huge_losses_give_the_softmax_of_l_over_lambda_on_a_steady_batch(dtype, lam):
    # The same batch every step with first_batch init keeps s_t = m, so p = softmax(l/λ)
    # exactly; computed here in float64 from the losses as rounded to ``dtype``. The weights
    # are as exact as float32 holds z = l/λ: to 1e-3 near 1e4 (λ = ±1), so p to 2e-3
    # relative; to 0.0625 near 1e6 (λ = ±0.01), so p to exp(0.0625) - 1 < 7 % relative.
    g = torch.Generator().manual_seed(8)
    losses = (1e4 + torch.rand(64, generator=g) * 5).to(dtype)
    w = ABWeighting(lam, gamma=0.9)
    for _ in range(4):
        p = w.weights(losses).double()
    expected = torch.softmax(losses.double() / lam, dim=0)
    rtol = 2e-3 if abs(lam) >= 1 else 0.07
    torch.testing.assert_close(p, expected, rtol=rtol, atol=1e-9)
    assert int(p.argmax()) == int(expected.argmax())


@pytest.mark.parametrize("gamma", [0.9, 0.1])
def test_weights_never_exceed_one_over_gamma_alpha_on_wild_batches(gamma):
    g = torch.Generator().manual_seed(4)
    w = ABWeighting(0.01, gamma=gamma, alpha=0.5)
    for _ in range(20):
        losses = torch.rand(32, generator=g) * 10 ** float(torch.randint(0, 5, (1,), generator=g))
        p = w.weights(losses)
        assert torch.isfinite(p).all()
        assert p.max().item() <= 1 / (gamma * 0.5) * (1 + 1e-5)


# -- state ------------------------------------------------------------------------------------


def test_state_is_buffers_without_autograd_history():
    w = ABWeighting(1.0)
    logits = torch.randn(8, 3, requires_grad=True)
    losses = nn.functional.cross_entropy(logits, torch.randint(0, 3, (8,)), reduction="none")
    w(losses).backward()
    assert set(w.state_dict()) == {
        "log_s_ref",
        "log_s_delta",
        "step",
        "s_lam",
        "lam_value",
        "log_abs_lam",
    }
    for buf in w.buffers():
        assert not buf.requires_grad and buf.grad_fn is None
    assert not w.last_weights.requires_grad


def test_dtype_casts_keep_float32_state_and_device_moves_follow():
    w = ABWeighting(0.3)
    w.weights(torch.rand(10) * 5)
    exact = {k: v.clone() for k, v in w.state_dict().items()}
    for cast in (lambda m: m.half(), lambda m: m.to(torch.bfloat16), lambda m: m.double()):
        cast(w)
        for k, v in w.state_dict().items():
            assert v.dtype == exact[k].dtype
            torch.testing.assert_close(v, exact[k], rtol=0, atol=0, equal_nan=True)
    # A real device move even on a CPU-only machine: the "meta" device keeps shapes and dtypes
    # but no data. Every buffer must follow, in its own dtype despite the cast that comes along.
    w.to("meta", torch.bfloat16)
    for k, v in w.state_dict().items():
        assert v.device.type == "meta", k
        assert v.dtype == exact[k].dtype, k


def test_deepcopy_and_state_dict_round_trip_continue_identically():
    batches = _batches(seed=5)
    a = ABWeighting(0.8, gamma=0.7)
    for b in batches[:3]:
        a.weights(b.float())
    b_copy = copy.deepcopy(a)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    c = ABWeighting(5.0, gamma=0.7)  # different λ: the state dict restores it
    c.load_state_dict(torch.load(buf))
    assert c.lam == pytest.approx(0.8)
    for batch in batches[3:]:
        wa, wb, wc = (m.weights(batch.float()) for m in (a, b_copy, c))
        assert torch.equal(wa, wb) and torch.equal(wa, wc)


def test_a_new_lambda_carries_the_average_over_by_the_ratio_of_the_lambdas():
    # γ = 0.5, λ = 1. Batch 1: l = (0, ln 3), e = (1, 3), s_1 = m = 2. λ → 2 carries
    # log s over as log s · 1/2, so s = √2. Batch 2: l = (0, 2 ln 3), e^{l/2} = (1, 3), m = 2,
    # s_2 = 0.5·√2 + 0.5·2 = 1 + √2/2, p = (1, 3) / (2 s_2).
    w = ABWeighting(1.0, gamma=0.5)
    w.weights(torch.tensor([0.0, math.log(3.0)]))
    w.lam = 2.0
    p = w.weights(torch.tensor([0.0, 2.0 * math.log(3.0)]))
    s2 = 1.0 + math.sqrt(2.0) / 2.0
    torch.testing.assert_close(p, torch.tensor([1.0, 3.0]) / (2.0 * s2))
    assert w.log_normalizer.item() == pytest.approx(math.log(s2), rel=1e-6)


def test_a_lambda_of_the_other_sign_restarts_the_average():
    # λ = 1 then λ = -1: the average of exp(l/λ) under the old sign says nothing, so the
    # first batch under the new sign initialises s = α·m as a first batch does.
    w = ABWeighting(1.0, gamma=0.5)
    w.weights(torch.tensor([0.0, 5.0]))
    w.lam = -1.0
    losses = torch.tensor([0.0, math.log(3.0)])  # e^{-l} = (1, 1/3), m = 2/3
    p = w.weights(losses)
    torch.testing.assert_close(p, torch.tensor([1.0, 1.0 / 3.0]) / (2.0 * (2.0 / 3.0)))


def test_lambda_can_change_between_steps_and_infinity_clears_the_average():
    w = ABWeighting(1.0)
    w.weights(torch.tensor([1.0, 2.0]))
    w.lam = 2.0
    assert w.lam == 2.0 and float(w.lam_value) == 2.0
    w.weights(torch.tensor([1.0, 2.0]))
    assert int(w.step) == 2
    w.lam = math.inf
    w.weights(torch.tensor([1.0, 2.0]))
    assert int(w.step) == 0
    w.lam = 0.5  # two-stage switch: the first batch after it re-initialises s
    p = w.weights(torch.tensor([0.0, 1.0, 3.0]))
    assert p.sum().item() == pytest.approx(1.0, rel=1e-6)


def test_reset_forgets_the_moving_average():
    w, fresh = ABWeighting(1.0), ABWeighting(1.0)
    w.weights(torch.tensor([5.0, 6.0]))
    w.reset()
    losses = torch.tensor([0.1, 0.2, 3.0])
    assert torch.equal(w.weights(losses), fresh.weights(losses))


def test_max_weight_clips_relative_weight():
    losses = torch.tensor([0.0, 0.0, 0.0, 10.0])
    p = ABWeighting(1.0, max_weight=2.0).weights(losses)
    assert (p * 4).max().item() == pytest.approx(2.0)
    assert p[0].item() == pytest.approx(ABWeighting(1.0).weights(losses)[0].item())


def test_uniform_adds_the_plain_weight_as_in_the_authors_noisy_label_code():
    # lam = -1, gamma = 0.9, alpha = 0.5, s_0 = 0, u = 1; l = (0, ln 2): e = (1, 1/2),
    # m = 3/4, s_1 = 0.9 * 0.5 * 3/4 = 0.3375, p = e / (2 s_1) + 1/2.
    w = ABWeighting(-1.0, gamma=0.9, alpha=0.5, init="zero", uniform=1.0)
    p = w.weights(torch.tensor([0.0, math.log(2.0)]))
    s1 = 0.9 * 0.5 * 0.75
    torch.testing.assert_close(p, torch.tensor([1 / (2 * s1) + 0.5, 0.5 / (2 * s1) + 0.5]))
    assert w.log_normalizer.item() == pytest.approx(math.log(s1), rel=1e-6)
    # u = 0.5 through the pure function: l = (0, 1), e = (1, 1/e), s_1 = 0.45 (1 + 1/e) / 2
    e = torch.tensor([1.0, math.exp(-1.0)])
    s1 = 0.45 * e.mean()
    out = ab_weights(
        torch.tensor([0.0, 1.0]), -1.0, ABState.initial(), gamma=0.9, alpha=0.5, init="zero",
        uniform=0.5,
    )  # fmt: skip
    torch.testing.assert_close(out.weights, e / (2 * s1) + 0.25)
    # at lam = inf the weights stay 1/B
    mixed = ABWeighting(-1.0, gamma=0.9, alpha=0.5, init="zero", uniform=0.5)
    mixed.weights(torch.tensor([0.0, 1.0]))
    mixed.lam = math.inf
    torch.testing.assert_close(mixed.weights(torch.tensor([0.0, 1.0])), torch.full((2,), 0.5))
    assert "uniform=0.5" in repr(mixed)
    # max_weight clips the attentional part; the uniform part comes on top
    capped = ABWeighting(1.0, max_weight=2.0, uniform=1.0).weights(torch.tensor([0.0, 0, 0, 10]))
    assert (capped * 4).max().item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"uniform=1\.0 cannot be combined with target_ess=0\.5"):
        ABWeighting(1.0, target_ess=0.5, uniform=1.0)


def test_effective_sample_size_and_max_weight_diagnostics():
    w = ABWeighting(1.0)
    assert w.last_effective_sample_size is None
    w.weights(torch.tensor([0.0, 0.0, math.log(2.0), math.log(4.0)]))
    # e = (1, 1, 2, 4), p ∝ e: ESS = (Σe)² / (B Σe²) = 64 / (4 · 22)
    assert w.last_effective_sample_size.item() == pytest.approx(64 / 88, rel=1e-6)
    # one process: the global batch is the batch (2 processes: tests/integrations)
    assert w.global_effective_sample_size().item() == pytest.approx(64 / 88, rel=1e-6)
    assert w.last_max_weight.item() == pytest.approx(4 * 4 / 8, rel=1e-6)
    assert effective_sample_size(torch.full((5,), 0.2)).item() == pytest.approx(1.0)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0, 0.0, float("nan"), "abc", None, True])
def test_bad_lambda_is_refused_with_the_value(lam):
    with pytest.raises(ValueError, match="lam must be a non-zero real number"):
        ABWeighting(lam)
    w = ABWeighting(1.0)
    with pytest.raises(ValueError, match="lam"):
        w.lam = lam
    assert w.lam == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 0.0}, r"gamma must be in \(0, 1\], got 0.0"),
        ({"gamma": 1.5}, r"gamma must be in \(0, 1\], got 1.5"),
        ({"gamma": -0.1}, "gamma"),
        ({"alpha": 0.0}, "alpha must be a finite number > 0, got 0.0"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": math.inf}, "alpha"),
        ({"init": "ones"}, "init must be one of"),
        ({"max_weight": 0.0}, "max_weight"),
        ({"uniform": -1.0}, "uniform must be a finite number >= 0, got -1.0"),
        ({"uniform": math.inf}, "uniform"),
        ({"uniform": math.nan}, "uniform"),
        ({"uniform": "1"}, "uniform"),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ABWeighting(1.0, **kwargs)


@pytest.mark.parametrize(
    "losses",
    [torch.tensor(1.0), torch.ones(4, 2), torch.ones(1, 4)],
    ids=["scalar", "2d", "row"],
)
def test_non_per_sample_losses_are_refused_with_a_hint(losses):
    with pytest.raises(ValueError, match="reduction='none'"):
        ABWeighting(1.0)(losses)


def test_empty_and_integer_batches_are_refused():
    with pytest.raises(ValueError, match="empty batch"):
        ABWeighting(1.0)(torch.ones(0))
    with pytest.raises(TypeError, match="floating-point"):
        ABWeighting(1.0)(torch.ones(3, dtype=torch.int64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("lam", [1.0, math.inf])
def test_non_finite_losses_raise_and_leave_the_state_unchanged(bad, lam):
    good = _batches(seed=6, sizes=(8, 8, 8))
    w, ref = ABWeighting(1.0), ABWeighting(1.0)
    w.weights(good[0].float())
    ref.weights(good[0].float())
    w.lam = lam
    before = {k: v.clone() for k, v in w.state_dict().items()}
    poisoned = good[1].float().clone()
    poisoned[3] = bad
    with pytest.raises(ValueError, match=r"losses are NaN or infinite \(1 of 8 in this process"):
        w(poisoned)
    if not math.isinf(lam):
        for k, v in w.state_dict().items():
            torch.testing.assert_close(v, before[k], rtol=0, atol=0, equal_nan=True)
        # the next good batch proceeds exactly as if the bad one never happened
        assert torch.equal(w.weights(good[2].float()), ref.weights(good[2].float()))


def test_check_finite_false_skips_the_check_but_still_protects_the_state():
    w, ref = ABWeighting(1.0, check_finite=False), ABWeighting(1.0)
    first = torch.tensor([0.5, 1.0, 2.0])
    w.weights(first)
    ref.weights(first)
    out = w(torch.tensor([1.0, float("nan"), 2.0]))
    assert not torch.isfinite(out)
    nxt = torch.tensor([0.2, 0.4, 3.0])
    assert torch.equal(w.weights(nxt), ref.weights(nxt))


def test_losses_from_a_scalar_reduction_criterion_name_the_fix():
    criterion = nn.CrossEntropyLoss()  # reduction="mean"
    loss = criterion(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        ABWeighting(1.0)(loss)
