"""The in-memory container every reader returns: :class:`ArrayDataset` and :class:`DataSplits`.

Conventions: images are ``uint8`` arrays of shape ``(N, H, W, C)`` (channels last, as stored on
disk; the batch loader converts to ``(N, C, H, W)``), tabular features are ``float32`` arrays of
shape ``(N, D)``, labels are ``int64`` class indices in ``[0, C)`` with ``C = len(class_names)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ArrayDataset", "DataSplits", "validate_labels"]


def validate_labels(labels: object, num_classes: int) -> np.ndarray:
    """Return ``labels`` as a 1-D ``int64`` array, checking every value lies in ``[0, C)``.

    >>> validate_labels([0, 2, 1], 3)
    array([0, 2, 1])
    >>> validate_labels([0, 3, -1], 3)
    Traceback (most recent call last):
    ...
    ValueError: labels must be integers in [0, 3) (num_classes = 3); found 2 outside: [-1, 3]
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {y.shape}")
    if y.size == 0:
        return y.astype(np.int64)
    if y.dtype == bool or not (
        np.issubdtype(y.dtype, np.integer)
        or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
    ):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        values = np.unique(y[bad])
        shown = values[:10].tolist()
        more = "" if len(values) <= 10 else f" ... ({len(values)} distinct)"
        raise ValueError(
            f"labels must be integers in [0, {num_classes}) (num_classes = {num_classes}); "
            f"found {int(bad.sum())} outside: {shown}{more}"
        )
    return y


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Labelled samples held in memory.

    Attributes:
        x: samples; ``uint8 (N, H, W, C)`` images or ``float32 (N, D)`` features.
        y: ``int64 (N,)`` class indices in ``[0, num_classes)``.
        class_names: one name per class; its length defines ``num_classes``.
        class_groups: optional superclass index of every class (CIFAR-100's coarse labels),
            used by the within-group asymmetric noise rule.
        group_names: optional names of the superclasses.

    >>> ds = ArrayDataset(np.zeros((4, 2), np.float32), [0, 1, 1, 1], ("a", "b", "c"))
    >>> ds.num_classes, len(ds), ds.class_counts().tolist()
    (3, 4, [1, 3, 0])
    """

    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    class_groups: tuple[int, ...] | None = field(default=None)
    group_names: tuple[str, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.class_names)
        if not names:
            raise ValueError("class_names must name at least one class")
        x = np.asarray(self.x)
        y = validate_labels(self.y, len(names))
        if x.ndim == 0 or len(x) != len(y):
            raise ValueError(
                f"x and y must have the same length; got x of shape {x.shape} and {len(y)} labels"
            )
        groups = self.class_groups
        if groups is not None:
            groups = tuple(int(g) for g in groups)
            if len(groups) != len(names) or min(groups) < 0:
                raise ValueError(
                    f"class_groups must give one non-negative group per class ({len(names)}), "
                    f"got {groups}"
                )
        gnames = None if self.group_names is None else tuple(str(g) for g in self.group_names)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "class_groups", groups)
        object.__setattr__(self, "group_names", gnames)

    @property
    def num_classes(self) -> int:
        """``C``, the number of classes (``len(class_names)``)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self) -> np.ndarray:
        """``int64 (C,)`` number of samples of each class (zeros included)."""
        return np.bincount(self.y, minlength=self.num_classes).astype(np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ArrayDataset:
        """A new dataset with the samples at ``indices``, in that order (arrays are copied)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(
            self.x[idx], self.y[idx], self.class_names, self.class_groups, self.group_names
        )

    def with_labels(self, labels: Sequence[int] | np.ndarray) -> ArrayDataset:
        """The same samples with other labels (e.g. noisy ones); ``x`` is shared, not copied."""
        y = np.asarray(labels)
        return ArrayDataset(self.x, y, self.class_names, self.class_groups, self.group_names)


@dataclass(frozen=True)
class DataSplits:
    """A training split, an optional validation split and a test split of one dataset.

    The validation split is for model and epoch selection; the test split is only evaluated.
    """

    train: ArrayDataset
    test: ArrayDataset
    val: ArrayDataset | None = None

    def __post_init__(self) -> None:
        for name in ("test", "val"):
            other = getattr(self, name)
            if other is not None and other.class_names != self.train.class_names:
                raise ValueError(
                    f"the {name} split's class names differ from the training split's: "
                    f"{other.class_names} vs {self.train.class_names}"
                )

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names

    @property
    def num_classes(self) -> int:
        return self.train.num_classes
