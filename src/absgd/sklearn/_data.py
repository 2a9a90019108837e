"""Input checks and row access of :class:`absgd.sklearn.ABSGDClassifier` (no estimator logic)."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor


def is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def hidden_sizes(value: object) -> tuple[int, ...]:
    sizes = (value,) if is_int(value) else value
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ValueError(
            f"hidden_layer_sizes must be a tuple of positive ints (() for a linear model), "
            f"got {value!r}"
        )
    sizes = tuple(sizes)  # type: ignore[arg-type]
    if not all(is_int(h) and h > 0 for h in sizes):
        raise ValueError(
            f"hidden_layer_sizes must be a tuple of positive ints (() for a linear model), "
            f"got {value!r}"
        )
    return tuple(int(h) for h in sizes)


def resolve_device(device: object) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)  # type: ignore[call-overload]
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:<index>', 'auto' or a torch.device, "
            f"got {device!r}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return resolved


def check_sample_weight(sample_weight: object, n_samples: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    try:
        sw = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("sample_weight must be an array of numbers") from None
    if sw.ndim == 0:
        sw = np.full(n_samples, float(sw))
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},) to match X, got {sw.shape}")
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight must be finite (no NaN or infinity)")
    if (sw < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not sw.any():
        raise ValueError(
            "sample_weight must contain at least one non-zero weight; all weights are zero"
        )
    return sw


def to_cpu(tree: Any) -> Any:
    """A copy of ``tree`` (dicts, lists, tuples, tensors) with every tensor on the CPU."""
    if isinstance(tree, Tensor):
        return tree.detach().to("cpu")
    if isinstance(tree, dict):
        return {k: to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_cpu(v) for v in tree)
    return tree


def encode(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of ``y`` in the sorted ``classes``; ``ValueError`` naming any unknown label."""
    try:
        idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        known = np.asarray(classes[idx] == y, dtype=bool)
    except TypeError:  # labels of another type than the classes
        idx, known = np.zeros(len(y), dtype=np.int64), np.zeros(len(y), dtype=bool)
    if not known.all():
        unknown = sorted({str(v) for v in np.asarray(y)[~known]})
        raise ValueError(
            f"y contains labels {unknown} that are not in classes {classes.tolist()}; pass "
            "every label the data can contain in classes= on the first call to partial_fit"
        )
    return idx.astype(np.int64)


def factors(
    y_idx: np.ndarray,
    sw: np.ndarray | None,
    class_w: np.ndarray | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Tensor | None:
    """``u_i = ω_i · c_{y_i}`` on ``device`` (``None``: no weights at all)."""
    if sw is None and class_w is None:
        return None
    u = np.ones(len(y_idx)) if class_w is None else class_w[y_idx]
    if sw is not None:
        u = u * sw
    return torch.from_numpy(np.asarray(u, dtype=np.float64)).to(device=device, dtype=dtype)


def batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class Rows:
    """Rows of X as tensors of ``dtype`` on ``device``.

    With ``preload`` a dense X is converted and moved once (training); otherwise rows are
    converted chunk by chunk (prediction, and sparse X, densified one mini-batch at a time).
    """

    def __init__(
        self,
        X: np.ndarray | sp.spmatrix,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        preload: bool = True,
    ) -> None:
        self.X, self.device, self.dtype = X, device, dtype
        self.np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self.tensor: Tensor | None = None
        if preload and not sp.issparse(X):
            arr = np.ascontiguousarray(X, dtype=self.np_dtype)
            if not arr.flags.writeable:  # torch.from_numpy wants writable memory
                arr = arr.copy()
            self.tensor = torch.from_numpy(arr).to(device)

    def all(self) -> Tensor:
        """Every row as one dense tensor (a sparse X is densified whole)."""
        if self.tensor is None:
            self.tensor = self(np.arange(self.X.shape[0]))
        return self.tensor

    def __call__(self, idx: np.ndarray) -> Tensor:
        if self.tensor is not None:
            return self.tensor[torch.from_numpy(idx).to(self.device)]
        part = self.X[idx]
        if sp.issparse(part):
            part = part.toarray()
        part = np.ascontiguousarray(part, dtype=self.np_dtype)
        return torch.from_numpy(part).to(self.device)
