r"""Classification metrics for long-tailed and noisy-label evaluation, as pure functions.

Inputs are numpy arrays, torch tensors (any device; copied to the host) or sequences. Labels and
predictions are class indices in ``[0, C)``; logits (or any scores) are ``(N, C)``. Results are
Python floats and numpy arrays; :func:`evaluate` returns a JSON-serialisable dict.

With ``M`` the confusion matrix (``M[i, j]`` = samples of true class ``i`` predicted as ``j``),
``t_i = Σ_j M[i, j]`` the true count and ``q_i = Σ_j M[j, i]`` the predicted count of class i:

- per-class accuracy (recall) ``r_i = M[i, i] / t_i``; NaN for a class with ``t_i = 0``,
- balanced accuracy ``= mean of r_i over the classes with t_i > 0`` (sklearn's
  ``balanced_accuracy_score``),
- per-class F1 ``= 2 M[i, i] / (t_i + q_i)`` (``= 2PR / (P + R)``); a class with true or
  predicted samples but no correct ones has F1 0 (the "0/0 → 0" convention for an undefined
  precision or recall, sklearn's ``zero_division=0``); macro-F1 is the mean over the classes
  that occur in ``y_true`` or ``y_pred`` (sklearn's ``f1_score(average="macro")``),
- accuracy at a prior ``π`` ``= Σ_i π_i r_i / Σ_i π_i`` over the classes with ``t_i > 0``: the
  accuracy expected on data whose classes occur in proportions ``π`` (with ``π`` the training
  counts, top-1 on data as skewed as the training set, estimated from any evaluation split,
  balanced or not; balanced accuracy is the uniform prior),
- many / medium / few-shot accuracy (Liu et al., "Large-Scale Long-Tailed Recognition in an
  Open World", CVPR 2019): mean per-class accuracy over the classes with more than ``many``
  (100) training images, between ``few`` and ``many`` inclusive, and fewer than ``few`` (20).

Top-k: a sample is correct if fewer than ``k`` classes rank above its true class, ranking by
score and breaking ties towards the lower class index (the ``argmax`` rule), so top-1 equals the
accuracy of ``argmax`` predictions exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from absgd.metrics._checks import (
    ArrayLike,
    check_num_classes,
    class_counts,
    labels,
    nan_to_none,
    same_length,
    scores,
    to_numpy,
)

__all__ = [
    "balanced_accuracy",
    "confusion_matrix",
    "evaluate",
    "macro_f1",
    "per_class_accuracy",
    "prior_accuracy",
    "prior_effective_size",
    "shot_accuracy",
    "to_jsonable",
    "top_k_accuracy",
]


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """``int64 (C, C)`` matrix: entry ``[i, j]`` counts samples of class ``i`` predicted ``j``
    (rows true, columns predicted, as in scikit-learn).

    >>> confusion_matrix([0, 0, 1, 2], [0, 1, 1, 1], 3)
    array([[1, 1, 0],
           [0, 1, 0],
           [0, 1, 0]])
    """
    c = check_num_classes(num_classes)
    t = labels(y_true, "y_true", c)
    p = labels(y_pred, "y_pred", c)
    same_length(t, p, "y_true", "y_pred")
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


_TOPK_CHUNK = 2**22  # score entries compared at once by _topk_correct


def _topk_correct(s: np.ndarray, y: np.ndarray, k: int) -> int:
    """Samples whose true class ranks below ``k``; rank = classes scoring higher, plus tied
    classes with a lower index. Rows are processed in chunks to bound the memory."""
    c = s.shape[1]
    step = max(1, _TOPK_CHUNK // c)
    correct = 0
    for start in range(0, len(y), step):
        block, t = s[start : start + step], y[start : start + step]
        true_score = block[np.arange(len(t)), t][:, None]
        ties_before = (block == true_score) & (np.arange(c) < t[:, None])
        rank = (block > true_score).sum(1) + ties_before.sum(1)
        correct += int((rank < k).sum())
    return correct


def top_k_accuracy(logits: ArrayLike, y: ArrayLike, k: int = 1) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores (ties broken
    towards the lower class index, like ``argmax``). ``1 <= k <= C``.

    >>> logits = [[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]]
    >>> top_k_accuracy(logits, [2, 0, 0], k=1), top_k_accuracy(logits, [2, 0, 0], k=2)
    (0.3333333333333333, 1.0)
    """
    s = scores(logits)
    n, c = s.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= c:
        raise ValueError(f"k must be an integer in [1, {c}] (the number of classes), got {k!r}")
    t = labels(y, "y", c)
    same_length(s, t, "logits", "y")
    if n == 0:
        raise ValueError("top_k_accuracy needs at least one sample, got none")
    return _topk_correct(s, t, int(k)) / n


def class_totals(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class ``(correct, true, predicted)`` counts of validated labels, each ``int64 (C,)``
    (the diagonal, row sums and column sums of the confusion matrix, in ``O(N + C)``)."""
    correct = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    true = np.bincount(y_true, minlength=num_classes)
    pred = np.bincount(y_pred, minlength=num_classes)
    return correct.astype(np.int64), true.astype(np.int64), pred.astype(np.int64)


def _checked_totals(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int):
    c = check_num_classes(num_classes)
    t = labels(y_true, "y_true", c)
    p = labels(y_pred, "y_pred", c)
    same_length(t, p, "y_true", "y_pred")
    return class_totals(t, p, c)


def _recall(correct: np.ndarray, true: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(true > 0, correct / true, np.nan)


def _macro_f1(correct: np.ndarray, true: np.ndarray, pred: np.ndarray) -> float:
    support = true + pred
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(2.0 * correct[present] / support[present]))


def per_class_accuracy(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """``float64 (C,)`` recall of every class; NaN for a class absent from ``y_true``.

    >>> per_class_accuracy([0, 0, 1, 1], [0, 1, 1, 1], 3)
    array([0.5, 1. , nan])
    """
    correct, true, _ = _checked_totals(y_true, y_pred, num_classes)
    return _recall(correct, true)


def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> float:
    """Mean per-class recall over the classes present in ``y_true``.

    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0], 2)  # plain accuracy would be 0.75
    0.5
    """
    recall = per_class_accuracy(y_true, y_pred, num_classes)
    if np.isnan(recall).all():
        raise ValueError("balanced_accuracy needs at least one sample, got none")
    return float(np.nanmean(recall))


def prior_accuracy(per_class_acc: ArrayLike, prior: ArrayLike) -> float:
    """The accuracy expected where class ``i`` occurs with probability ``π_i ∝ prior[i]``:
    ``Σ_i π_i r_i / Σ_i π_i`` over the classes whose accuracy ``r_i`` is known.

    ``prior`` may be unnormalised (e.g. training counts: then it is top-1 on data as skewed as
    the training set, from the per-class accuracies of any evaluation split). A class with NaN
    accuracy (absent from the evaluation set) is left out and the prior renormalised over the
    rest, as every mean of this module leaves it out.

    >>> prior_accuracy([1.0, 0.5, 0.0], [6, 3, 1])  # (6 + 1.5) / 10
    0.75
    >>> prior_accuracy([1.0, float("nan"), 0.0], [6, 3, 1])  # class 1 left out: 6 / 7
    0.8571428571428571
    """
    acc = _real_vector(per_class_acc, "per_class_acc")
    if acc.size == 0:
        raise ValueError("per_class_acc must be non-empty, got no class")
    known = ~np.isnan(acc)
    if np.any((acc[known] < 0) | (acc[known] > 1)):
        raise ValueError(
            f"per_class_acc must lie in [0, 1] (NaN for an absent class), got {acc.tolist()[:10]}"
        )
    p = _prior(prior, acc.size)
    _renormalised(p, known, "a class with a known accuracy", f"accuracies {acc.tolist()[:10]}")
    return float((p[known] * acc[known]).sum() / p[known].sum())  # as recorded results were


def prior_effective_size(prior: ArrayLike, eval_counts: ArrayLike) -> float:
    """How many images drawn at the class prior ``π ∝ prior`` the prior-weighted accuracy of an
    evaluation split is worth: ``n_eff = 1 / Σ_c π_c² / n_c`` over the classes with ``n_c > 0``
    evaluation images (``π`` renormalised over them, as :func:`prior_accuracy` does).

    :func:`prior_accuracy` weights class ``c``'s accuracy, a mean over ``n_c`` images, by
    ``π_c``; its variance is ``Σ_c π_c² v_c / n_c`` for a per-image variance ``v_c``, which is
    that of a plain mean over ``n_eff`` images when ``v_c`` is the same in every class (for the
    difference of two models on the same images: the same share of disagreeing predictions).
    A split drawn at the prior (stratified, ``n_c ∝ π_c``) gives ``n_eff = Σ n_c``; a balanced
    one of ``m`` per class only ``m / Σ π_c²``, so it estimates accuracy on skewed data with
    ``sqrt(Σ n_c / n_eff)`` times the standard error of a stratified split of its size.

    >>> round(prior_effective_size([9, 1], [90, 10]), 6)  # stratified: every image counts
    100.0
    >>> round(prior_effective_size([9, 1], [50, 50]), 2)  # balanced: 50 / (0.81 + 0.01)
    60.98
    """
    n = _real_vector(eval_counts, "eval_counts")
    if n.size == 0:
        raise ValueError("eval_counts must have one entry per class, got none")
    if not np.all(np.isfinite(n)) or np.any(n < 0) or np.any(np.mod(n, 1) != 0):
        raise ValueError(f"eval_counts must be non-negative integers, got {n.tolist()[:10]}")
    present = n > 0
    if not present.any():
        raise ValueError(f"eval_counts has no evaluation sample, got {n.tolist()[:10]}")
    p = _prior(prior, n.size)
    w = _renormalised(
        p, present, "a class with evaluation samples", f"eval_counts {n.tolist()[:10]}"
    )
    return float(1.0 / np.sum(w * w / n[present]))


def _prior(prior: ArrayLike, num_classes: int) -> np.ndarray:
    """``prior`` as a float vector of ``num_classes`` finite, non-negative entries."""
    p = _real_vector(prior, "prior")
    if p.shape != (num_classes,):
        raise ValueError(
            f"prior must have one entry per class ({num_classes}), got shape {p.shape}"
        )
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"prior must be finite and >= 0, got {p.tolist()[:10]}")
    return p


def _renormalised(p: np.ndarray, mask: np.ndarray, where: str, context: str) -> np.ndarray:
    """``p[mask]`` divided by its sum, or a ``ValueError`` if it puts no mass there."""
    mass = float(p[mask].sum())
    if mass <= 0:
        raise ValueError(f"prior puts no mass on {where} (prior {p.tolist()[:10]}, {context})")
    return p[mask] / mass


def _real_vector(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a 1-D float64 array, refusing booleans, complex numbers and non-numbers."""
    a = to_numpy(x)
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise ValueError(f"{name} must be real numbers, got {a.dtype} values {a.tolist()[:10]}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one entry per class), got shape {a.shape}")
    return a.astype(np.float64)


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> float:
    """Mean per-class F1 over the classes occurring in ``y_true`` or ``y_pred``, with F1 = 0
    for a class that has no correct prediction (see the module docstring).

    >>> macro_f1([0, 0, 1, 1], [0, 0, 0, 1], 3)  # F1 = 0.8 and 2/3; class 2 never occurs
    0.7333333333333334
    """
    correct, true, pred = _checked_totals(y_true, y_pred, num_classes)
    if true.sum() == 0:
        raise ValueError("macro_f1 needs at least one sample, got none")
    return _macro_f1(correct, true, pred)


def _check_thresholds(many: float, few: float) -> None:
    for name, v in (("many", many), ("few", few)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not v >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    if few > many:
        raise ValueError(f"few must not exceed many, got few={few!r} > many={many!r}")


def shot_accuracy(
    per_class_acc: ArrayLike,
    train_class_counts: ArrayLike,
    many: float = 100,
    few: float = 20,
) -> dict[str, Any]:
    """Mean per-class accuracy of the many-, medium- and few-shot classes.

    A class with ``n`` training images is many-shot if ``n > many``, few-shot if ``n < few``
    and medium-shot otherwise (``few <= n <= many``: with the defaults 20 and 100 are both
    medium), as in Liu et al. 2019. NaN accuracies (classes absent from the evaluation set)
    are left out of the means; a bucket with no class left gives ``None``.

    Returns ``{"many", "medium", "few", "shot_thresholds": {"many", "few"},
    "shot_num_classes": {"many", "medium", "few"}}`` (class counts by training size).

    >>> out = shot_accuracy([0.9, 0.7, 0.5, 0.1], [500, 100, 20, 19])
    >>> out["many"], out["medium"], out["few"]
    (0.9, 0.6, 0.1)
    >>> out["shot_num_classes"]
    {'many': 1, 'medium': 2, 'few': 1}
    """
    _check_thresholds(many, few)
    acc = to_numpy(per_class_acc).astype(np.float64)
    if acc.ndim != 1:
        raise ValueError(f"per_class_acc must be 1-D, got shape {acc.shape}")
    counts = class_counts(train_class_counts, len(acc))
    buckets = {"many": counts > many, "medium": (counts >= few) & (counts <= many)}
    buckets["few"] = counts < few
    out: dict[str, Any] = {}
    for name, mask in buckets.items():
        values = acc[mask & ~np.isnan(acc)]
        out[name] = float(values.mean()) if values.size else None
    out["shot_thresholds"] = {"many": many, "few": few}
    out["shot_num_classes"] = {name: int(mask.sum()) for name, mask in buckets.items()}
    return out


def summarize(
    correct: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    top5_correct: int | None,
    train_class_counts: ArrayLike | None,
    many: float,
    few: float,
    matrix: np.ndarray | None = None,
) -> dict[str, Any]:
    """The :func:`evaluate` dict from per-class correct / true / predicted counts, a top-5
    count and optionally the confusion matrix (shared with
    :class:`~absgd.metrics.ConfusionMeter`)."""
    _check_thresholds(many, few)
    c = len(true)
    n = int(true.sum())
    if n == 0:
        raise ValueError("evaluate needs at least one sample, got none")
    recall = _recall(correct, true)
    out: dict[str, Any] = {
        "num_samples": n,
        "num_classes": c,
        "class_counts": [int(t) for t in true],
        "top1": int(correct.sum()) / n,
        "top5": None if top5_correct is None else top5_correct / n,
        "balanced_accuracy": float(np.nanmean(recall)),
        "macro_f1": _macro_f1(correct, true, pred),
    }
    if train_class_counts is not None:
        counts = class_counts(train_class_counts, c)
        out.update(shot_accuracy(recall, counts, many, few))
        known = ~np.isnan(recall)
        weighable = counts[known].sum() > 0
        out["top1_train_prior"] = prior_accuracy(recall, counts) if weighable else None
        out["top1_train_prior_images"] = prior_effective_size(counts, true) if weighable else None
    else:
        out.update(
            many=None,
            medium=None,
            few=None,
            shot_thresholds={"many": many, "few": few},
            shot_num_classes=None,
            top1_train_prior=None,
            top1_train_prior_images=None,
        )
    out["per_class_accuracy"] = [nan_to_none(r) for r in recall]
    if matrix is not None:
        out["confusion_matrix"] = matrix.tolist()
    return out


def evaluate(
    logits_or_preds: ArrayLike,
    y: ArrayLike,
    train_class_counts: ArrayLike | None = None,
    *,
    num_classes: int | None = None,
    many: float = 100,
    few: float = 20,
    with_confusion_matrix: bool = True,
) -> dict[str, Any]:
    """Every metric of this module in one JSON-serialisable dict.

    Args:
        logits_or_preds: scores ``(N, C)`` (predictions are their ``argmax``) or predicted
            class indices ``(N,)``.
        y: true class indices ``(N,)``.
        train_class_counts: training images per class ``(C,)``, for many/medium/few.
        num_classes: ``C``; required with predictions unless ``train_class_counts`` gives it.
        many, few: shot thresholds (see :func:`shot_accuracy`).
        with_confusion_matrix: include the ``C × C`` matrix (``False`` for thousands of
            classes: everything else needs only ``O(N + C)`` memory).

    Returns:
        ``num_samples``, ``num_classes``, ``class_counts`` (the samples of each class in
        ``y``), ``top1``, ``top5`` (``None`` unless logits with
        ``C > 5`` are given), ``balanced_accuracy``, ``macro_f1``, ``many``, ``medium``,
        ``few`` (``None`` without ``train_class_counts`` or for an empty bucket),
        ``shot_thresholds``, ``shot_num_classes``, ``top1_train_prior``
        (:func:`prior_accuracy` at the training counts; ``None`` without them),
        ``top1_train_prior_images`` (:func:`prior_effective_size`: how many samples drawn at
        the training prior that score is worth; ``None`` without the counts),
        ``per_class_accuracy`` (a list, ``None``
        for classes absent from ``y``) and ``confusion_matrix`` (a list of rows). Accuracies
        are fractions in ``[0, 1]``.

    >>> out = evaluate([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]], [0, 1, 1], [300, 10])
    >>> out["top1"], out["balanced_accuracy"], out["many"], out["few"], out["medium"]
    (0.6666666666666666, 0.75, 1.0, 0.5, None)
    """
    out_arr = to_numpy(logits_or_preds)
    if out_arr.ndim == 2:
        s = scores(out_arr)
        c = s.shape[1]
        if num_classes is not None and check_num_classes(num_classes) != c:
            raise ValueError(f"num_classes = {num_classes} but the logits have {c} columns")
        t = labels(y, "y", c)
        same_length(s, t, "logits", "y")
        pred = s.argmax(1) if len(s) else np.zeros(0, np.int64)
        top5 = _topk_correct(s, t, 5) if c > 5 else None
    elif out_arr.ndim == 1:
        if num_classes is None:
            if train_class_counts is None:
                raise ValueError(
                    "give num_classes (or train_class_counts) when passing predicted labels"
                )
            num_classes = len(to_numpy(train_class_counts))
        c = check_num_classes(num_classes)
        t = labels(y, "y", c)
        pred = labels(out_arr, "predicted labels", c)
        same_length(pred, t, "predicted labels", "y")
        top5 = None
    else:
        raise ValueError(
            "logits_or_preds must be logits (N, C) or predicted labels (N,), got shape "
            f"{out_arr.shape}"
        )
    matrix = confusion_matrix(t, pred, c) if with_confusion_matrix else None
    return summarize(*class_totals(t, pred, c), top5, train_class_counts, many, few, matrix)


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy arrays / scalars and tensors turned into lists and Python
    numbers, tuples into lists, and NaN into ``None`` (strict JSON has no NaN).

    >>> to_jsonable({"a": np.array([1.0, np.nan]), "b": (np.int64(2),)})
    {'a': [1.0, None], 'b': [2]}
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "detach") or isinstance(value, np.ndarray):
        return to_jsonable(to_numpy(value).tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return nan_to_none(value)
    return value
