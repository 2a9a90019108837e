r"""Class-level weights and their schedules (class-balanced, inverse frequency, DRW).

Weights are normalised to sum to the number of classes ``C`` (uniform weights are all 1):

- effective number (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
  CVPR 2019): ``w_c ∝ (1 - β) / (1 - β^{n_c})``; β = 0 is uniform, β → 1 inverse frequency;
- inverse frequency ``w_c ∝ n_c^{-1}`` and inverse square root ``w_c ∝ n_c^{-1/2}``.

A *class-weight schedule* is a function of the epoch returning the weights to use, or ``None``
for none. :class:`StaticWeights` uses one vector throughout; :class:`DRW` — deferred
re-weighting (Cao et al., NeurIPS 2019) — uses none until ``switch`` and the class-balanced
weights from ``t = switch`` on (0-based, like :mod:`absgd.schedules`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from absgd.losses._common import class_counts_tensor
from absgd.registry import Registry

__all__ = [
    "CLASS_WEIGHTINGS",
    "DRW",
    "ClassWeightSchedule",
    "StaticWeights",
    "build_class_weighting",
    "effective_number_weights",
    "inverse_frequency_weights",
]

Counts = Sequence[int] | np.ndarray | Tensor
ClassWeightSchedule = Callable[[float], Tensor | None]


def _normalise(raw: Tensor) -> Tensor:
    return (raw * (raw.numel() / raw.sum())).to(torch.float32)


def effective_number_weights(class_counts: Counts, beta: float = 0.9999) -> Tensor:
    r"""Class-balanced weights ``w_c ∝ (1-β)/(1-β^{n_c})``, normalised to sum to ``C``.

    >>> effective_number_weights([3, 1], beta=0.9)  # 0.1/0.271 and 0.1/0.1, scaled to sum 2
    tensor([0.5391, 1.4609])
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    counts = class_counts_tensor(class_counts).double()
    if beta == 0.0:
        return _normalise(torch.ones_like(counts))
    effective = -torch.expm1(counts * math.log(beta)) / (1.0 - beta)  # (1 - β^n) / (1 - β)
    return _normalise(1.0 / effective)


def inverse_frequency_weights(class_counts: Counts, power: float = 1.0) -> Tensor:
    r"""``w_c ∝ n_c^{-power}`` normalised to sum to ``C`` (power 0.5: inverse square root).

    >>> inverse_frequency_weights([4, 1], power=0.5)
    tensor([0.6667, 1.3333])
    """
    if not (power >= 0.0 and math.isfinite(power)):
        raise ValueError(f"power must be a finite number >= 0, got {power!r}")
    counts = class_counts_tensor(class_counts).double()
    return _normalise(counts.pow(-power))


def _as_tuple(weights: Sequence[float] | Tensor) -> tuple[float, ...]:
    values = tuple(float(w) for w in torch.as_tensor(weights).flatten().tolist())
    if not values or any(not (w >= 0 and math.isfinite(w)) for w in values):
        raise ValueError(f"class weights must be finite numbers >= 0, got {values}")
    return values


@dataclass(frozen=True)
class StaticWeights:
    """The same class weights at every epoch."""

    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _as_tuple(self.weights))

    def __call__(self, t: float) -> Tensor:
        return torch.tensor(self.weights, dtype=torch.float32)


@dataclass(frozen=True)
class DRW:
    """Deferred re-weighting: no class weights before ``switch``, ``weights`` from it on.

    >>> drw = DRW(weights=(0.5, 1.5), switch=160)
    >>> drw(159) is None, drw(160).tolist()
    (True, [0.5, 1.5])
    """

    weights: tuple[float, ...]
    switch: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _as_tuple(self.weights))
        if not (self.switch >= 0 and math.isfinite(self.switch)):
            raise ValueError(f"switch must be a finite number >= 0, got {self.switch!r}")

    def __call__(self, t: float) -> Tensor | None:
        if t < self.switch:
            return None
        return torch.tensor(self.weights, dtype=torch.float32)


CLASS_WEIGHTINGS: Registry = Registry("class weighting")


@CLASS_WEIGHTINGS.register("none")
def _none(*, class_counts: Counts | None = None) -> None:
    return None


@CLASS_WEIGHTINGS.register("class_balanced")
def _class_balanced(*, class_counts: Counts, beta: float = 0.9999) -> StaticWeights:
    return StaticWeights(tuple(effective_number_weights(class_counts, beta).tolist()))


@CLASS_WEIGHTINGS.register("drw")
def _drw(*, class_counts: Counts, switch: float, beta: float = 0.9999) -> DRW:
    return DRW(tuple(effective_number_weights(class_counts, beta).tolist()), switch)


@CLASS_WEIGHTINGS.register("inverse")
def _inverse(*, class_counts: Counts) -> StaticWeights:
    return StaticWeights(tuple(inverse_frequency_weights(class_counts, 1.0).tolist()))


@CLASS_WEIGHTINGS.register("inverse_sqrt")
def _inverse_sqrt(*, class_counts: Counts) -> StaticWeights:
    return StaticWeights(tuple(inverse_frequency_weights(class_counts, 0.5).tolist()))


def build_class_weighting(
    name: str, *, class_counts: Counts | None = None, **options: float
) -> ClassWeightSchedule | None:
    """The class-weight schedule registered as ``name`` (``None`` for ``"none"``).

    ``drw`` needs ``switch=`` (the epoch from which the weights apply, e.g. 160 of 200).

    >>> build_class_weighting("drw", class_counts=[100, 10], switch=3, beta=0.0)(5)
    tensor([1., 1.])
    """
    CLASS_WEIGHTINGS.get(name)
    if name != "none" and class_counts is None:
        raise ValueError(
            f"class weighting {name!r} needs class_counts (the training size of each class)"
        )
    if name == "drw" and "switch" not in options:
        raise ValueError("class weighting 'drw' needs switch= (the epoch the weights start at)")
    return CLASS_WEIGHTINGS.build(name, class_counts=class_counts, **options)
