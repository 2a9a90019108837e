"""Input conversion and validation shared by the metrics (private)."""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import numpy as np
import torch

ArrayLike = Any  # numpy array, torch tensor (any device) or nested sequence


def to_numpy(x: ArrayLike) -> np.ndarray:
    """A numpy array from a tensor (detached, on the host; half precision → float32) or an
    array-like."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point() and x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return int(num_classes)


def labels(x: ArrayLike, name: str, num_classes: int) -> np.ndarray:
    """``x`` as a 1-D int64 array of class indices in ``[0, num_classes)``."""
    y = to_numpy(x)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class index per sample), got shape {y.shape}")
    if y.size and (
        y.dtype == bool
        or not (
            np.issubdtype(y.dtype, np.integer)
            or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
        )
    ):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        values = np.unique(y[bad])
        more = "" if len(values) <= 10 else f" ... ({len(values)} distinct)"
        raise ValueError(
            f"{name} must be integers in [0, {num_classes}) (num_classes = {num_classes}); "
            f"found {int(bad.sum())} outside: {values[:10].tolist()}{more}"
        )
    return y


def same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} differ in length: {len(a)} != {len(b)}")


def scores(x: ArrayLike, name: str = "logits") -> np.ndarray:
    """``x`` as a 2-D float array ``(N, C)`` without NaN."""
    s = to_numpy(x)
    if s.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, classes), got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number) or s.dtype == bool:
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    nan_rows = np.isnan(s).any(axis=1).sum() if np.issubdtype(s.dtype, np.floating) else 0
    if nan_rows:
        raise ValueError(f"{name} has NaN in {int(nan_rows)} of {len(s)} rows")
    return s


def class_counts(
    counts: ArrayLike, num_classes: int, name: str = "train_class_counts"
) -> np.ndarray:
    c = to_numpy(counts)
    if c.shape != (num_classes,):
        raise ValueError(
            f"{name} must have one entry per class ({num_classes}), got shape {c.shape}"
        )
    if c.size and (
        not np.issubdtype(c.dtype, np.number) or np.any(c < 0) or np.any(np.mod(c, 1) != 0)
    ):
        raise ValueError(f"{name} must be non-negative integers, got {c.tolist()[:10]}")
    return c.astype(np.int64)


def nan_to_none(value: SupportsFloat) -> float | None:
    """A Python float, or ``None`` for NaN (strict JSON has no NaN)."""
    value = float(value)
    return None if math.isnan(value) else value
