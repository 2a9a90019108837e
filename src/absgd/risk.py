r"""The objective ABSGD minimises, in closed form: the entropic (KL-regularised DRO) risk.

Qi, Xu, Yin, Jin, Yang, "Attentional-Biased Stochastic Gradient Descent", TMLR 2023
(arXiv 2012.06951) write ABSGD's objective as the KL-regularised distributionally robust
risk of the per-sample losses ``v_1 … v_n``::

    max_{p ∈ Δ}  Σ p_i v_i − λ KL(p ‖ q)  =  λ log Σ_i q_i exp(v_i / λ)  =: R_λ(v)

(``q`` the empirical distribution, uniform unless weighted). Its gradient is
``Σ_i p*_i ∇v_i`` with ``p* = softmax(v/λ + log q)``: the attentional weights with the exact
normaliser, which ABSGD estimates on mini-batches with its moving average ``s_t``. λ > 0 makes
``R_λ`` a smooth maximum (it rises from the weighted mean at λ = ∞ to ``max v`` as λ → 0+,
and is convex in the parameters wherever every ``v_i`` is); λ < 0 a smooth minimum (label
noise). :func:`entropic_risk` evaluates it exactly on a whole data set, which is what a
full-batch solver (``ABSGDClassifier(solver="lbfgs")``) minimises and what tests compare the
stochastic weights against.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from absgd.weighting import validate_lam

__all__ = ["entropic_risk"]


def entropic_risk(values: Tensor, lam: float, weights: Tensor | None = None) -> Tensor:
    r"""``λ log Σ_i q_i exp(v_i / λ)`` with ``q = weights / Σ weights`` (uniform by default).

    Args:
        values: per-sample losses ``v``, shape ``(n,)``; differentiable.
        lam: temperature λ, non-zero; ``±math.inf`` gives the weighted mean ``Σ q_i v_i``.
        weights: non-negative importance weights of the samples (not all zero), or ``None``.

    Returns:
        A scalar tensor. Its gradient is ``Σ_i p_i ∇v_i`` with ``p = softmax(v/λ + log q)``.

    Example:
        >>> v = torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> round(float(entropic_risk(v, 1.0)), 6)  # log((1 + e) / 2)
        0.620115
        >>> float(entropic_risk(v, math.inf))
        0.5
    """
    lam = validate_lam(lam)
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"values must be a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    if weights is None:
        if math.isinf(lam):
            return values.mean()
        return lam * (torch.logsumexp(values / lam, 0) - math.log(values.numel()))
    weights = weights.to(values)
    if weights.shape != values.shape:
        raise ValueError(
            f"weights must have the shape of values {tuple(values.shape)}, "
            f"got {tuple(weights.shape)}"
        )
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("weights must be finite and non-negative")
    total = weights.sum()
    if not total > 0:
        raise ValueError("weights must not all be zero")
    q = weights / total
    if math.isinf(lam):
        return (q * values).sum()
    kept = q > 0  # log 0 = -inf would make 0 · inf = NaN in the gradient
    return lam * torch.logsumexp(values[kept] / lam + q[kept].log(), 0)
