"""Choosing λ in a scikit-learn search with a guard: ``GridSearchCV(refit=GuardedRefit(...))``.

The guarded rule (the one ``absgd tune --guard`` applies to training runs): among the
candidates whose mean cross-validated ``guard`` score is at most ``drop`` below that of a
reference candidate (the plain setting, ``lam=math.inf`` or ``target_ess=1.0``), take the one
with the best mean ``score``. With ``score="balanced_accuracy"``, ``guard="accuracy"`` and
``drop=0.01`` it buys the minority classes' accuracy with at most one point of accuracy at the
training prior, as cross-validation estimates it: a bound on the estimate, not on the test set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from absgd.selection import TIE_TOLERANCE, check_drop

__all__ = ["GuardedRefit"]


class GuardedRefit:
    """The ``refit`` rule of a scikit-learn search that picks the best ``score`` among the
    candidates a guard allows.

    Pass it as ``refit`` of :class:`~sklearn.model_selection.GridSearchCV` (or
    ``RandomizedSearchCV``) with a ``scoring`` dict that names both ``score`` and ``guard``.
    Writing ``S_k`` and ``G_k`` for candidate ``k``'s mean test ``score`` and ``guard`` over the
    folds and ``r`` for the reference candidate, it chooses::

        argmax_k S_k   over   {k : G_k ≥ G_r − drop}        (r always qualifies)

    Ties (within 1e-9) go to the reference, then to the first candidate in ``cv_results_``
    order. Candidates without a score (failed fits with ``error_score=np.nan``) are never
    chosen. The search then has ``best_index_`` and ``best_estimator_`` but, as with any
    callable ``refit``, no ``best_score_``.

    Args:
        score: the scoring name to maximise (a key of the search's ``scoring`` dict).
        guard: the scoring name that bounds the choice.
        drop: how far below the reference's ``guard`` a candidate may fall, a fraction in
            ``[0, 1)`` (``0.01``: one point of accuracy).
        reference: the parameters of the reference candidate (e.g.
            ``{"lam": math.inf}``; in a pipeline ``{"absgdclassifier__lam": math.inf}``). It must
            match exactly one candidate on the keys it names. ``None``: the first candidate
            (list the plain setting first).

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

    Reference: Qi et al., "Attentional-Biased Stochastic Gradient Descent", TMLR 2023 (arXiv
    2012.06951) for λ; the guard is this package's selection rule (docs/method.md §3).
    """

    def __init__(
        self,
        score: str = "balanced_accuracy",
        guard: str = "accuracy",
        drop: float = 0.01,
        reference: Mapping[str, Any] | None = None,
    ) -> None:
        for name, value in (("score", score), ("guard", guard)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a scoring name (a string), got {value!r}")
        if reference is not None and not (isinstance(reference, Mapping) and reference):
            raise ValueError(
                "reference must be a non-empty dict of the reference candidate's parameters "
                f"or None (the first candidate), got {reference!r}"
            )
        self.score = score
        self.guard = guard
        self.drop = check_drop(drop, "drop")
        self.reference = None if reference is None else dict(reference)

    def __repr__(self) -> str:
        return (
            f"GuardedRefit(score={self.score!r}, guard={self.guard!r}, drop={self.drop!r}, "
            f"reference={self.reference!r})"
        )

    def __call__(self, cv_results: Mapping[str, Any]) -> int:
        """The index of the chosen candidate in ``cv_results`` (the search's ``best_index_``)."""
        ref = self.reference_index(cv_results)
        scores = self._means(cv_results, self.score)
        allowed = self.allowed(cv_results)
        scored = [k for k in allowed if not math.isnan(scores[k])]
        if not scored:
            raise ValueError(
                f"no candidate the guard allows has a mean test {self.score!r} (candidates "
                f"allowed: {allowed}); check the failed fits"
            )
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
        floor = guards[ref] - self.drop - TIE_TOLERANCE
        rest = [k for k in range(len(guards)) if k != ref and guards[k] >= floor]
        return [ref, *rest]

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
