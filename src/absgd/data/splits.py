"""Stratified, seeded hold-out splits (a validation set carved from the training data).

Model and epoch selection use the validation split; the test split is only ever evaluated.
Of the ``n_c`` samples of class ``c``, ``k_c`` are held out:

- ``fraction=f``: ``k_c = max(min_per_class, ⌊f · n_c⌋)`` (same class distribution as the
  input up to rounding; a long-tailed training set gives a long-tailed validation set),
- ``per_class=k``: ``k_c = k`` for every class (a balanced validation set),

always leaving at least one sample of every non-empty class in the kept part. The held-out
samples of each class are the first ``k_c`` of a permutation drawn, class by class in ascending
order, from ``numpy.random.default_rng(seed)``. Both index arrays are returned sorted, so the
two parts keep the dataset's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from absgd.data._util import floor_fraction
from absgd.data.dataset import ArrayDataset, DataSplits, validate_labels

__all__ = ["stratified_split_indices", "train_val_split", "with_validation"]


def stratified_split_indices(
    labels: Sequence[int] | np.ndarray,
    *,
    fraction: float | None = None,
    per_class: int | None = None,
    min_per_class: int = 0,
    seed: int = 0,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)`` sorted index arrays of a stratified split (see the module doc).

    >>> kept, held = stratified_split_indices([0] * 10 + [1] * 4, fraction=0.25, seed=0)
    >>> len(kept), len(held), np.bincount(np.repeat([0, 1], [10, 4])[held]).tolist()
    (11, 3, [2, 1])
    """
    y = np.asarray(labels)
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 1
    y = validate_labels(y, num_classes)
    if (fraction is None) == (per_class is None):
        raise ValueError(
            f"give exactly one of fraction= and per_class=, got {fraction=}, {per_class=}"
        )
    if fraction is not None and not (0.0 < float(fraction) < 1.0):
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if per_class is not None and per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class!r}")
    if min_per_class < 0:
        raise ValueError(f"min_per_class must be >= 0, got {min_per_class!r}")

    rng = np.random.default_rng(seed)
    held = []
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        n = len(idx)
        if n == 0:
            continue
        k = per_class if fraction is None else floor_fraction(float(fraction), n)
        k = max(int(k), min_per_class)  # type: ignore[arg-type]
        if k > n - 1:
            raise ValueError(
                f"class {c} has {n} samples: cannot hold out {k} and keep at least one; "
                f"lower fraction/per_class/min_per_class (got {fraction=}, {per_class=}, "
                f"{min_per_class=})"
            )
        held.append(rng.permutation(idx)[:k])
    held_idx = np.sort(np.concatenate(held)) if held else np.empty(0, np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask).astype(np.int64), held_idx.astype(np.int64)


def train_val_split(
    dataset: ArrayDataset,
    *,
    val_fraction: float | None = None,
    val_per_class: int | None = None,
    min_per_class: int = 1,
    seed: int = 0,
) -> tuple[ArrayDataset, ArrayDataset]:
    """Split ``dataset`` into ``(train, val)``, stratified by class and seeded.

    ``min_per_class=1`` (default) puts at least one sample of every class in the validation
    split, so per-class and balanced accuracy are defined on it.
    """
    kept, held = stratified_split_indices(
        dataset.y,
        fraction=val_fraction,
        per_class=val_per_class,
        min_per_class=min_per_class,
        seed=seed,
        num_classes=dataset.num_classes,
    )
    return dataset.subset(kept), dataset.subset(held)


def with_validation(
    splits: DataSplits,
    *,
    val_fraction: float | None = None,
    val_per_class: int | None = None,
    min_per_class: int = 1,
    seed: int = 0,
) -> DataSplits:
    """``splits`` with a validation split carved from its training split (test untouched)."""
    train, val = train_val_split(
        splits.train,
        val_fraction=val_fraction,
        val_per_class=val_per_class,
        min_per_class=min_per_class,
        seed=seed,
    )
    return DataSplits(train=train, test=splits.test, val=val)
