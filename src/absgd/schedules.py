r"""Schedules: plain functions of a step or epoch counter ``t`` that the training loop owns.

Every schedule is a small frozen dataclass with ``__call__(t) -> float``, so it can be
printed, compared, pickled and stored in a config. The unit of ``t`` (epoch or step) is the
caller's choice; boundaries are in the same unit and are 0-based: a value that changes "at
160" applies from ``t = 160`` on, i.e. from the 161st epoch when ``t`` counts epochs.

λ schedules (for :class:`absgd.ABWeighting`; set ``weighting.lam = schedule(t)``):

* :class:`Constant` — one λ throughout.
* :class:`Piecewise` and :func:`two_stage` — "step damping": plain SGD (λ = ∞) to learn
  features, then a finite λ; optionally several steps. The ABSGD paper switches at the first
  LR decay (epoch 160 of 200 on CIFAR-LT), together with deferred class re-weighting.
* :class:`Anneal` — linear or cosine interpolation between two λ values.

Learning-rate multipliers (for ``torch.optim.lr_scheduler.LambdaLR``):

* :class:`WarmupStepLR` — linear warm-up then step decay: the CIFAR-LT protocol of Cao et al.
  (2019, LDAM-DRW) is ``WarmupStepLR(warmup=5, milestones=(160, 180), factors=(0.01, 1e-4))``.
* :class:`WarmupCosineLR` — linear warm-up then cosine decay.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from absgd.weighting import validate_lam

__all__ = [
    "Anneal",
    "Constant",
    "Piecewise",
    "Schedule",
    "WarmupCosineLR",
    "WarmupStepLR",
    "two_stage",
]

Schedule = Callable[[float], float]


def _check_t(t: float) -> float:
    value = float(t)
    if math.isnan(value) or value < 0:
        raise ValueError(f"schedule counter t must be a number >= 0, got {t!r}")
    return value


def _check_increasing(name: str, values: Sequence[float]) -> None:
    for a, b in itertools.pairwise(values):
        if not a < b:
            raise ValueError(f"{name} must be strictly increasing, got {tuple(values)}")
    if values and values[0] < 0:
        raise ValueError(f"{name} must be >= 0, got {tuple(values)}")


@dataclass(frozen=True)
class Constant:
    """The same λ for every ``t``.

    >>> Constant(2.0)(0), Constant(2.0)(1000)
    (2.0, 2.0)
    """

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", validate_lam(self.value))

    def __call__(self, t: float) -> float:
        _check_t(t)
        return self.value


@dataclass(frozen=True)
class Piecewise:
    """Piecewise-constant λ: ``values[k]`` for ``boundaries[k-1] <= t < boundaries[k]``.

    ``len(values) == len(boundaries) + 1``. Values may be ``math.inf`` (plain SGD).

    >>> s = Piecewise(boundaries=(160, 180), values=(math.inf, 5.0, 1.0))
    >>> s(159), s(160), s(179), s(180)
    (inf, 5.0, 5.0, 1.0)
    """

    boundaries: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        boundaries = tuple(float(b) for b in self.boundaries)
        values = tuple(validate_lam(v) for v in self.values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"Piecewise needs len(values) == len(boundaries) + 1, got {len(values)} "
                f"values for {len(boundaries)} boundaries"
            )
        _check_increasing("boundaries", boundaries)
        object.__setattr__(self, "boundaries", boundaries)
        object.__setattr__(self, "values", values)

    def __call__(self, t: float) -> float:
        t = _check_t(t)
        k = sum(1 for b in self.boundaries if t >= b)
        return self.values[k]


def two_stage(lam: float, switch: float) -> Piecewise:
    """Plain SGD (λ = ∞) before ``switch``, then ``lam`` from ``t = switch`` on.

    >>> s = two_stage(5.0, switch=160)
    >>> s(0), s(159), s(160)
    (inf, inf, 5.0)
    """
    return Piecewise(boundaries=(switch,), values=(math.inf, lam))


@dataclass(frozen=True)
class Anneal:
    """λ moves from ``start`` to ``end`` between ``t = begin`` and ``t = stop``.

    Constant ``start`` before ``begin`` and ``end`` from ``stop`` on. ``kind`` is
    ``"linear"`` or ``"cosine"`` (half cosine, slow at both ends). With ``space="lam"`` λ
    itself is interpolated (both ends finite, same sign, so λ never crosses 0); with
    ``space="inverse"`` the inverse temperature ``1/λ`` is, which allows an end at
    ``math.inf`` (a smooth start from plain SGD) and ends of opposite sign.

    >>> s = Anneal(start=10.0, end=2.0, begin=0, stop=100)
    >>> s(0), s(50), s(100), s(200)
    (10.0, 6.0, 2.0, 2.0)
    >>> Anneal(start=math.inf, end=2.0, begin=0, stop=10, space="inverse")(5)
    4.0
    """

    start: float
    end: float
    begin: float
    stop: float
    kind: Literal["linear", "cosine"] = "linear"
    space: Literal["lam", "inverse"] = "lam"

    def __post_init__(self) -> None:
        start, end = validate_lam(self.start), validate_lam(self.end)
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        if self.kind not in ("linear", "cosine"):
            raise ValueError(f"kind must be 'linear' or 'cosine', got {self.kind!r}")
        if self.space not in ("lam", "inverse"):
            raise ValueError(f"space must be 'lam' or 'inverse', got {self.space!r}")
        if not (0 <= self.begin < self.stop):
            raise ValueError(
                f"need 0 <= begin < stop, got begin={self.begin!r}, stop={self.stop!r}"
            )
        if self.space == "lam" and (
            math.isinf(start) or math.isinf(end) or (start > 0) != (end > 0)
        ):
            raise ValueError(
                f"space='lam' interpolates λ itself, so start={start} and end={end} must be "
                "finite and of the same sign; use space='inverse' to anneal from math.inf or "
                "across signs"
            )

    def __call__(self, t: float) -> float:
        t = _check_t(t)
        frac = min(max((t - self.begin) / (self.stop - self.begin), 0.0), 1.0)
        if self.kind == "cosine":
            frac = 0.5 * (1.0 - math.cos(math.pi * frac))
        if frac >= 1.0:
            return self.end
        if self.space == "lam":
            return self.start + frac * (self.end - self.start)
        beta = (1.0 - frac) / self.start + frac / self.end  # 1/inf == 0.0
        return math.inf if beta == 0.0 else 1.0 / beta


@dataclass(frozen=True)
class WarmupStepLR:
    """Learning-rate multiplier: linear warm-up, then step decay.

    ``(t + 1) / warmup`` for ``t < warmup``; afterwards the product of ``factors[k]`` over
    the milestones already reached (``t >= milestones[k]``; factors are *absolute*
    multipliers of the base LR, not cumulative). Use it with
    ``torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupStepLR(...))`` stepped once per
    unit of ``t``.

    The CIFAR-LT protocol (Cao et al. 2019; 200 epochs, base LR 0.1):

    >>> s = WarmupStepLR(warmup=5, milestones=(160, 180), factors=(0.01, 0.0001))
    >>> [s(t) for t in (0, 4, 5, 159, 160, 179, 180)]
    [0.2, 1.0, 1.0, 1.0, 0.01, 0.01, 0.0001]
    """

    warmup: float = 0
    milestones: tuple[float, ...] = ()
    factors: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        milestones = tuple(float(m) for m in self.milestones)
        factors = tuple(float(f) for f in self.factors)
        if len(milestones) != len(factors):
            raise ValueError(
                f"need one factor per milestone, got {len(milestones)} milestones and "
                f"{len(factors)} factors"
            )
        _check_increasing("milestones", milestones)
        if any(not (f >= 0 and math.isfinite(f)) for f in factors):
            raise ValueError(f"factors must be finite numbers >= 0, got {factors}")
        if not (self.warmup >= 0):
            raise ValueError(f"warmup must be >= 0, got {self.warmup!r}")
        object.__setattr__(self, "milestones", milestones)
        object.__setattr__(self, "factors", factors)

    def __call__(self, t: float) -> float:
        t = _check_t(t)
        factor = 1.0
        for milestone, value in zip(self.milestones, self.factors, strict=True):
            if t >= milestone:
                factor = value
        if t < self.warmup:
            factor *= (t + 1.0) / self.warmup
        return factor


@dataclass(frozen=True)
class WarmupCosineLR:
    """Learning-rate multiplier: linear warm-up, then half-cosine decay to ``final``.

    ``(t + 1) / warmup`` for ``t < warmup``, then
    ``final + (1 - final) · (1 + cos(π · (t - warmup) / (total - warmup))) / 2`` until
    ``total``, ``final`` afterwards.

    >>> s = WarmupCosineLR(total=100)
    >>> s(0), s(50), s(100)
    (1.0, 0.5, 0.0)
    """

    total: float
    warmup: float = 0
    final: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.warmup < self.total):
            raise ValueError(
                f"need 0 <= warmup < total, got warmup={self.warmup!r}, total={self.total!r}"
            )
        if not (0.0 <= self.final <= 1.0):
            raise ValueError(f"final must be in [0, 1], got {self.final!r}")

    def __call__(self, t: float) -> float:
        t = _check_t(t)
        if t < self.warmup:
            return (t + 1.0) / self.warmup
        frac = min((t - self.warmup) / (self.total - self.warmup), 1.0)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * frac))
