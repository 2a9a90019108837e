"""Helpers for the absgd.data tests that write tiny image files (they need Pillow).

(A uniquely named module rather than ``conftest`` so that importing it cannot clash with another
``conftest.py`` of the test suite.)
"""

from __future__ import annotations

import io

import numpy as np


def solid_png(color: tuple[int, ...] | int, size: tuple[int, int] = (4, 5)) -> bytes:
    """PNG bytes of a ``size=(width, height)`` image of one colour (needs Pillow)."""
    from PIL import Image

    mode = "L" if isinstance(color, int) else "RGB"
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def array_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes of a ``uint8 (H, W, 3)`` array (needs Pillow)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG")
    return buf.getvalue()
