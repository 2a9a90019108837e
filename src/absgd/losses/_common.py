"""Shared pieces of the per-sample losses: validation, log-probabilities, reduction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_inputs(logits: Tensor, target: Tensor) -> None:
    """Logits ``(B, C)`` with ``C >= 2`` and integer targets ``(B,)`` (no host sync)."""
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (B, C) with C >= 2, got {tuple(logits.shape)}")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must have shape ({logits.shape[0]},) to match logits "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")


def check_weight(weight: Tensor | None, num_classes: int | None = None) -> None:
    if weight is None:
        return
    if weight.dim() != 1 or (num_classes is not None and weight.shape[0] != num_classes):
        expected = f"({num_classes},)" if num_classes is not None else "(C,)"
        raise ValueError(
            f"weight must be a per-class tensor of shape {expected}, got {tuple(weight.shape)}"
        )


def as_weight(weight: Sequence[float] | Tensor | None) -> Tensor | None:
    """A per-class weight as a float32 tensor (or ``None``)."""
    if weight is None:
        return None
    w = torch.as_tensor(weight, dtype=torch.float32).detach().clone()
    check_weight(w)
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weight must be finite and >= 0, got {w.tolist()}")
    return w


def class_counts_tensor(class_counts: Sequence[int] | np.ndarray | Tensor) -> Tensor:
    """Training-set class sizes as a float64-exact float32 tensor; every count must be >= 1."""
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() < 2:
        raise ValueError(
            f"class_counts must list the training size of every class (at least 2), "
            f"got shape {tuple(counts.shape)}"
        )
    bad = [i for i, n in enumerate(counts.tolist()) if not (n >= 1 and math.isfinite(n))]
    if bad:
        raise ValueError(
            f"class_counts must be >= 1 for every class; class(es) {bad} have "
            f"{[counts[i].item() for i in bad]} (drop empty classes or merge them)"
        )
    return counts.to(torch.float32)


def log_probs(logits: Tensor) -> Tensor:
    """``log_softmax`` in at least float32 (fp16/bf16 logits are upcast)."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return F.log_softmax(logits.to(dtype), dim=1)


def target_log_prob(log_p: Tensor, target: Tensor) -> Tensor:
    """``log p_y`` for every sample: shape ``(B,)``."""
    return log_p.gather(1, target.long().unsqueeze(1)).squeeze(1)


def reduce(losses: Tensor, target: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """Apply the class weight ``w_y`` and reduce.

    ``"none"``: ``w_y · l_i`` per sample; ``"sum"``: their sum; ``"mean"``: the plain mean
    without ``weight`` and the *weighted* mean ``Σ w_y l_i / Σ w_y`` with it — the convention of
    ``torch.nn.functional.cross_entropy(weight=...)``.
    """
    if weight is not None:
        w = weight.to(device=losses.device, dtype=losses.dtype)[target.long()]
        losses = losses * w
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    if weight is None:
        return losses.mean()
    return losses.sum() / w.sum()
