r"""Noise-robust losses: symmetric cross-entropy and generalised / truncated L_q.

Same conventions as :mod:`absgd.losses.softmax` (per-class ``weight``, ``reduction``, logits
upcast to float32, finite gradients for logits up to ±1e4). ABSGD with λ < 0 stacks on them
for label noise (Qi et al. 2023, Section 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from absgd.losses._common import (
    Reduction,
    check_inputs,
    check_reduction,
    log_probs,
    reduce,
    target_log_prob,
)
from absgd.losses.softmax import _Loss

__all__ = [
    "GeneralizedCrossEntropyLoss",
    "SymmetricCrossEntropyLoss",
    "generalized_cross_entropy",
    "symmetric_cross_entropy",
]


def _check_sce(alpha: float, beta: float, log_zero: float) -> None:
    if not (alpha >= 0 and beta >= 0 and math.isfinite(alpha) and math.isfinite(beta)):
        raise ValueError(f"alpha and beta must be finite and >= 0, got {alpha!r}, {beta!r}")
    if alpha == 0 and beta == 0:
        raise ValueError("alpha and beta cannot both be 0")
    if not (log_zero < 0 and math.isfinite(log_zero)):
        raise ValueError(f"log_zero must be a finite number < 0, got {log_zero!r}")


def symmetric_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = -4.0,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Symmetric cross-entropy ``α·CE + β·RCE`` (Wang et al., ICCV 2019).

    The reverse cross-entropy ``RCE = -Σ_k p_k log q_k`` swaps prediction ``p`` and one-hot
    label ``q``; ``log 0`` is undefined, so it is clamped to the constant ``A = log_zero``
    (the paper uses A = -4; clamping the one-hot label at 1e-4 instead amounts to
    A = log 1e-4 ≈ -9.21). Then ``RCE = -A · (1 - p_y)``, computed in that closed form.
    Defaults α = 0.1, β = 1 are the paper's CIFAR-10 setting.

    >>> logits = torch.tensor([[0.0, 0.0]])
    >>> round(symmetric_cross_entropy(logits, torch.tensor([0]), alpha=0.0).item(), 6)
    2.0
    """
    check_inputs(logits, target)
    check_reduction(reduction)
    _check_sce(alpha, beta, log_zero)
    log_py = target_log_prob(log_probs(logits), target)
    rce = -log_zero * (-torch.expm1(log_py))
    return reduce(alpha * (-log_py) + beta * rce, target, weight, reduction)


def _check_gce(q: float, k: float | None) -> None:
    if not (0.0 < q <= 1.0):
        raise ValueError(f"q must be in (0, 1], got {q!r}")
    if k is not None and not (0.0 < k < 1.0):
        raise ValueError(f"k must be None or in (0, 1), got {k!r}")


def generalized_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    k: float | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Generalised cross-entropy ``L_q = (1 - p_y^q) / q`` (Zhang & Sabuncu, NeurIPS 2018).

    ``q → 0`` tends to cross-entropy, ``q = 1`` is the MAE. With ``k`` the truncated loss:
    samples with ``p_y ≤ k`` (likely mislabelled) contribute the constant ``L_q(k)`` and no
    gradient. Here the truncation is applied per sample at every step; the paper's variant
    prunes with weights refreshed every few epochs.

    >>> logits = torch.tensor([[0.0, 0.0]])
    >>> round(generalized_cross_entropy(logits, torch.tensor([0]), q=1.0).item(), 6)
    0.5
    """
    check_inputs(logits, target)
    check_reduction(reduction)
    _check_gce(q, k)
    log_py = target_log_prob(log_probs(logits), target)
    losses = -torch.expm1(q * log_py) / q
    if k is not None:
        floor = (1.0 - k**q) / q
        losses = torch.where(log_py > math.log(k), losses, torch.full_like(losses, floor))
    return reduce(losses, target, weight, reduction)


class SymmetricCrossEntropyLoss(_Loss):
    """Module form of :func:`symmetric_cross_entropy`."""

    def __init__(
        self,
        *,
        alpha: float = 0.1,
        beta: float = 1.0,
        log_zero: float = -4.0,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        _check_sce(alpha, beta, log_zero)
        self.alpha, self.beta, self.log_zero = float(alpha), float(beta), float(log_zero)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return symmetric_cross_entropy(
            logits,
            target,
            alpha=self.alpha,
            beta=self.beta,
            log_zero=self.log_zero,
            weight=self.weight,
            reduction=self.reduction,
        )


class GeneralizedCrossEntropyLoss(_Loss):
    """Module form of :func:`generalized_cross_entropy` (``k=None``: untruncated)."""

    def __init__(
        self,
        *,
        q: float = 0.7,
        k: float | None = None,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        _check_gce(q, k)
        self.q = float(q)
        self.k = None if k is None else float(k)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return generalized_cross_entropy(
            logits, target, q=self.q, k=self.k, weight=self.weight, reduction=self.reduction
        )
