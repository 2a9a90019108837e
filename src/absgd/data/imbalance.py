"""Long-tailed subsets: per-class counts and the standard selection procedure.

The CIFAR-LT protocol (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
CVPR 2019; Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
NeurIPS 2019 = LDAM-DRW) keeps, of class ``i`` among ``C`` classes with at most ``n_max`` images,

- ``exp``:  ``floor(n_max · ratio^(-i/(C-1)))`` images,
- ``step``: ``n_max`` for the first ``⌊C/2⌋`` classes and ``floor(n_max / ratio)`` for the rest,

where ``ratio = n_max / n_min`` is the imbalance ratio (100 means the rarest class has 1% of the
most frequent one). The images kept are chosen by one legacy NumPy ``RandomState(seed)``: for
each class in ascending label order, the indices of that class (in dataset order) are shuffled
with it and the first ``counts[c]`` kept.

Differences from the reference implementation (LDAM-DRW's ``IMBALANCECIFAR10``): the counts are
computed with exactly its floating-point expression, ``int(n_max * (1/ratio) ** (i / (C - 1.0)))``
and ``int(n_max * (1/ratio))``, so the integers are identical (for ``step`` this can be one less
than the exact ``⌊n_max/ratio⌋`` when ``n_max/ratio`` is an integer, e.g. 49/49 gives 0, as in
the reference). For an odd number of classes the reference ``step`` profile silently drops the
last class; here it gets the tail count. Where the reference silently keeps fewer images than
requested or ignores labels beyond the counts, this module raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from absgd.data.dataset import ArrayDataset, validate_labels

__all__ = ["PROFILES", "long_tail_counts", "make_long_tailed", "select_long_tailed"]

PROFILES = ("exp", "step")


def _check_ratio(imbalance_ratio: float) -> float:
    ratio = float(imbalance_ratio)
    if not math.isfinite(ratio) or ratio < 1.0:
        raise ValueError(
            f"imbalance_ratio must be a finite number >= 1 (n_max / n_min, e.g. 100), "
            f"got {imbalance_ratio!r}"
        )
    return ratio


def long_tail_counts(
    n_max: int, num_classes: int, imbalance_ratio: float, profile: str = "exp"
) -> list[int]:
    """Images kept per class for a long-tailed subset (see the module docstring for formulas).

    Args:
        n_max: images of the most frequent class (class 0), e.g. 5000 for CIFAR-10.
        num_classes: ``C``.
        imbalance_ratio: ``n_max / n_min`` (>= 1).
        profile: ``"exp"`` (exponential decay) or ``"step"`` (two levels).

    >>> long_tail_counts(5000, 10, 100)
    [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    >>> long_tail_counts(5000, 10, 10, "step")
    [5000, 5000, 5000, 5000, 5000, 500, 500, 500, 500, 500]
    """
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ValueError(f"n_max must be a positive int, got {n_max!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    factor = 1.0 / _check_ratio(imbalance_ratio)
    top = float(n_max)
    if profile == "exp":
        if num_classes == 1:
            return [int(n_max)]
        # Same expression, same float operations, as the reference: keep it byte-for-byte.
        return [int(top * (factor ** (i / (num_classes - 1.0)))) for i in range(num_classes)]
    if profile == "step":
        head = num_classes // 2
        return [int(top)] * head + [int(top * factor)] * (num_classes - head)
    raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


def select_long_tailed(
    labels: Sequence[int] | np.ndarray, counts: Sequence[int], seed: int = 0
) -> np.ndarray:
    """Dataset indices of the standard long-tailed subset, in the reference's order.

    One ``numpy.random.RandomState(seed)``; for ``c = 0, 1, …, C-1`` (``C = len(counts)``) the
    indices of class ``c`` in dataset order are shuffled in place with it and the first
    ``counts[c]`` are appended. The result is grouped by class, shuffled within each class.

    Raises:
        ValueError: a label outside ``[0, C)``, a negative count, or a class with fewer
            samples than requested.

    >>> select_long_tailed([0, 1, 0, 1, 0, 1], [3, 1]).tolist()
    [4, 2, 0, 5]
    """
    counts = [int(k) for k in counts]
    if not counts:
        raise ValueError("counts must give one count per class, got an empty sequence")
    if min(counts) < 0:
        raise ValueError(f"counts must be non-negative, got {counts}")
    y = validate_labels(labels, len(counts))
    rng = np.random.RandomState(seed)
    kept = []
    for c, k in enumerate(counts):
        idx = np.flatnonzero(y == c)
        if k > len(idx):
            raise ValueError(
                f"class {c} has {len(idx)} samples but {k} were requested; "
                f"counts must not exceed the class sizes {np.bincount(y, minlength=len(counts))}"
            )
        rng.shuffle(idx)
        kept.append(idx[:k])
    return np.concatenate(kept).astype(np.int64)


def make_long_tailed(
    dataset: ArrayDataset,
    imbalance_ratio: float,
    profile: str = "exp",
    seed: int = 0,
    n_max: int | None = None,
) -> ArrayDataset:
    """The long-tailed subset of ``dataset`` (class 0 the most frequent).

    ``n_max`` defaults to the smallest class size, which for the balanced CIFAR training sets
    is the reference's ``len(data) / C`` (5000 and 500).

    >>> ds = ArrayDataset(np.arange(40).reshape(20, 2), np.repeat([0, 1], 10), ("a", "b"))
    >>> make_long_tailed(ds, 5).class_counts().tolist()
    [10, 2]
    """
    sizes = dataset.class_counts()
    top = int(sizes.min()) if n_max is None else n_max
    counts = long_tail_counts(top, dataset.num_classes, imbalance_ratio, profile)
    return dataset.subset(select_long_tailed(dataset.y, counts, seed))
