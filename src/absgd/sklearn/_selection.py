"""Choosing λ in a scikit-learn search with a guard: ``GridSearchCV(refit=GuardedRefit(...))``.

The guarded rules of ``absgd tune --guard`` for a cross-validated search. The guard allows the
candidates whose cross-validated ``guard`` score (accuracy: the cost at the training prior) is
at most ``drop`` below that of a reference candidate (the plain setting, ``lam=math.inf`` or
``target_ess=1.0``): on the mean score, or, with ``confidence``, on a one-sided upper
confidence bound of the drop paired fold by fold. Among them it takes the best mean ``score``
(balanced accuracy), or with ``choose_last`` the last listed (the sharpest λ, on the cost
alone; ``not_worse`` adds the gain check). A bound on cross-validation's estimate, not on the
test set.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import t as student_t

from absgd.selection import TIE_TOLERANCE, check_confidence, check_drop

__all__ = ["GuardedRefit"]


class GuardedRefit:
    """The ``refit`` rule of a scikit-learn search that picks, among the candidates a guard
    allows, the best ``score`` or the last listed.

    Pass it as ``refit`` of :class:`~sklearn.model_selection.GridSearchCV` (or
    ``RandomizedSearchCV``) with a ``scoring`` dict that names both ``score`` and ``guard``.
    Writing ``S_k`` and ``G_k`` for candidate ``k``'s mean test ``score`` and ``guard`` over the
    ``F`` folds and ``r`` for the reference candidate, the guard allows (``r`` always)::

        A = {k : G_r − G_k ≤ drop}                                   (confidence=None)
        A = {k : D_k + t_{c,F−1} · s_k · √(1/F + ρ/(1−ρ)) ≤ drop}    (confidence=c)

    where ``d_kf = G_rf − G_kf`` is the drop on fold ``f``, ``D_k`` and ``s_k`` its mean and
    standard deviation over the folds, ``t_{c,F−1}`` Student's ``c`` quantile and
    ``ρ/(1−ρ)`` the ratio of a split's test size to its training size (``ρ = test_fraction``;
    ``1/F`` for k-fold). Folds share most of their training data, so their drops are correlated
    and the plain ``s_k/√F`` is too small: the factor ``1/F + ρ/(1−ρ)`` is the corrected
    resampled t-test's (Nadeau and Bengio, "Inference for the Generalization Error", Machine
    Learning 52, 2003), derived for random train/test splits and applied to (repeated) k-fold
    by Bouckaert and Frank ("Evaluating the Replicability of Significance Tests for Comparing
    Learning Algorithms", PAKDD 2004). At ``c = 0.5`` the bound is ``D_k = G_r − G_k``, the
    mean guard. A candidate with a failed fold is not allowed.

    It then chooses ``argmax_{k ∈ A} S_k`` (ties, within 1e-9, go to the reference, then to
    the first in ``cv_results_`` order), or with ``choose_last`` the last candidate of ``A`` in
    ``cv_results_`` order: list λ from the plain setting (the reference, first) to the
    sharpest and it takes the sharpest the guard allows, on the cost alone (the rule ``absgd
    tune --choose-last`` applies; docs/method.md §3). The order is the search's: a
    ``GridSearchCV`` over one parameter keeps its list, over a list of dicts the dicts in turn,
    over several parameters of one dict it runs through their product in sorted key order, and
    ``RandomizedSearchCV``'s order is random (do not use ``choose_last`` with it). With
    ``not_worse`` as well, only among the candidates of ``A`` whose ``S_k ≥ S_r``: the
    sharpest λ that does not lower the mean ``score``. Candidates without a score (failed fits
    with ``error_score=np.nan``) are never chosen. The search then has ``best_index_`` and
    ``best_estimator_`` but, as with any callable ``refit``, no ``best_score_``.

    Args:
        score: the scoring name to maximise (a key of the search's ``scoring`` dict).
        guard: the scoring name that bounds the choice.
        drop: how far below the reference's ``guard`` a candidate may fall, a fraction in
            ``[0, 1)`` (``0.01``: one point of accuracy).
        reference: the parameters of the reference candidate (e.g.
            ``{"lam": math.inf}``; in a pipeline ``{"absgdclassifier__lam": math.inf}``). It must
            match exactly one candidate on the keys it names. ``None``: the first candidate
            (list the plain setting first).
        confidence: ``None`` for the mean guard, or a one-sided level in ``[0.5, 1)`` (0.95)
            for the bound paired fold by fold; it needs at least two folds.
        choose_last: take the last allowed candidate instead of the best ``score``.
        not_worse: with ``choose_last``, only among the allowed candidates whose mean
            ``score`` is at least the reference's.
        test_fraction: ``ρ``, the fraction of the data each split tests on, in ``(0, 1)``;
            ``None``: ``1/F``, right for k-fold (for ``RepeatedStratifiedKFold(n_splits=k)``
            pass ``1/k``; for ``ShuffleSplit`` the fraction ``n_test/(n_test + n_train)``,
            which is its ``test_size`` as a fraction only where the train size is the rest).

    Example:
        >>> import math
        >>> rule = GuardedRefit("balanced_accuracy", "accuracy", 0.01, {"lam": math.inf})
        >>> results = {
        ...     "params": [{"lam": math.inf}, {"lam": 3.0}, {"lam": 1.0}],
        ...     "mean_test_balanced_accuracy": [0.60, 0.64, 0.70],
        ...     "mean_test_accuracy": [0.900, 0.895, 0.870],
        ... }
        >>> rule.allowed(results)  # λ = 1 gives up 3 points of accuracy
        [0, 1]
        >>> rule(results)
        1
        >>> folds = {  # three folds: λ = 3 drops 0.4, 0.5 and 0.6 points of accuracy
        ...     "split0_test_accuracy": [0.910, 0.906, 0.880],
        ...     "split1_test_accuracy": [0.890, 0.885, 0.862],
        ...     "split2_test_accuracy": [0.900, 0.894, 0.868],
        ... }
        >>> last = GuardedRefit(drop=0.01, confidence=0.95, choose_last=True)
        >>> last.upper_bounds({**results, **folds}).round(4).tolist()
        [0.0, 0.0077, 0.0353]
        >>> last({**results, **folds})  # the sharpest λ within a point at 95 %
        1

    Reference: Qi et al., "Attentional-Biased Stochastic Gradient Descent", TMLR 2023 (arXiv
    2012.06951) for λ; the guard is this package's selection rule (docs/method.md §3).
    """

    def __init__(
        self,
        score: str = "balanced_accuracy",
        guard: str = "accuracy",
        drop: float = 0.01,
        reference: Mapping[str, Any] | None = None,
        *,
        confidence: float | None = None,
        choose_last: bool = False,
        not_worse: bool = False,
        test_fraction: float | None = None,
    ) -> None:
        for name, value in (("score", score), ("guard", guard)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a scoring name (a string), got {value!r}")
        for name, flag in (("choose_last", choose_last), ("not_worse", not_worse)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        if not_worse and not choose_last:
            raise ValueError(
                "not_worse checks the gain of choose_last's choice (the best score is never "
                "below the reference's); pass choose_last=True as well"
            )
        if test_fraction is not None and (
            isinstance(test_fraction, bool)
            or not isinstance(test_fraction, numbers.Real)
            or not 0 < test_fraction < 1
        ):
            raise ValueError(
                "test_fraction must be the fraction of the data a split tests on, in (0, 1), "
                f"or None (k-fold: 1/F), got {test_fraction!r}"
            )
        if test_fraction is not None and confidence is None:
            raise ValueError("test_fraction enters the confident bound only; give confidence too")
        if reference is not None and not (isinstance(reference, Mapping) and reference):
            raise ValueError(
                "reference must be a non-empty dict of the reference candidate's parameters "
                f"or None (the first candidate), got {reference!r}"
            )
        self.score = score
        self.guard = guard
        self.drop = check_drop(drop, "drop")
        self.reference = None if reference is None else dict(reference)
        self.confidence = None if confidence is None else check_confidence(confidence, "confidence")
        self.choose_last = bool(choose_last)
        self.not_worse = bool(not_worse)
        self.test_fraction = None if test_fraction is None else float(test_fraction)

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}"
            for name, value, default in (
                ("confidence", self.confidence, None),
                ("choose_last", self.choose_last, False),
                ("not_worse", self.not_worse, False),
                ("test_fraction", self.test_fraction, None),
            )
            if value != default
        )
        return (
            f"GuardedRefit(score={self.score!r}, guard={self.guard!r}, drop={self.drop!r}, "
            f"reference={self.reference!r}{extra})"
        )

    def __call__(self, cv_results: Mapping[str, Any]) -> int:
        """The index of the chosen candidate in ``cv_results`` (the search's ``best_index_``)."""
        ref = self.reference_index(cv_results)
        scores = self._means(cv_results, self.score)
        allowed = self.allowed(cv_results)
        scored = [k for k in allowed if not math.isnan(scores[k])]
        if self.not_worse:
            if math.isnan(scores[ref]):
                raise ValueError(
                    f"not_worse compares with the reference candidate "
                    f"{cv_results['params'][ref]!r}, which has no mean test {self.score!r} "
                    "(its fits failed)"
                )
            scored = [k for k in scored if scores[k] >= scores[ref] - TIE_TOLERANCE]
        if not scored:
            raise ValueError(
                f"no candidate the guard allows has a mean test {self.score!r} (candidates "
                f"allowed: {allowed}); check the failed fits"
            )
        if self.choose_last:
            if ref != 0:
                raise ValueError(
                    f"choose_last takes the last allowed candidate in the search's order, from "
                    f"the plain setting to the sharpest, and the reference is candidate {ref} "
                    f"({cv_results['params'][ref]!r}); list the plain setting first"
                )
            return max(scored)
        top = max(scores[k] for k in scored)
        tied = [k for k in scored if scores[k] >= top - TIE_TOLERANCE]
        return ref if ref in tied else tied[0]

    def allowed(self, cv_results: Mapping[str, Any]) -> list[int]:
        """The candidates the guard allows (indices into ``cv_results``), the reference
        first."""
        ref = self.reference_index(cv_results)
        guards = self._means(cv_results, self.guard)
        if math.isnan(guards[ref]):
            raise ValueError(
                f"the reference candidate {cv_results['params'][ref]!r} has no mean test "
                f"{self.guard!r} (its fits failed), so the guard's bound is unknown"
            )
        if self.confidence is None:
            floor = guards[ref] - self.drop - TIE_TOLERANCE
            rest = [k for k in range(len(guards)) if k != ref and guards[k] >= floor]
            return [ref, *rest]
        bounds = self.upper_bounds(cv_results)
        rest = [
            k
            for k in range(len(guards))
            if k != ref and not math.isnan(bounds[k]) and bounds[k] <= self.drop + TIE_TOLERANCE
        ]
        return [ref, *rest]

    def upper_bounds(self, cv_results: Mapping[str, Any]) -> np.ndarray:
        """Each candidate's one-sided upper ``confidence`` bound on its ``guard`` drop below
        the reference, paired fold by fold (NaN where a fold has no score; 0 for the
        reference)."""
        if self.confidence is None:
            raise ValueError("upper_bounds needs a confidence level; this rule has none")
        folds = self._folds(cv_results, self.guard)  # (F, K)
        n = folds.shape[0]
        if n < 2:
            raise ValueError(
                f"a confident guard needs at least two folds to estimate the spread of the "
                f"drop, the search has {n}; use the mean guard (confidence=None) or more folds"
            )
        ref = self.reference_index(cv_results)
        if np.isnan(folds[:, ref]).any():
            raise ValueError(
                f"the reference candidate {cv_results['params'][ref]!r} has no {self.guard!r} "
                "on some fold (a failed fit), so the drops cannot be paired fold by fold"
            )
        drops = folds[:, [ref]] - folds  # d_kf = G_rf − G_kf
        rho = 1.0 / n if self.test_fraction is None else self.test_fraction
        scale = math.sqrt(1.0 / n + rho / (1.0 - rho))
        t = float(student_t.ppf(self.confidence, n - 1))
        bounds = drops.mean(axis=0) + t * drops.std(axis=0, ddof=1) * scale
        return np.where(np.isnan(drops).any(axis=0), np.nan, bounds)

    def reference_index(self, cv_results: Mapping[str, Any]) -> int:
        """The index of the reference candidate in ``cv_results``."""
        params: Sequence[Mapping[str, Any]] = cv_results.get("params", ())
        if not params:
            raise ValueError("cv_results has no candidates ('params' is missing or empty)")
        if self.reference is None:
            return 0
        ref = self.reference
        matches = [
            k
            for k, p in enumerate(params)
            if all(name in p and _same(p[name], v) for name, v in ref.items())
        ]
        if len(matches) != 1:
            found = "no candidate" if not matches else f"{len(matches)} candidates ({matches})"
            raise ValueError(
                f"reference={ref!r} must match exactly one candidate, matched {found}; "
                f"the candidates: {list(params)!r}"
            )
        return matches[0]

    @staticmethod
    def _means(cv_results: Mapping[str, Any], name: str) -> np.ndarray:
        key = f"mean_test_{name}"
        if key not in cv_results:
            names = sorted(k[len("mean_test_") :] for k in cv_results if k.startswith("mean_test_"))
            raise ValueError(
                f"the search has no scoring named {name!r} (it has {names}); pass a scoring "
                f"dict naming both, e.g. scoring={{{name!r}: {name!r}, ...}}"
            )
        return np.asarray(cv_results[key], dtype=float)

    @staticmethod
    def _folds(cv_results: Mapping[str, Any], name: str) -> np.ndarray:
        """The per-fold test scores ``split<f>_test_<name>``, one row per fold."""
        rows: list[np.ndarray] = []
        while f"split{len(rows)}_test_{name}" in cv_results:
            rows.append(np.asarray(cv_results[f"split{len(rows)}_test_{name}"], dtype=np.float64))
        if not rows:
            raise ValueError(
                f"a confident guard pairs the folds' {name!r} scores, and cv_results has no "
                f"'split0_test_{name}'; pass a scoring dict naming {name!r}"
            )
        return np.stack(rows)


def _same(a: Any, b: Any) -> bool:
    """Parameter values equal: by value (``math.inf`` included; arrays element by element),
    a bool only to a bool."""
    if isinstance(a, (bool, np.bool_)) != isinstance(b, (bool, np.bool_)):
        return False
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return a is b
