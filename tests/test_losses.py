"""Per-sample losses against independent float64 formulas, equivalences, gradients, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from absgd.losses import (
    LOSSES,
    build_loss,
    cross_entropy,
    focal_loss,
    generalized_cross_entropy,
    ldam_loss,
    ldam_margins,
    logit_adjusted_loss,
    symmetric_cross_entropy,
)
from absgd.losses.softmax import balanced_softmax_loss

COUNTS = [400, 120, 30, 9, 2]
C = len(COUNTS)


def _data(seed=0, n=12):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, C, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, C, (n,), generator=g)
    weight = torch.rand(C, generator=g, dtype=torch.float64) + 0.2
    return logits, target, weight


# -- independent numpy references (float64) ---------------------------------------------------


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _py(z, y):
    return _softmax(z)[np.arange(len(y)), y]


def ref_ce(z, y, eps=0.0):
    p = _softmax(z)
    return -(1 - eps) * np.log(p[np.arange(len(y)), y]) - eps * np.log(p).mean(axis=1)


def ref_focal(z, y, gamma):
    p = _py(z, y)
    return -((1 - p) ** gamma) * np.log(p)


def ref_ldam(z, y, counts, max_m, s):
    m = 1 / np.asarray(counts, float) ** 0.25
    m = m * max_m / m.max()
    z = z.copy()
    z[np.arange(len(y)), y] -= m[y]
    return ref_ce(s * z, y)


def ref_la(z, y, counts, tau):
    prior = np.asarray(counts, float) / np.sum(counts)
    return ref_ce(z + tau * np.log(prior), y)


def ref_sce(z, y, alpha, beta, a):
    p = _softmax(z)
    onehot = np.eye(z.shape[1])[y]
    log_q = np.where(onehot > 0, 0.0, a)  # log of the one-hot label with log 0 := A
    return alpha * ref_ce(z, y) + beta * (-(p * log_q).sum(axis=1))


def ref_gce(z, y, q, k=None):
    p = _py(z, y)
    loss = (1 - p**q) / q
    if k is not None:
        loss = np.where(p > k, loss, (1 - k**q) / q)
    return loss


def _reduce(per, y, w, reduction):
    if w is not None:
        per = per * w[y]
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    return per.mean() if w is None else per.sum() / w[y].sum()


CASES = {
    "ce": (lambda z, y, **kw: cross_entropy(z, y, **kw), lambda z, y: ref_ce(z, y)),
    "ce_smooth": (
        lambda z, y, **kw: cross_entropy(z, y, label_smoothing=0.1, **kw),
        lambda z, y: ref_ce(z, y, 0.1),
    ),
    "focal": (
        lambda z, y, **kw: focal_loss(z, y, gamma=2.0, **kw),
        lambda z, y: ref_focal(z, y, 2.0),
    ),
    "focal_half": (
        lambda z, y, **kw: focal_loss(z, y, gamma=0.5, **kw),
        lambda z, y: ref_focal(z, y, 0.5),
    ),
    "ldam": (
        lambda z, y, **kw: ldam_loss(z, y, ldam_margins(COUNTS, 0.5), scale=30.0, **kw),
        lambda z, y: ref_ldam(z, y, COUNTS, 0.5, 30.0),
    ),
    "logit_adjusted": (
        lambda z, y, **kw: logit_adjusted_loss(
            z, y, torch.tensor(np.log(np.array(COUNTS) / sum(COUNTS))), tau=1.5, **kw
        ),
        lambda z, y: ref_la(z, y, COUNTS, 1.5),
    ),
    "sce": (
        lambda z, y, **kw: symmetric_cross_entropy(z, y, alpha=0.3, beta=1.2, log_zero=-4.0, **kw),
        lambda z, y: ref_sce(z, y, 0.3, 1.2, -4.0),
    ),
    "gce": (
        lambda z, y, **kw: generalized_cross_entropy(z, y, q=0.7, **kw),
        lambda z, y: ref_gce(z, y, 0.7),
    ),
    "truncated_gce": (
        lambda z, y, **kw: generalized_cross_entropy(z, y, q=0.7, k=0.3, **kw),
        lambda z, y: ref_gce(z, y, 0.7, 0.3),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_matches_independent_float64_formula(name, reduction, weighted):
    ours, ref = CASES[name]
    logits, target, weight = _data(seed=sorted(CASES).index(name))
    w = weight if weighted else None
    got = ours(logits, target, weight=w, reduction=reduction)
    expected = _reduce(
        ref(logits.numpy(), target.numpy()),
        target.numpy(),
        None if w is None else w.numpy(),
        reduction,
    )
    # class statistics (margins, log prior) are float32 buffers: 1e-6 relative
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_cross_entropy_equals_torch_with_weights_and_with_smoothing():
    logits, target, weight = _data(1)
    for reduction in ("none", "mean", "sum"):
        torch.testing.assert_close(
            cross_entropy(logits, target, weight=weight, reduction=reduction),
            F.cross_entropy(logits, target, weight=weight, reduction=reduction),
        )
        torch.testing.assert_close(
            cross_entropy(logits, target, label_smoothing=0.2, reduction=reduction),
            F.cross_entropy(logits, target, label_smoothing=0.2, reduction=reduction),
        )


def test_equivalences():
    logits, target, _ = _data(2)
    ce = cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(focal_loss(logits, target, gamma=0.0, reduction="none"), ce)
    log_prior = torch.tensor(np.log(np.array(COUNTS) / sum(COUNTS)))
    torch.testing.assert_close(
        logit_adjusted_loss(logits, target, log_prior, tau=0.0, reduction="none"), ce
    )
    torch.testing.assert_close(
        balanced_softmax_loss(
            logits, target, torch.tensor(COUNTS, dtype=torch.float64), reduction="none"
        ),
        logit_adjusted_loss(logits, target, log_prior, tau=1.0, reduction="none"),
    )
    # GCE with q = 1 is the MAE 1 - p_y; SCE with alpha = 0, A = -1 is 1 - p_y too
    one_minus_p = 1 - torch.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    torch.testing.assert_close(
        generalized_cross_entropy(logits, target, q=1.0, reduction="none"), one_minus_p
    )
    torch.testing.assert_close(
        symmetric_cross_entropy(
            logits, target, alpha=0.0, beta=1.0, log_zero=-1.0, reduction="none"
        ),
        one_minus_p,
    )


def test_ldam_margins_by_hand():
    # n^(-1/4) = 1/10, 1/5, 1/2 for n = 10000, 625, 16; the largest is scaled to 0.5
    torch.testing.assert_close(ldam_margins([10000, 625, 16], 0.5), torch.tensor([0.1, 0.2, 0.5]))
    torch.testing.assert_close(ldam_margins([1, 1], 0.3), torch.tensor([0.3, 0.3]))


def test_ldam_lowers_only_the_true_logit():
    logits = torch.zeros(1, 3, dtype=torch.float64)
    loss = ldam_loss(logits, torch.tensor([2]), torch.tensor([0.1, 0.2, 0.5]), scale=1.0)
    # logits become (0, 0, -0.5): -log(e^-0.5 / (2 + e^-0.5))
    assert loss.item() == pytest.approx(-math.log(math.exp(-0.5) / (2 + math.exp(-0.5))))


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradients_are_finite_for_extreme_logits(name, sign):
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(8, C, generator=g).sign() * 1e4 * sign).requires_grad_()
    target = torch.arange(8) % C
    loss = build_loss(name, class_counts=COUNTS, reduction="mean")(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_focal_below_gamma_one_has_finite_gradients_for_extreme_logits(sign):
    # (1 - p)^γ has an infinite derivative at p = 1 for γ < 1: without a floor on 1 - p the
    # gradient of a sample that the model gets right with certainty would be 0 · ∞ = NaN.
    logits = torch.full((4, C), -1e4 * sign)
    target = torch.arange(4)
    logits[torch.arange(4), target] = 1e4 * sign
    logits.requires_grad_()
    loss = focal_loss(logits, target, gamma=0.5, reduction="sum")
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    if sign > 0:  # p_y rounds to 1: the loss and its gradient are exactly 0
        assert loss.item() == 0.0
        assert torch.equal(logits.grad, torch.zeros_like(logits))


# (registered name, options other than the defaults, independent float64 reference)
REGISTERED = [
    ("ldam", {"max_margin": 0.3, "scale": 10.0}, lambda z, y: ref_ldam(z, y, COUNTS, 0.3, 10.0)),
    ("logit_adjusted", {"tau": 0.5}, lambda z, y: ref_la(z, y, COUNTS, 0.5)),
    ("balanced_softmax", {}, lambda z, y: ref_la(z, y, COUNTS, 1.0)),
    ("truncated_gce", {}, lambda z, y: ref_gce(z, y, 0.7, 0.5)),  # k = 0.5 by default
    ("truncated_gce", {"q": 0.4, "k": 0.2}, lambda z, y: ref_gce(z, y, 0.4, 0.2)),
    ("focal", {"gamma": 3.0}, lambda z, y: ref_focal(z, y, 3.0)),
    (
        "sce",
        {"alpha": 0.5, "beta": 2.0, "log_zero": -2.0},
        lambda z, y: ref_sce(z, y, 0.5, 2.0, -2.0),
    ),
]


@pytest.mark.parametrize(("name", "options", "reference"), REGISTERED)
def test_registered_modules_pass_their_options_through(name, options, reference):
    logits, target, _ = _data(seed=5)
    module = build_loss(name, class_counts=COUNTS, reduction="none", **options)
    got = module(logits, target).double().numpy()
    np.testing.assert_allclose(got, reference(logits.numpy(), target.numpy()), rtol=1e-5)


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_every_registered_loss_runs_forward_and_backward(name, dtype):
    model = torch.nn.Linear(4, C).to(dtype)
    loss_fn = build_loss(name, class_counts=COUNTS, reduction="none", weight=[1.0] * C)
    x, y = torch.randn(6, 4).to(dtype), torch.tensor([0, 1, 2, 3, 4, 0])
    per_sample = loss_fn(model(x), y)
    assert per_sample.shape == (6,) and per_sample.dtype == torch.float32
    per_sample.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert loss_fn.reduction == "none"


def test_loss_modules_keep_their_class_statistics_as_buffers():
    ldam = build_loss("ldam", class_counts=COUNTS, weight=[1.0] * C)
    assert {"margins", "weight"} <= set(ldam.state_dict())
    la = build_loss("logit_adjusted", class_counts=COUNTS, tau=0.5)
    assert "log_prior" in la.state_dict()
    ldam.to(torch.float64)
    assert ldam.margins.dtype == torch.float64


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: build_loss("hinge"),
            ValueError,
            "unknown loss 'hinge'; valid names: "
            "balanced_softmax, ce, focal, gce, ldam, logit_adjusted, sce, truncated_gce",
        ),
        (lambda: build_loss("ce", gamma=1.0), ValueError, "unknown option.*gamma"),
        (lambda: build_loss("balanced_softmax"), ValueError, "needs class_counts"),
        (lambda: build_loss("ldam", class_counts=[10, 0, 3]), ValueError, r"class\(es\) \[1\]"),
        (lambda: build_loss("focal", gamma=-1.0), ValueError, "gamma"),
        (lambda: build_loss("ce", reduction="avg"), ValueError, "reduction must be one of"),
        (lambda: build_loss("ce", label_smoothing=1.0), ValueError, "label_smoothing"),
        (lambda: build_loss("gce", q=0.0), ValueError, r"q must be in \(0, 1\]"),
        (lambda: build_loss("truncated_gce", k=1.0), ValueError, "k must be"),
        (lambda: build_loss("sce", log_zero=0.0), ValueError, "log_zero"),
        (lambda: build_loss("ldam", class_counts=COUNTS, scale=0.0), ValueError, "scale"),
        (lambda: build_loss("ce", weight=[1.0, -1.0]), ValueError, "weight must be finite"),
    ],
)
def test_bad_loss_options_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"logits must have shape \(B, C\)"):
        cross_entropy(torch.randn(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="target must have shape"):
        cross_entropy(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer class indices"):
        cross_entropy(torch.randn(4, 3), torch.zeros(4))
