"""Datasets described by list files, one ``<relative path> <label>`` per line.

This is the format of the ImageNet-LT, Places-LT and iNaturalist 2018 split files (Liu et al.,
"Large-Scale Long-Tailed Recognition in an Open World", CVPR 2019; Kang et al. 2020), e.g.
``train/n01440764/n01440764_10026.JPEG 0``. The path is relative to an image root (a leading
``/`` is ignored, as in Places-LT's files); it may contain spaces, the label is the last field.
Blank lines and lines starting with ``#`` are skipped.

Images are decoded lazily, one per ``__getitem__``, so datasets of any size work through a
``DataLoader`` with workers (see :class:`absgd.data.BatchLoader`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from absgd.data.dataset import validate_labels
from absgd.data.errors import DataFormatError
from absgd.data.readers._images import check_mode, require_pillow

__all__ = ["ListFileDataset", "read_list_file"]


def read_list_file(path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Parse a list file into ``(relative paths, int64 labels)`` without touching the images.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "train.txt"
    >>> _ = f.write_text("a/x 1.jpg 3\\n\\n# comment\\n/b/y.jpg 0\\n")
    >>> read_list_file(f)
    (['a/x 1.jpg', 'b/y.jpg'], array([3, 0]))
    """
    src = Path(path)
    paths: list[str] = []
    labels: list[int] = []
    with open(src, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.rsplit(maxsplit=1)
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise DataFormatError(
                    f"{src}:{lineno}: expected '<path> <integer label>', got {text!r}"
                )
            paths.append(fields[0].lstrip("/"))
            labels.append(int(fields[1]))
    return paths, np.asarray(labels, dtype=np.int64)


class ListFileDataset(Dataset):
    """Images listed in a list file, decoded with Pillow on access.

    ``dataset[i]`` is ``(image, label)``: by default ``image`` is a ``uint8`` tensor
    ``(C, crop, crop)``: the image's shorter side resized to ``resize`` (bilinear), then the
    central ``crop × crop`` square (the usual ImageNet evaluation view; random crops and flips
    are applied on whole batches by :class:`absgd.data.BatchAugment`). With ``transform`` the
    decoded ``PIL.Image`` is passed to it instead and its result returned.

    Args:
        list_file: the list file.
        root: directory the listed paths are relative to.
        resize: target length of the shorter side, or ``None`` to keep the size.
        crop: side of the central square crop, or ``None`` for no crop.
        mode: ``"RGB"`` or ``"L"``.
        num_classes: ``C`` (default: largest label + 1). ``class_names`` overrides it.
        transform: optional callable on the ``PIL.Image`` (e.g. a torchvision transform).
    """

    def __init__(
        self,
        list_file: str | os.PathLike[str],
        root: str | os.PathLike[str],
        *,
        resize: int | None = 256,
        crop: int | None = 224,
        mode: str = "RGB",
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.list_file = Path(list_file)
        self.root = Path(root)
        if not self.list_file.is_file():
            raise FileNotFoundError(f"list file {self.list_file} not found")
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"image root {self.root} not found (the listed paths are relative to it)"
            )
        for name, value in (("resize", resize), ("crop", crop)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        if resize is not None and crop is not None and crop > resize:
            raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
        self.resize, self.crop, self.mode = resize, crop, check_mode(mode)
        self.transform = transform
        self.paths, labels = read_list_file(self.list_file)
        if class_names is not None:
            self.class_names = tuple(str(c) for c in class_names)
        else:
            count = num_classes if num_classes is not None else int(labels.max(initial=-1)) + 1
            self.class_names = tuple(str(i) for i in range(max(count, 1)))
        self.labels = validate_labels(labels, len(self.class_names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """``int64 (C,)`` samples per class, from the list file alone."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int) -> Any:
        """The decoded, resized and cropped ``PIL.Image`` of sample ``index``."""
        image_mod = require_pillow()
        path = self.root / self.paths[index]
        try:
            with image_mod.open(path) as im:
                if self.resize is not None:
                    im.draft(self.mode, (self.resize, self.resize))  # fast JPEG downscale
                img = im.convert(self.mode)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} (line for index {index} of {self.list_file}) not found under {self.root}"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataFormatError(f"cannot decode image {path}: {exc}") from exc
        if self.resize is not None:
            w, h = img.size
            scale = self.resize / min(w, h)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            if size != img.size:
                img = img.resize(size, image_mod.Resampling.BILINEAR)
        if self.crop is not None:
            w, h = img.size
            left, top = (w - self.crop) // 2, (h - self.crop) // 2
            img = img.crop((left, top, left + self.crop, top + self.crop))
        return img

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = self.load_image(index)
        label = int(self.labels[index])
        if self.transform is not None:
            return self.transform(img), label
        arr = np.array(img, dtype=np.uint8)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), label
