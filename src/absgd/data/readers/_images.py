"""Image decoding helpers with a lazy, optional Pillow import (private)."""

from __future__ import annotations

import io
import os
from types import ModuleType

import numpy as np

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp"}
)
IMAGE_MODES = ("RGB", "L")


def require_pillow() -> ModuleType:
    """``PIL.Image``, or an ``ImportError`` telling the user how to install it."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'reading image files needs Pillow: pip install "torch-absgd[data]"'
        ) from exc
    return Image


def is_image_name(name: str) -> bool:
    """True for a visible file name with a known image extension."""
    base = os.path.basename(name)
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def check_mode(mode: str) -> str:
    if mode not in IMAGE_MODES:
        raise ValueError(f"mode must be one of {IMAGE_MODES}, got {mode!r}")
    return mode


def normalize_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``None``, or ``(height, width)`` from an int or a pair, validated positive."""
    if size is None:
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"image_size must be a positive int or (height, width), got {size!r}")
    return int(hw[0]), int(hw[1])


def decode_image(
    source: bytes | str | os.PathLike[str], mode: str, size: tuple[int, int] | None, name: str
) -> np.ndarray:
    """Decode one image to ``uint8 (H, W, C)`` in ``mode``, resized to ``size`` (bilinear) when
    given. ``name`` is used in error messages."""
    image_mod = require_pillow()
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with image_mod.open(fp) as im:
            if im.mode != mode:
                im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), image_mod.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:
        from absgd.data.errors import DataFormatError

        raise DataFormatError(f"cannot decode image {name}: {exc}") from exc
    return arr[:, :, None] if arr.ndim == 2 else arr
