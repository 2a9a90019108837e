"""Vectorised batch augmentation: random crop with padding, horizontal flip, normalisation.

Works on whole ``(N, C, H, W)`` batches on whatever device they are on, with no per-image
Python loop. A crop with padding ``p`` takes, from the image zero-padded (or reflect-padded) by
``p`` on every side, the ``H × W`` window at offset ``(dy, dx) ∈ [0, 2p]²``; i.e. output pixel
``(i, j)`` is input pixel ``(i + dy - p, j + dx - p)`` or the padding value. A flip reverses
the columns of the crop. Both are one gather with per-sample row/column indices, so no padded
copy is materialised. Crop + flip happen on the raw values (``uint8`` stays ``uint8``, padding
0 = black as in torchvision's ``RandomCrop(32, padding=4)`` before ``ToTensor``); then ``uint8``
is scaled to ``[0, 1]`` and ``(x - mean) / std`` applied per channel.

The random parameters are drawn on the CPU from a ``torch.Generator`` (:meth:`sample`), so a
seed gives the same batch on every device, and applied where the batch lives (:meth:`apply`).

Differences from the reference (torchvision ``RandomCrop`` + ``RandomHorizontalFlip`` per image
in ``DataLoader`` workers): same distribution of crops and flips (offsets uniform in
``[0, 2p]``, flip probability 1/2), drawn per batch from one generator instead of per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "AugmentParams",
    "BatchAugment",
    "channel_stats",
    "crop_and_flip",
    "to_nchw",
]

#: Per-channel mean and std used by the LDAM-DRW reference code for CIFAR (RGB, in [0, 1]).
#: (The std is the often-copied per-image value, not the dataset std; see ``channel_stats``.)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
PADDING_MODES = ("constant", "reflect")


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample random parameters: crop ``offsets`` ``int64 (N, 2)`` as ``(dy, dx)`` in
    ``[0, 2·padding]`` and ``flips`` ``bool (N,)``. Slicing keeps samples ``[start:stop]``."""

    offsets: torch.Tensor
    flips: torch.Tensor

    def __len__(self) -> int:
        return len(self.flips)

    def __getitem__(self, item: slice) -> AugmentParams:
        return AugmentParams(self.offsets[item], self.flips[item])


def to_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(N, H, W, C)`` array or tensor to a contiguous ``(N, C, H, W)`` tensor (no copy of
    dtype; ``(N, H, W)`` gets ``C = 1``)."""
    t = torch.as_tensor(images)
    if t.ndim == 3:
        t = t.unsqueeze(-1)
    if t.ndim != 4:
        raise ValueError(f"expected images (N, H, W, C) or (N, H, W), got shape {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).contiguous()


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``uint8 (N, H, W, C)`` images, scaled to ``[0, 1]`` (compute
    them on the training split only).

    >>> channel_stats(np.array([[[[0, 255]], [[255, 255]]]], dtype=np.uint8))
    ((0.5, 1.0), (0.5, 0.0))
    """
    x = np.asarray(images)
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64) / (255.0 if x.dtype == np.uint8 else 1.0)
    return tuple(flat.mean(0).tolist()), tuple(flat.std(0).tolist())


def crop_and_flip(
    x: torch.Tensor,
    offsets: torch.Tensor | None,
    flips: torch.Tensor | None,
    padding: int,
    padding_mode: str = "constant",
) -> torch.Tensor:
    """Crop every image of ``x`` (N, C, H, W) at its offset from the ``padding``-padded image
    and reverse the columns where ``flips`` is true, in one gather on ``x``'s device."""
    n, c, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(n, h)
    cols = torch.arange(w, device=dev).expand(n, w)
    if offsets is not None and padding > 0:
        off = offsets.to(dev)
        rows = rows + (off[:, :1] - padding)
        cols = cols + (off[:, 1:] - padding)
    if flips is not None:
        cols = torch.where(flips.to(dev)[:, None], cols.flip(1), cols)
    inside = None
    if padding > 0 and padding_mode == "reflect":
        rows = _reflect(rows, h)
        cols = _reflect(cols, w)
    elif padding > 0:
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    # One gather over the flattened pixels: source pixel of output (i, j) is rows[i]·W + cols[j].
    source = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, h * w)
    out = torch.gather(x.reshape(n, c, h * w), 2, source.expand(n, c, h * w))
    out = out.reshape(n, c, h, w)
    if inside is not None:
        out = out * inside[:, None].to(out.dtype)
    return out


def _reflect(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect indices into ``[0, size)`` without repeating the edge (``numpy``'s reflect)."""
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


@dataclass(frozen=True)
class BatchAugment:
    """Batch transform: random crop with ``padding``, random horizontal flip, then scaling of
    ``uint8`` to ``[0, 1]`` and per-channel ``(x - mean) / std``.

    ``padding=0, flip=False`` gives the evaluation transform (see :meth:`for_eval`). The
    defaults are the CIFAR-LT training augmentation of LDAM-DRW (crop 32, padding 4, flip).

    >>> aug = BatchAugment(padding=4, flip=True, mean=(0.5,), std=(0.5,))
    >>> x = torch.randint(0, 256, (8, 1, 6, 6), dtype=torch.uint8)
    >>> out = aug(x, torch.Generator().manual_seed(0))
    >>> out.shape, out.dtype, bool(out.abs().max() <= 1)
    (torch.Size([8, 1, 6, 6]), torch.float32, True)
    """

    padding: int = 4
    flip: bool = True
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    padding_mode: str = "constant"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}"
            )
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != len(self.std):
                raise ValueError(f"mean {self.mean} and std {self.std} differ in length")
            if min(self.std) <= 0:
                raise ValueError(f"std must be positive, got {self.std}")
            object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
            object.__setattr__(self, "std", tuple(float(s) for s in self.std))

    def for_eval(self) -> BatchAugment:
        """The same normalisation without random crop or flip."""
        return BatchAugment(0, False, self.mean, self.std, self.padding_mode, self.dtype)

    @property
    def is_random(self) -> bool:
        return self.padding > 0 or self.flip

    def sample(self, n: int, generator: torch.Generator | None = None) -> AugmentParams:
        """Draw the parameters of ``n`` samples on the CPU (offsets first, then flips)."""
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU torch.Generator, got {generator.device}")
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)
        if self.padding == 0:
            offsets.zero_()
        flips = torch.rand(n, generator=generator) < 0.5
        if not self.flip:
            flips.zero_()
        return AugmentParams(offsets, flips)

    def apply(self, x: torch.Tensor, params: AugmentParams | None = None) -> torch.Tensor:
        """Apply crop/flip ``params`` (none: no crop, no flip) and normalise ``x`` (N, C, H, W)
        on its device; returns a contiguous tensor of ``self.dtype``."""
        if x.ndim != 4:
            raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
        if params is not None and len(params) != len(x):
            raise ValueError(f"{len(params)} augmentation parameters for a batch of {len(x)}")
        if params is not None and (self.padding > 0 or self.flip):
            x = crop_and_flip(
                x,
                params.offsets if self.padding > 0 else None,
                params.flips if self.flip else None,
                self.padding,
                self.padding_mode,
            )
        scale = 1.0 / 255.0 if x.dtype == torch.uint8 else 1.0
        out = x.to(self.dtype, copy=True).contiguous()
        if self.mean is None or self.std is None:
            return out.mul_(scale) if scale != 1.0 else out
        if len(self.mean) != x.shape[1]:
            raise ValueError(f"mean has {len(self.mean)} channels, the batch {x.shape[1]}")
        # (scale·x - mean) / std as one multiply and one subtract, per channel.
        mul = [scale / s for s in self.std]
        sub = [m / s for m, s in zip(self.mean, self.std, strict=True)]
        mul_t = torch.tensor(mul, dtype=self.dtype, device=x.device)[:, None, None]
        sub_t = torch.tensor(sub, dtype=self.dtype, device=x.device)[:, None, None]
        return out.mul_(mul_t).sub_(sub_t)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``apply(x, sample(len(x), generator))``."""
        return self.apply(x, self.sample(len(x), generator) if self.is_random else None)
