"""Choosing among candidates by their validation scores: the rules of ``absgd tune``, the
benchmark grids and :class:`absgd.sklearn.GuardedRefit`.

Each candidate (e.g. a value of λ, ``math.inf`` for plain SGD) has one score per trial (seed or
fold), ``None`` where a trial has none (it diverged). :func:`select_value` takes the best mean
score; :func:`within` is the *guard*: the candidates whose mean on a second score is at most a
stated drop below the first candidate's (list the plain setting first). Together they give the
guarded rule, e.g. the best validation balanced accuracy among the λs that give up at most one
point of validation top-1 against λ = ∞ (docs/method.md §3). Pure functions on numbers; the
test split never enters.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

__all__ = ["TIE_TOLERANCE", "check_drop", "mean_scores", "select_value", "within"]


TIE_TOLERANCE = 1e-9
"""Validation scores closer than this are equal for :func:`select_value`, and a score this
close below a guard's bound is within it (:func:`within`)."""


def mean_scores(scores: dict[float, list[float | None]]) -> dict[float, float | None]:
    """Each candidate's mean score, ``None`` if one of its trials has no score (diverged, or
    NaN)."""
    means: dict[float, float | None] = {}
    for value, values in scores.items():
        ok = [v for v in values if v is not None and not math.isnan(v)]
        means[value] = sum(ok) / len(ok) if ok and len(ok) == len(values) else None
    return means


def select_value(
    scores: dict[float, list[float | None]], among: Iterable[float] | None = None
) -> tuple[float | None, dict[float, float | None]]:
    """The candidate with the best mean validation score (ties: the first listed), and each
    candidate's mean (``None`` if one of its trials has no score, e.g. diverged). With
    ``among``, only those candidates may be chosen (e.g. :func:`within` a guard); every mean is
    still returned.

    Means within ``TIE_TOLERANCE`` of the best count as ties: equal accuracies summed in
    another order differ in the last bit (0.804 and 0.8039999999999999), and the rule must not
    depend on that."""
    means = mean_scores(scores)
    allowed = set(means) if among is None else set(among)
    scored = {v: m for v, m in means.items() if m is not None and v in allowed}
    if not scored:
        return None, means
    top = max(scored.values())
    best = next(v for v, m in scored.items() if m >= top - TIE_TOLERANCE)
    return best, means


def check_drop(drop: float, name: str = "a guard's drop") -> float:
    """``drop`` as a guard takes it (``-0.0`` read as ``0.0``), or a ``ValueError`` naming it."""
    if isinstance(drop, bool) or not (isinstance(drop, numbers.Real) and 0 <= drop < 1):
        raise ValueError(
            f"{name} must be a fraction in [0, 1) (0.01 is one point of accuracy), got {drop!r}"
        )
    return float(drop) + 0.0


def within(scores: dict[float, list[float | None]], drop: float) -> list[float]:
    """The candidates a guard allows: those whose mean score is at most ``drop`` below the mean
    of the first candidate listed, the reference (list the plain setting, e.g. λ = ∞, first),
    in listed order. The reference is always allowed when it has a score; with no score for
    it (diverged) the bound is unknown and no candidate is allowed.

    E.g. guard scores of validation top-1 and ``drop = 0.01``: the candidates that give up at
    most one point of validation top-1 against the reference.

    Raises:
        ValueError: ``drop`` not in [0, 1) (scores are fractions: a drop of 1 or more would
            allow every candidate, so it is taken for a slip of units).
    """
    check_drop(drop)
    means = mean_scores(scores)
    reference = means[next(iter(means))] if means else None
    if reference is None:
        return []
    floor = reference - drop - TIE_TOLERANCE
    return [v for v, m in means.items() if m is not None and m >= floor]
