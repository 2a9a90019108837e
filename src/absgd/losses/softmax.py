r"""Softmax losses for class imbalance: CE, focal, LDAM, logit adjustment, balanced softmax.

Every loss is a function ``f(logits, target, ..., weight=None, reduction="mean")`` and an
``nn.Module`` with the same options; ``reduction="none"`` gives one loss per sample, the input
of ABSGD. ``weight`` is a per-class weight ``w_y`` multiplying the sample's loss (``"mean"``
then divides by ``Σ w_y``, as ``torch.nn.functional.cross_entropy`` does). Logits of any
floating dtype are upcast to at least float32; losses are computed from ``log_softmax``, so
they and their gradients stay finite for logits as large as ±1e4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from absgd.losses._common import (
    Reduction,
    as_weight,
    check_inputs,
    check_reduction,
    class_counts_tensor,
    log_probs,
    reduce,
    target_log_prob,
)

__all__ = [
    "BalancedSoftmaxLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "balanced_softmax_loss",
    "cross_entropy",
    "focal_loss",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_loss",
]

Counts = Sequence[int] | np.ndarray | Tensor


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Cross-entropy ``-log p_y`` with optional label smoothing ε.

    With smoothing the target is ``(1-ε)·onehot(y) + ε/C``:
    ``l = (1-ε)(-log p_y) + ε · mean_k(-log p_k)``. The class weight ``w_y`` multiplies the
    whole sample loss (``torch``'s ``cross_entropy`` with both ``weight`` and
    ``label_smoothing`` weights the smoothing term by ``w_k`` instead).

    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    >>> cross_entropy(logits, torch.tensor([0, 1]), reduction="none")
    tensor([0.1269, 0.6931])
    """
    check_inputs(logits, target)
    check_reduction(reduction)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    log_p = log_probs(logits)
    losses = -target_log_prob(log_p, target)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * log_p.mean(dim=1)
    return reduce(losses, target, weight, reduction)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 1.0,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Multi-class softmax focal loss ``-(1 - p_y)^γ log p_y`` (Lin et al., ICCV 2017).

    γ = 0 is exactly cross-entropy. ``weight`` plays the role of the α-balancing factor
    (class-balanced focal: Cui et al., CVPR 2019, with the softmax instead of sigmoids).
    ``1 - p_y`` is computed as ``-expm1(log p_y)`` and floored at the smallest normal float,
    which keeps the gradient finite for γ < 1 when ``p_y`` rounds to 1.

    >>> logits = torch.tensor([[2.0, 0.0]])
    >>> focal_loss(logits, torch.tensor([0]), gamma=0.0).item() == cross_entropy(
    ...     logits, torch.tensor([0])).item()
    True
    """
    check_inputs(logits, target)
    check_reduction(reduction)
    if not (gamma >= 0.0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    log_pt = target_log_prob(log_probs(logits), target)
    one_minus = (-torch.expm1(log_pt)).clamp(min=torch.finfo(log_pt.dtype).tiny)
    losses = -one_minus.pow(gamma) * log_pt
    return reduce(losses, target, weight, reduction)


def ldam_margins(class_counts: Counts, max_margin: float = 0.5) -> Tensor:
    r"""LDAM margins ``Δ_c ∝ n_c^{-1/4}``, scaled so the largest (rarest class) is ``max_margin``.

    Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
    NeurIPS 2019.

    >>> ldam_margins([10000, 625, 16], max_margin=0.5)
    tensor([0.1000, 0.2000, 0.5000])
    """
    if not (max_margin > 0.0 and math.isfinite(max_margin)):
        raise ValueError(f"max_margin must be a finite number > 0, got {max_margin!r}")
    counts = class_counts_tensor(class_counts).double()
    raw = counts.pow(-0.25)
    return (raw * (max_margin / raw.max())).to(torch.float32)


def ldam_loss(
    logits: Tensor,
    target: Tensor,
    margins: Tensor,
    *,
    scale: float = 30.0,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""LDAM: cross-entropy of ``s · (z - Δ_y e_y)``: the true logit is lowered by its margin.

    ``scale`` ``s`` = 30 is meant for cosine logits in [-1, 1] (a normalised classifier, as in
    Cao et al.); with an ordinary linear classifier use ``scale=1``.
    """
    check_inputs(logits, target)
    check_reduction(reduction)
    if margins.dim() != 1 or margins.shape[0] != logits.shape[1]:
        raise ValueError(
            f"margins must have one entry per class ({logits.shape[1]}), "
            f"got shape {tuple(margins.shape)}"
        )
    if not (scale > 0.0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    shift = torch.zeros_like(z).scatter_(
        1, target.long().unsqueeze(1), margins.to(z)[target.long()].unsqueeze(1)
    )
    losses = -target_log_prob(log_probs(scale * (z - shift)), target)
    return reduce(losses, target, weight, reduction)


def logit_adjusted_loss(
    logits: Tensor,
    target: Tensor,
    log_prior: Tensor,
    *,
    tau: float = 1.0,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Logit-adjusted cross-entropy ``CE(z + τ log π, y)`` (Menon et al., ICLR 2021).

    ``π`` is the training class prior; τ = 0 is plain cross-entropy. At test time the raw
    logits ``z`` are used.
    """
    check_inputs(logits, target)
    check_reduction(reduction)
    if not math.isfinite(tau):
        raise ValueError(f"tau must be a finite number, got {tau!r}")
    if log_prior.dim() != 1 or log_prior.shape[0] != logits.shape[1]:
        raise ValueError(
            f"log_prior must have one entry per class ({logits.shape[1]}), "
            f"got shape {tuple(log_prior.shape)}"
        )
    z = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return cross_entropy(z + tau * log_prior.to(z), target, weight=weight, reduction=reduction)


def balanced_softmax_loss(
    logits: Tensor,
    target: Tensor,
    class_counts: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Balanced softmax ``CE(z + log n_c, y)`` (Ren et al., NeurIPS 2020).

    Equal to :func:`logit_adjusted_loss` with τ = 1 and ``π ∝ n``: the constant ``log Σ n``
    cancels in the softmax.
    """
    return logit_adjusted_loss(
        logits, target, class_counts.log(), tau=1.0, weight=weight, reduction=reduction
    )


class _Loss(nn.Module):
    """Base: a ``reduction`` attribute and an optional per-class ``weight`` buffer."""

    weight: Tensor | None
    needs_class_counts = False

    def __init__(self, weight: Sequence[float] | Tensor | None, reduction: Reduction) -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction
        self.register_buffer("weight", as_weight(weight))

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Module form of :func:`cross_entropy`."""

    def __init__(
        self,
        *,
        label_smoothing: float = 0.0,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(
            logits,
            target,
            weight=self.weight,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class FocalLoss(_Loss):
    """Module form of :func:`focal_loss` (γ default 1.0)."""

    def __init__(
        self,
        *,
        gamma: float = 1.0,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        if not (gamma >= 0.0 and math.isfinite(gamma)):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        self.gamma = float(gamma)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            logits, target, gamma=self.gamma, weight=self.weight, reduction=self.reduction
        )


class LDAMLoss(_Loss):
    """Module form of :func:`ldam_loss`; the margins are a buffer built from the class counts."""

    margins: Tensor
    needs_class_counts = True

    def __init__(
        self,
        class_counts: Counts,
        *,
        max_margin: float = 0.5,
        scale: float = 30.0,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        if not (scale > 0.0 and math.isfinite(scale)):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        self.register_buffer("margins", ldam_margins(class_counts, max_margin))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return ldam_loss(
            logits,
            target,
            self.margins,
            scale=self.scale,
            weight=self.weight,
            reduction=self.reduction,
        )


class LogitAdjustedLoss(_Loss):
    """Module form of :func:`logit_adjusted_loss`; ``log π`` is a buffer from the class counts."""

    log_prior: Tensor
    needs_class_counts = True

    def __init__(
        self,
        class_counts: Counts,
        *,
        tau: float = 1.0,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        if not math.isfinite(tau):
            raise ValueError(f"tau must be a finite number, got {tau!r}")
        self.tau = float(tau)
        counts = class_counts_tensor(class_counts).double()
        self.register_buffer("log_prior", (counts / counts.sum()).log().to(torch.float32))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return logit_adjusted_loss(
            logits,
            target,
            self.log_prior,
            tau=self.tau,
            weight=self.weight,
            reduction=self.reduction,
        )


class BalancedSoftmaxLoss(_Loss):
    """Module form of :func:`balanced_softmax_loss`; the counts are a buffer."""

    class_counts: Tensor
    needs_class_counts = True

    def __init__(
        self,
        class_counts: Counts,
        *,
        weight: Sequence[float] | Tensor | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(weight, reduction)
        self.register_buffer("class_counts", class_counts_tensor(class_counts))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return balanced_softmax_loss(
            logits, target, self.class_counts, weight=self.weight, reduction=self.reduction
        )
