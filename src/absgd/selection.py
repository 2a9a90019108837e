"""Choosing among candidates by their validation scores: the rules of ``absgd tune``, the
benchmark grids and :class:`absgd.sklearn.GuardedRefit`.

Each candidate (e.g. a value of λ, ``math.inf`` for plain SGD) has one score per trial (seed or
fold), ``None`` where a trial has none (it diverged). :func:`select_value` takes the best mean
score; :func:`within` is the *guard*: the candidates whose mean on a second score is at most a
stated drop below the first candidate's (list the plain setting first). Together they give the
guarded rule, e.g. the best validation balanced accuracy among the λs that give up at most one
point of validation top-1 against λ = ∞ (docs/method.md §3).

A mean score does not say how sure validation is of a drop: on a split of a thousand images a
third of a point is within its noise. :func:`paired_drop` measures a candidate's drop against the
reference on the same validation images, with its standard error, and :func:`within_bound` is
the *confident* guard: the candidates whose one-sided upper confidence bound on the drop is at
most the stated drop. :func:`last_allowed` takes the sharpest candidate a guard allows, on the
cost alone; :func:`not_below_first` is a gain check that can come before it (the candidates
whose mean score, e.g. balanced accuracy, is at least the first's). Pure functions on numbers
and label arrays; the test split never enters.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "TIE_TOLERANCE",
    "PairedDrop",
    "check_confidence",
    "check_drop",
    "combine_drops",
    "last_allowed",
    "mean_scores",
    "not_below_first",
    "paired_drop",
    "select_value",
    "within",
    "within_bound",
]


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


def last_allowed(
    scores: dict[float, list[float | None]], among: Iterable[float], *, not_worse: bool = False
) -> float | None:
    """The last listed candidate among ``among`` (a guard's allowed values) whose trials all
    have a score (none diverged), or ``None``: with the candidates listed from the plainest to
    the sharpest (``inf, 1000, 300``), the sharpest one the guard allows, chosen without a gain
    score. Where validation measures the cost well and the gain poorly (a rare class with a few
    validation images), this rule rests on the cost alone. With ``not_worse``, only among those
    whose mean score is at least the first candidate's (:func:`not_below_first`)."""
    if not_worse:
        among = not_below_first(scores, among)
    allowed = set(among)
    means = mean_scores(scores)
    ok = [v for v, m in means.items() if v in allowed and m is not None]
    return ok[-1] if ok else None


def not_below_first(scores: dict[float, list[float | None]], among: Iterable[float]) -> list[float]:
    """The candidates of ``among`` whose mean score is at least the first listed candidate's
    (within ``TIE_TOLERANCE``), in the listed order; empty if the first has no mean (a trial
    without a score). Before :func:`last_allowed` it is a gain check on a rule that otherwise
    rests on the cost alone: with ``scores`` the validation balanced accuracy and ``among`` a
    guard's allowed values, the sharpest λ within the guard that does not score below λ = ∞
    (the first candidate itself always qualifies). Where a sharper λ buys no tail accuracy
    this keeps the rule from paying for nothing (results.md §7, parts (s) and (t))."""
    means = mean_scores(scores)
    ref = means[next(iter(scores))] if scores else None
    if ref is None:
        return []
    allowed = set(among)
    return [
        v for v, m in means.items() if v in allowed and m is not None and m >= ref - TIE_TOLERANCE
    ]


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


def check_confidence(confidence: float, name: str = "a guard's confidence") -> float:
    """``confidence`` as a confident guard takes it, or a ``ValueError`` naming it: a one-sided
    level in [0.5, 1) (0.95 puts the bound 1.645 standard errors above the drop; 0.5 is the
    drop itself, the mean-score guard)."""
    if isinstance(confidence, bool) or not (
        isinstance(confidence, numbers.Real) and 0.5 <= confidence < 1
    ):
        raise ValueError(f"{name} must be a level in [0.5, 1) such as 0.95, got {confidence!r}")
    return float(confidence)


@dataclass(frozen=True)
class PairedDrop:
    """How far a candidate's validation score lies below the reference's, measured on the same
    images: ``drop`` (a fraction; negative where the candidate scores higher), its standard
    error ``se`` over the validation sample, and the ``images`` it rests on."""

    drop: float
    se: float
    images: int

    def upper(self, confidence: float = 0.95) -> float:
        """The one-sided upper confidence bound ``drop + z·se`` (normal approximation, ``z``
        the ``confidence`` quantile: 1.645 at 0.95)."""
        z = NormalDist().inv_cdf(check_confidence(confidence))
        return self.drop + z * self.se


def _labels(values: ArrayLike, name: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim not in ndim or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        shape = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(
            f"{name} must be a {shape} array of class indices, got {arr.dtype} {arr.shape}"
        )
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must hold class indices ≥ 0, got {int(arr.min())}")
    return arr.astype(np.int64)


def paired_drop(
    labels: ArrayLike,
    reference: ArrayLike,
    candidate: ArrayLike,
    class_weights: ArrayLike | None = None,
) -> PairedDrop:
    """The drop of ``candidate``'s accuracy below ``reference``'s on the same images (true
    ``labels``; the two models' predicted classes), with the standard error of the validation
    sample.

    Per image ``d_i = [reference right] − [candidate right]``; with several pairs of models scored
    on the same images (``reference`` and ``candidate`` of shape ``(T, N)``, e.g. one row per
    training seed, row ``t`` of each paired), ``d_i`` is the mean over the ``T`` pairs, so the error
    counts each image once (pairs scored on separate splits: :func:`combine_drops`). A score that
    weighs class ``c``'s accuracy by ``q_c`` (``class_weights`` renormalised over the classes with
    images: ``None`` for top-1, the split's own class counts; all ones for balanced accuracy; the
    training counts for top-1 at the training prior) drops by ``D = Σ_c q_c·mean_c(d)``, with the
    stratified standard error ``√(Σ_c q_c²·s_c²/n_c)``, ``s_c²`` the sample variance of ``d`` over
    class ``c``'s ``n_c`` images (1, the largest a difference of two right/wrong indicators can
    have, for a class with one image). The error is that of the validation sample given the two
    trained models, not of training them again. A small class whose few images all differ the same
    way (``d = (1, 1, 1)``) has ``s_c² = 0`` and adds nothing to the error; under balanced accuracy,
    where such a class weighs as much as the largest, the bound is then optimistic.

    Raises:
        ValueError: arrays of different lengths or shapes or not class indices, no image, or
            ``class_weights`` shorter than the classes present, negative or all zero on them.
    """
    y = _labels(labels, "labels")
    ref = np.atleast_2d(_labels(reference, "reference", (1, 2)))
    cand = np.atleast_2d(_labels(candidate, "candidate", (1, 2)))
    if not (len(y) == ref.shape[1] == cand.shape[1]) or ref.shape != cand.shape:
        raise ValueError(
            f"labels, reference and candidate must have one entry per image (and the two the "
            f"same shape), got {y.shape}, {ref.shape}, {cand.shape}"
        )
    if len(y) == 0:
        raise ValueError("paired_drop needs at least one image, got none")
    counts = np.bincount(y)
    present = np.flatnonzero(counts)
    if class_weights is None:
        q = counts.astype(np.float64)
    else:
        w = np.asarray(class_weights, dtype=np.float64)
        if w.ndim != 1 or len(w) <= present[-1]:
            raise ValueError(
                f"class_weights must give a weight to each of the {present[-1] + 1} classes, "
                f"got shape {w.shape}"
            )
        q = np.zeros(len(counts))
        q[present] = w[present]
        if not np.all(np.isfinite(q)) or np.any(q < 0) or q.sum() <= 0:
            raise ValueError(
                "class_weights must be finite, ≥ 0 and not all zero on the classes with "
                f"images, got {w.tolist()[:10]}"
            )
    q = q / q.sum()
    d = ((ref == y).astype(np.float64) - (cand == y).astype(np.float64)).mean(axis=0)
    drop = 0.0
    var = 0.0
    for c in present:
        dc = d[y == c]
        n_c = len(dc)
        drop += q[c] * dc.mean()
        s2 = float(dc.var(ddof=1)) if n_c > 1 else 1.0
        var += q[c] ** 2 * s2 / n_c
    return PairedDrop(float(drop), math.sqrt(var), len(y))


def combine_drops(drops: Sequence[PairedDrop]) -> PairedDrop:
    """The mean drop over trials scored on separate validation samples (independent splits), as
    :func:`mean_scores` averages their scores: standard error ``√(Σ se_t²)/T``. Trials scored on
    the same images are not independent: pair them in one :func:`paired_drop` instead.

    Raises:
        ValueError: no trial.
    """
    if not drops:
        raise ValueError("combine_drops needs at least one trial, got none")
    t = len(drops)
    return PairedDrop(
        sum(d.drop for d in drops) / t,
        math.sqrt(sum(d.se**2 for d in drops)) / t,
        sum(d.images for d in drops),
    )


def within_bound(
    drops: dict[float, list[PairedDrop | None]], drop: float, confidence: float = 0.95
) -> list[float]:
    """The candidates a *confident* guard allows: the first listed (the reference, e.g. λ = ∞;
    its own entry is ignored) and those whose upper ``confidence`` bound on the drop below it
    (:func:`combine_drops` of their trials' :func:`paired_drop`) is at most ``drop``, in listed
    order. A candidate with a missing trial (``None``: diverged) is not allowed.

    E.g. ``drop = 0.01``, ``confidence = 0.95``: the candidates that validation puts within one
    point of the reference's top-1 with 95 % confidence; on a thousand images a candidate that
    disagrees with the reference on a few per cent of them needs a measured drop well under the
    point.

    Raises:
        ValueError: ``drop`` not in [0, 1) or ``confidence`` not in [0.5, 1).
    """
    check_drop(drop)
    check_confidence(confidence)
    values = list(drops)
    if not values:
        return []
    allowed = [values[0]]
    for value in values[1:]:
        trials = drops[value]
        if not trials or any(t is None for t in trials):
            continue
        bound = combine_drops([t for t in trials if t is not None]).upper(confidence)
        if bound <= drop + TIE_TOLERANCE:
            allowed.append(value)
    return allowed
