"""absgd.risk.entropic_risk against float64 formulas written out by hand."""

import math

import numpy as np
import pytest
import torch

from absgd.risk import entropic_risk


def _by_hand(v, lam, q=None):
    v = np.asarray(v, dtype=np.float64)
    q = np.full(len(v), 1 / len(v)) if q is None else np.asarray(q, float) / np.sum(q)
    if math.isinf(lam):
        return float((q * v).sum())
    return float(lam * np.log((q * np.exp(v / lam)).sum()))


@pytest.mark.parametrize("lam", [0.5, 2.0, -1.0, math.inf])
def test_value_matches_the_formula(lam):
    v = np.array([0.1, 0.7, 2.3, 0.05, 1.1])
    q = np.array([1.0, 2.0, 0.5, 3.0, 1.0])
    t = torch.tensor(v, dtype=torch.float64)
    assert float(entropic_risk(t, lam)) == pytest.approx(_by_hand(v, lam), rel=1e-12)
    weighted = entropic_risk(t, lam, torch.tensor(q))
    assert float(weighted) == pytest.approx(_by_hand(v, lam, q), rel=1e-12)


def test_limits_mean_max_and_min():
    v = torch.tensor([0.2, 1.5, 0.9], dtype=torch.float64)
    assert float(entropic_risk(v, 1e6)) == pytest.approx(float(v.mean()), rel=1e-5)
    assert float(entropic_risk(v, 1e-3)) == pytest.approx(1.5, abs=1e-2)  # smooth maximum
    assert float(entropic_risk(v, -1e-3)) == pytest.approx(0.2, abs=1e-2)  # smooth minimum


def test_gradient_is_the_softmax_weighted_gradient():
    # d/dθ R(v(θ)) = Σ p_i ∇v_i with p = softmax(v/λ + log q): here v = θ², ∇v_i = 2θ_i.
    theta = torch.tensor([0.3, -1.2, 0.8, 1.5], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([1.0, 0.5, 2.0, 1.0], dtype=torch.float64)
    lam = 0.7
    entropic_risk(theta**2, lam, q).backward()
    v = theta.detach().numpy() ** 2
    p = q.numpy() * np.exp(v / lam)
    p /= p.sum()
    np.testing.assert_allclose(theta.grad.numpy(), p * 2 * theta.detach().numpy(), rtol=1e-12)


def test_an_integer_weight_is_repeated_rows_and_zero_weight_is_absent():
    v = torch.tensor([0.4, 1.3, 0.2], dtype=torch.float64)
    repeated = torch.tensor([0.4, 1.3, 1.3, 1.3, 0.2], dtype=torch.float64)
    w = torch.tensor([1.0, 3.0, 1.0], dtype=torch.float64)
    assert float(entropic_risk(v, 0.6, w)) == pytest.approx(float(entropic_risk(repeated, 0.6)))
    dropped = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    v.requires_grad_(True)
    value = entropic_risk(v, 0.6, dropped)
    value.backward()
    assert float(value.detach()) == pytest.approx(_by_hand([0.4, 0.2], 0.6))
    assert float(v.grad[1]) == 0.0 and torch.isfinite(v.grad).all()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(3), 0.0), "lam must be a non-zero"),
        ((torch.zeros(2, 2), 1.0), "non-empty 1-D tensor"),
        ((torch.zeros(3), 1.0, torch.ones(2)), "shape of values"),
        ((torch.zeros(3), 1.0, -torch.ones(3)), "non-negative"),
        ((torch.zeros(3), 1.0, torch.zeros(3)), "not all be zero"),
    ],
)
def test_bad_input_is_refused(args, match):
    with pytest.raises(ValueError, match=match):
        entropic_risk(*args)
