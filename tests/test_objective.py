"""Composition of losses, class weights and per-sample weightings (ABSGD, RGD)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from absgd import ABWeighting, Objective, RGDWeighting, build_objective
from absgd.class_weights import (
    DRW,
    StaticWeights,
    build_class_weighting,
    effective_number_weights,
    inverse_frequency_weights,
)
from absgd.losses import LOSSES, build_loss
from absgd.rgd import rgd_weights

COUNTS = [300, 60, 12, 4]


def _batch(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g) * 2, torch.randint(0, 4, (n,), generator=g)


# -- class weights ----------------------------------------------------------------------------


def test_class_balanced_weights_by_hand():
    # beta = 0.99: E_n = (1 - 0.99^n) / 0.01
    counts = np.array([100, 10])
    e = (1 - 0.99**counts) / 0.01
    w = (1 / e) / (1 / e).sum() * 2
    torch.testing.assert_close(effective_number_weights(counts, 0.99), torch.tensor(w).float())
    torch.testing.assert_close(effective_number_weights([5, 1], 0.0), torch.ones(2))
    torch.testing.assert_close(inverse_frequency_weights([4, 1]), torch.tensor([0.4, 1.6]))
    torch.testing.assert_close(inverse_frequency_weights([9, 1], 0.5), torch.tensor([0.5, 1.5]))


def test_default_beta_weights_sum_to_c_and_favour_rare_classes():
    w = effective_number_weights(COUNTS)
    assert w.sum().item() == pytest.approx(len(COUNTS), rel=1e-6)
    assert torch.all(w[1:] > w[:-1])


def test_drw_switches_exactly_at_the_epoch():
    drw = build_class_weighting("drw", class_counts=COUNTS, switch=5)
    assert isinstance(drw, DRW)
    assert drw(4.99) is None
    torch.testing.assert_close(drw(5), effective_number_weights(COUNTS))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("inverse", [0.4, 1.6]),  # 1/n normalised to sum to C = 2: (1/4, 1) · 2 / 1.25
        ("inverse_sqrt", [2 / 3, 4 / 3]),  # (1/2, 1) · 2 / 1.5
        ("class_balanced", [1.0, 1.0]),  # β = 0: uniform
    ],
)
def test_registered_static_weightings_by_hand(name, expected):
    options = {"beta": 0.0} if name == "class_balanced" else {}
    weighting = build_class_weighting(name, class_counts=[4, 1], **options)
    assert isinstance(weighting, StaticWeights)
    torch.testing.assert_close(weighting(0), torch.tensor(expected))
    torch.testing.assert_close(weighting(1000), torch.tensor(expected))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: StaticWeights((1.0, -0.5)), r"finite numbers >= 0, got \(1.0, -0.5\)"),
        (lambda: StaticWeights((1.0, math.inf)), r"finite numbers >= 0, got \(1.0, inf\)"),
        (lambda: StaticWeights(()), r"finite numbers >= 0, got \(\)"),
        (lambda: DRW((1.0, math.nan), switch=3), "finite numbers >= 0"),
        (lambda: DRW((1.0, 2.0), switch=math.inf), "switch must be a finite number >= 0, got inf"),
        (lambda: DRW((1.0, 2.0), switch=-1), "switch must be a finite number >= 0, got -1"),
    ],
)
def test_bad_class_weights_and_switch_name_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "focal"}, "unknown class weighting 'focal'; valid names: class_balanced, drw"),
        ({"name": "drw", "class_counts": COUNTS}, "needs switch="),
        ({"name": "class_balanced"}, "needs class_counts"),
        (
            {"name": "class_balanced", "class_counts": COUNTS, "beta": 1.0},
            r"beta must be in \[0, 1\)",
        ),
        ({"name": "inverse", "class_counts": COUNTS, "power": 2}, "unknown option"),
    ],
)
def test_bad_class_weighting_is_refused(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        build_class_weighting(name, **kwargs)


# -- RGD --------------------------------------------------------------------------------------


def test_rgd_weights_by_hand():
    # Kumar et al. (arXiv 2306.09222): r_i = exp(min(l_i, τ) / (τ + 1)), step on (1/B) Σ r_i l_i.
    # τ = 1.5: min(l, τ) = (0, 0.5, 1.5, 1.5); / 2.5 = (0, 0.2, 0.6, 0.6)
    losses = torch.tensor([0.0, 0.5, 2.0, 10.0])
    tau = 1.5
    e02, e06 = 1.2214027581601699, 1.8221188003905089  # exp(0.2), exp(0.6)
    raw = [1.0, e02, e06, e06]
    expected = torch.tensor([r / 4 for r in raw])
    torch.testing.assert_close(rgd_weights(losses, tau), expected)
    normalised = torch.tensor([r / sum(raw) for r in raw])
    torch.testing.assert_close(rgd_weights(losses, tau, normalize=True), normalised)
    w = RGDWeighting(tau)
    out = w(losses.requires_grad_())
    by_hand = (0.0 * 1.0 + 0.5 * e02 + 2.0 * e06 + 10.0 * e06) / 4
    assert out.item() == pytest.approx(by_hand, rel=1e-6)
    assert not w.last_weights.requires_grad
    # detached weights: the gradient is r_i / B, not the derivative of r_i l_i
    (grad,) = torch.autograd.grad(out, losses)
    torch.testing.assert_close(grad, expected)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        RGDWeighting(0.0)


# -- composition ------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES.names())
@pytest.mark.parametrize("class_weighting", ["none", "class_balanced"])
def test_absgd_with_infinite_lambda_equals_the_plain_objective(loss, class_weighting):
    logits, y = _batch(1)
    plain = build_objective(loss, class_counts=COUNTS, class_weighting=class_weighting)
    absgd = build_objective(
        loss,
        class_counts=COUNTS,
        class_weighting=class_weighting,
        weighting="absgd",
        weighting_options={"lam": math.inf},
    )
    torch.testing.assert_close(absgd(logits, y), plain(logits, y))
    mean_loss = build_loss(loss, class_counts=COUNTS, reduction="mean")(logits, y)
    if class_weighting == "none":
        torch.testing.assert_close(plain(logits, y), mean_loss)


def test_the_authors_noisy_label_objective_is_their_loss_formula():
    # the authors' noisy-label step: Σ (exp(l/λ) / (B u) + 1/B) l, u = γ α mean exp(l/λ)
    # on the first batch (u starts at 0), λ = -3, γ = 0.9, α = 0.5
    logits, y = _batch(3)
    obj = build_objective(
        "ce",
        weighting="absgd",
        weighting_options={"lam": -3.0, "gamma": 0.9, "alpha": 0.5, "init": "zero", "uniform": 1},
    )
    ce = F.cross_entropy(logits.double(), y, reduction="none")
    e = torch.exp(ce / -3.0)
    p = e / (len(ce) * 0.9 * 0.5 * e.mean()) + 1 / len(ce)
    torch.testing.assert_close(obj(logits, y).double(), (p * ce).sum(), rtol=1e-5, atol=0)


def test_plain_class_balanced_objective_is_torch_weighted_cross_entropy():
    logits, y = _batch(2)
    obj = build_objective("ce", class_counts=COUNTS, class_weighting="class_balanced")
    torch.testing.assert_close(
        obj(logits, y), F.cross_entropy(logits, y, weight=effective_number_weights(COUNTS))
    )
    raw = build_objective(
        "ce", class_counts=COUNTS, class_weighting="class_balanced", normalize_class_weights=False
    )
    w = effective_number_weights(COUNTS)[y]
    torch.testing.assert_close(
        raw(logits, y), (w * F.cross_entropy(logits, y, reduction="none")).mean()
    )


def test_inside_and_outside_placement_on_a_hand_made_example():
    # Two samples with equal loss l = ln 2 (CE of logits (0, 0)), class weights (1, 3), λ = 1.
    # inside:  p ∝ exp(c·l) = (2, 8)  -> p = (2, 8) / (2 · mean(2, 8)) = (0.2, 0.8)
    # outside: p ∝ exp(l)   = (2, 2)  -> p = (0.5, 0.5)
    logits = torch.zeros(2, 2)
    y = torch.tensor([0, 1])
    weights = DRW((1.0, 3.0), switch=0)
    loss_value = math.log(2.0)
    for placement, p in (("inside", (0.2, 0.8)), ("outside", (0.5, 0.5))):
        obj = Objective(
            build_loss("ce", reduction="none"),
            class_weighting=weights,
            weighting=ABWeighting(1.0),
            placement=placement,
            normalize_class_weights=False,
        )
        total = obj(logits, y)
        torch.testing.assert_close(obj.last_weights, torch.tensor(p))
        expected = p[0] * 1 * loss_value + p[1] * 3 * loss_value
        assert total.item() == pytest.approx(expected, rel=1e-6)


def _three_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """CE losses ln 4, ln(4/3), ln 2: logits (0, ln 3) with labels 0 and 1, then (0, 0), 1."""
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [0.0, 0.0]])
    return logits, torch.tensor([0, 1, 1])


@pytest.mark.parametrize(
    ("placement", "normalize", "expected"),
    [
        # class weights (1, 3): c = (1, 3, 3), mean 7/3; λ = 1, first batch: p = e / Σ e.
        # outside: e = exp(l) = (4, 4/3, 2), p = (6, 2, 3) / 11;
        #   Σ p c l = (6 ln 4 + 6 ln(4/3) + 9 ln 2) / 11 = (33 ln 2 - 6 ln 3) / 11
        ("outside", False, (33 * math.log(2) - 6 * math.log(3)) / 11),
        ("outside", True, (99 * math.log(2) - 18 * math.log(3)) / 77),  # ÷ 7/3
        # inside: e = exp(c l) = (4, 64/27, 8), p = (27, 16, 54) / 97;
        #   Σ p c l = (54 ln 2 + 48 ln(4/3) + 162 ln 2) / 97 = (312 ln 2 - 48 ln 3) / 97
        ("inside", False, (312 * math.log(2) - 48 * math.log(3)) / 97),
        ("inside", True, 3 * (312 * math.log(2) - 48 * math.log(3)) / 679),  # ÷ 7/3
        # weighted: ÷ Σ p c / Σ p; outside Σ p c = (6 + 6 + 9) / 11, inside (27 + 48 + 162) / 97
        ("outside", "weighted", (33 * math.log(2) - 6 * math.log(3)) / 21),
        ("inside", "weighted", (312 * math.log(2) - 48 * math.log(3)) / 237),
    ],
)
def test_placement_and_normalised_class_weights_by_value(placement, normalize, expected):
    logits, y = _three_samples()
    obj = Objective(
        build_loss("ce", reduction="none"),
        class_weighting=DRW((1.0, 3.0), switch=0),
        weighting=ABWeighting(1.0),
        placement=placement,
        normalize_class_weights=normalize,
    )
    total = obj(logits, y)
    p = (6 / 11, 2 / 11, 3 / 11) if placement == "outside" else (27 / 97, 16 / 97, 54 / 97)
    torch.testing.assert_close(obj.last_weights, torch.tensor(p))
    assert total.item() == pytest.approx(expected, rel=1e-6)


def _sharp_drw_objective(normalize):
    # class weights 1 : 50 and a sharp λ: the weights move onto the rare class's samples
    return Objective(
        build_loss("ce", reduction="none"),
        class_weighting=DRW((1.0, 50.0), switch=0),
        weighting=ABWeighting(0.5),
        normalize_class_weights=normalize,
    )


def test_weighted_class_weight_norm_bounds_the_objective_by_the_losses():
    # 15 frequent samples with small losses, one rare sample with a large one
    logits = torch.zeros(16, 2)
    logits[:15, 0] = 3.0
    y = torch.zeros(16, dtype=torch.long)
    y[15] = 1
    losses = F.cross_entropy(logits.double(), y, reduction="none")
    mean_c = (15 + 50) / 16
    by_mean = _sharp_drw_objective(True)(logits, y)
    weighted = _sharp_drw_objective("weighted")
    total = weighted(logits, y)
    q = weighted.last_weights.double()
    c = torch.where(y == 1, 50.0, 1.0).double()
    # the batch-mean normaliser multiplies the rare sample's loss by 50 / mean c ≈ 12
    assert by_mean.item() > 5 * losses.max().item()
    # the weighted one is Σ q times a convex combination of the losses (float64 reference)
    expected = q.sum() * (q * c * losses).sum() / (q * c).sum()
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert total.item() <= q.sum().item() * losses.max().item() * (1 + 1e-6)
    # same direction, smaller scale: the ratio of the two is mean c / (Σ q c / Σ q)
    ratio = mean_c / ((q * c).sum() / q.sum()).item()
    assert total.item() == pytest.approx(by_mean.item() * ratio, rel=1e-5)


def test_weighted_class_weight_norm_keeps_the_gradient_direction():
    logits, y = _batch(3)
    y = y % 2
    grads = []
    for normalize in (True, "weighted"):
        x = logits[:, :2].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_sharp_drw_objective(normalize)(x, y), x)
        grads.append(g.flatten().double())
    cosine = F.cosine_similarity(grads[0], grads[1], dim=0)
    assert cosine.item() == pytest.approx(1.0, abs=1e-6)
    assert grads[1].norm() < grads[0].norm()


@pytest.mark.parametrize("weighting", [None, "inf"])
def test_weighted_class_weight_norm_is_the_batch_mean_for_uniform_weights(weighting):
    logits, y = _batch(4)
    objectives = [
        Objective(
            build_loss("ldam", class_counts=COUNTS, reduction="none"),
            class_weighting=DRW(tuple(effective_number_weights(COUNTS)), switch=0),
            weighting=None if weighting is None else ABWeighting(math.inf),
            normalize_class_weights=normalize,
        )
        for normalize in (True, "weighted")
    ]
    torch.testing.assert_close(objectives[1](logits, y), objectives[0](logits, y))


@pytest.mark.parametrize("bad", ["mean", "yes", 1, None])
def test_bad_class_weight_norm_is_refused(bad):
    with pytest.raises(ValueError, match=r"normalize_class_weights must be one of \(True, False"):
        Objective(build_loss("ce", reduction="none"), normalize_class_weights=bad)


def test_objective_gradient_is_the_weighted_sum_of_per_sample_gradients():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4)
    x, y = torch.randn(10, 3), torch.randint(0, 4, (10,))
    obj = build_objective(
        "focal",
        class_counts=COUNTS,
        class_weighting="inverse_sqrt",
        weighting="absgd",
        weighting_options={"lam": 0.5},
        loss_options={"gamma": 1.0},
    )
    obj(model(x), y).backward()
    got = model.weight.grad.clone()
    c = inverse_frequency_weights(COUNTS, 0.5)[y]
    q = obj.last_weights
    expected = torch.zeros_like(got)
    for i in range(10):
        model.zero_grad()
        build_loss("focal", gamma=1.0)(model(x[i : i + 1]), y[i : i + 1]).backward()
        expected += q[i] * c[i] * model.weight.grad / c.mean()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_drw_objective_follows_set_epoch_and_rgd_composes():
    logits, y = _batch(3)
    obj = build_objective(
        "ldam",
        class_counts=COUNTS,
        class_weighting="drw",
        class_weighting_options={"switch": 2},
        weighting="rgd",
        weighting_options={"tau": 2.0},
    )
    # LDAM (max margin 0.5 at the rarest class, m_c ∝ n_c^{-1/4}, scale 30) in float64
    m = torch.tensor(COUNTS, dtype=torch.float64) ** -0.25
    m = 0.5 * m / m.max()
    z = logits.double() - F.one_hot(y, 4) * m[y, None]
    ldam = F.cross_entropy(30.0 * z, y, reduction="none")

    def rgd(v):  # r_i / B = exp(min(v_i, τ) / (τ + 1)) / B, τ = 2
        return torch.exp(v.clamp(max=2.0) / 3.0) / len(v)

    obj.set_epoch(1)
    assert obj.class_weight is None
    before = obj(logits, y)
    torch.testing.assert_close(before.double(), (rgd(ldam) * ldam).sum(), rtol=1e-5, atol=0)
    obj.set_epoch(2)
    torch.testing.assert_close(obj.class_weight, effective_number_weights(COUNTS))
    after = obj(logits, y)
    # placement "inside": RGD sees c_i·l_i; the default normalisation divides by mean c
    c = effective_number_weights(COUNTS).double()[y]
    expected = (rgd(c * ldam) * c * ldam).sum() / c.mean()
    torch.testing.assert_close(after.double(), expected, rtol=1e-5, atol=0)
    assert obj.last_weights is not None and obj.last_weights.shape == (16,)
    assert "class_weight" not in obj.state_dict()


def test_objective_state_dict_carries_loss_buffers_and_absgd_state():
    obj = build_objective(
        "ldam", class_counts=COUNTS, weighting="absgd", weighting_options={"lam": 2.0}
    )
    obj(*_batch(4))
    keys = set(obj.state_dict())
    assert {"loss.margins", "weighting.log_s_ref", "weighting.step", "weighting.lam_value"} <= keys


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weighting": "meta"}, "unknown sample weighting 'meta'; valid names: absgd, none, rgd"),
        ({"weighting": "absgd"}, "needs weighting_options"),
        ({"loss": "ce", "placement": "middle"}, "placement must be one of"),
        ({"loss_options": {"reduction": "mean"}}, "may not set reduction"),
        ({"weighting": "rgd", "weighting_options": {"lam": 1.0}}, "unknown option.*lam"),
    ],
)
def test_bad_objective_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_objective(**kwargs)


def test_objective_refuses_a_reducing_loss():
    with pytest.raises(ValueError, match="reduction='none'"):
        Objective(build_loss("ce"))


# -- the step scale: the sum of the objective's coefficients on the per-sample losses ---------


class _ShiftedCE(torch.nn.Module):
    """CE plus a shared parameter ``shift``: the objective's gradient with respect to it is
    the sum of the coefficients the objective puts on the per-sample losses."""

    reduction = "none"

    def __init__(self) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(()))

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="none") + self.shift


@pytest.mark.parametrize("normalize", [True, False, "weighted"])
@pytest.mark.parametrize("placement", ["inside", "outside"])
@pytest.mark.parametrize(
    "weighting",
    [
        lambda: ABWeighting(0.5),
        lambda: ABWeighting(2.0, alpha=0.5, gamma=0.7, init="zero"),
        lambda: ABWeighting(1.0, target_ess=0.5),  # rescaled to the mean loss
        lambda: RGDWeighting(1.0),
    ],
)
@pytest.mark.parametrize("class_weights", [None, (1.0, 4.0, 9.0, 30.0)])
def test_step_scale_is_the_gradient_of_a_shared_loss_shift(
    normalize, placement, weighting, class_weights
):
    loss = _ShiftedCE()
    obj = Objective(
        loss,
        class_weighting=None if class_weights is None else DRW(class_weights, switch=0),
        weighting=weighting(),
        placement=placement,
        normalize_class_weights=normalize,
    )
    for seed in range(3):  # later batches: the moving average and λ have state
        logits, y = _batch(seed)
        loss.zero_grad()
        obj(logits, y).backward()
        assert obj.last_step_scale is not None
        assert obj.last_step_scale.item() == pytest.approx(loss.shift.grad.item(), rel=1e-5)


def test_step_scale_by_hand():
    # _three_samples, class weights (1, 3), λ = 1, outside: q = (6, 2, 3) / 11, c = (1, 3, 3),
    # Σ q c = 21 / 11, mean c = 7 / 3
    logits, y = _three_samples()
    expected = {True: (21 / 11) / (7 / 3), False: 21 / 11, "weighted": 1.0}
    for normalize, scale in expected.items():
        obj = Objective(
            build_loss("ce", reduction="none"),
            class_weighting=DRW((1.0, 3.0), switch=0),
            weighting=ABWeighting(1.0),
            placement="outside",
            normalize_class_weights=normalize,
        )
        obj(logits, y)
        assert obj.last_step_scale.item() == pytest.approx(scale, rel=1e-6)
    # plain SGD's uniform weights under the batch mean: the base's step, 1
    plain = build_objective("ce", class_counts=COUNTS, class_weighting="class_balanced",
                            weighting="absgd", weighting_options={"lam": math.inf})  # fmt: skip
    plain(*_batch(1))
    assert plain.last_step_scale.item() == pytest.approx(1.0, rel=1e-6)
    # no sample weighting: nothing to report
    base = build_objective("ce", class_counts=COUNTS, class_weighting="class_balanced")
    base(*_batch(1))
    assert base.last_step_scale is None
