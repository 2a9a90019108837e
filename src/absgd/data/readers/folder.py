"""Image folders ``root/{train,test}/<class>/<files>``, as a directory or inside a tar archive.

Class ``k`` is the ``k``-th class folder name in sorted order (identical in both splits), and
the images of a class are ordered by sorted file name, so ``train/airplane/0000.jpg`` …
``train/truck/4999.jpg`` become indices 0 … 49,999 in that order. Files without an image
extension and hidden files are ignored; an empty class folder is an error (it would shift the
class indices). An archive (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) may
hold the split folders at its top level or under one prefix folder. It is read once as a
stream (never by random access, which is very slow inside a ``.gz``), its images decoded and
the ``uint8`` arrays cached (see :mod:`absgd.data.cache`); later calls load the cache.
"""

from __future__ import annotations

import gzip
import lzma
import os
import tarfile
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from absgd.data.cache import cache_entry, load_arrays, save_arrays
from absgd.data.dataset import ArrayDataset, DataSplits
from absgd.data.errors import DataFormatError
from absgd.data.readers._images import check_mode, decode_image, is_image_name, normalize_size

__all__ = ["ARCHIVE_SUFFIXES", "read_image_folder"]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CACHE_VERSION = 1
# {split: {class: {file name: bytes or path}}}
_Tree = dict[str, dict[str, dict[str, "bytes | Path"]]]


Progress = Callable[[str, int, int], None]


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _scan_directory(root: Path, splits: Sequence[str]) -> _Tree:
    tree: _Tree = {}
    for split in splits:
        split_dir = root / split
        if not split_dir.is_dir():
            raise FileNotFoundError(
                f"{split_dir} not found: an image folder needs {root}/<split>/<class>/<image> "
                f"for each split in {tuple(splits)}"
            )
        classes = tree.setdefault(split, {})
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if class_dir.name.startswith("."):
                continue
            classes[class_dir.name] = {
                f.name: f for f in class_dir.iterdir() if f.is_file() and is_image_name(f.name)
            }
    return tree


def _scan_archive(path: Path, splits: Sequence[str]) -> _Tree:
    tree: _Tree = {split: {} for split in splits}
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                parts = [p for p in PurePosixPath(member.name).parts if p not in ("", ".", "/")]
                if member.isdir() and len(parts) >= 2 and parts[-2] in tree:
                    tree[parts[-2]].setdefault(parts[-1], {})
                    continue
                if not member.isfile() or len(parts) < 3 or parts[-3] not in tree:
                    continue
                split, cls, name = parts[-3:]
                if not is_image_name(name):
                    continue
                files = tree[split].setdefault(cls, {})
                if name in files:
                    raise DataFormatError(f"{path}: {split}/{cls}/{name} appears twice")
                fh = archive.extractfile(member)
                files[name] = fh.read() if fh is not None else b""
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise DataFormatError(
            f"{path} is truncated or not a readable tar archive ({exc}); nothing was cached"
        ) from exc
    return tree


def _class_names(tree: _Tree, source: Path, splits: Sequence[str]) -> tuple[str, ...]:
    names = sorted(tree[splits[0]])
    for split in splits:
        classes = tree.get(split, {})
        if not classes:
            raise DataFormatError(f"{source}: no class folders with images under {split}/")
        if sorted(classes) != names:
            raise DataFormatError(
                f"{source}: class folders differ between splits: {splits[0]} has {names}, "
                f"{split} has {sorted(classes)}"
            )
        empty = [c for c in names if not classes[c]]
        if empty:
            raise DataFormatError(f"{source}: class folders without images in {split}/: {empty}")
    return tuple(names)


def _decode_split(
    classes: dict[str, dict[str, bytes | Path]],
    names: tuple[str, ...],
    mode: str,
    size: tuple[int, int] | None,
    where: str,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    items = [(k, f, classes[c][f]) for k, c in enumerate(names) for f in sorted(classes[c])]
    x: np.ndarray | None = None
    for i, (k, fname, src) in enumerate(items):
        if progress is not None and i % 1000 == 0:
            progress(where, i, len(items))
        label = f"{where}/{names[k]}/{fname}"
        img = decode_image(src, mode, size, label)
        if x is None:
            x = np.empty((len(items), *img.shape), dtype=np.uint8)
        elif img.shape != x.shape[1:]:
            raise DataFormatError(
                f"{label} has shape {img.shape}, the first image {x.shape[1:]}; pass "
                f"image_size=(height, width) to resize all images to one size"
            )
        x[i] = img
    assert x is not None
    if progress is not None:
        progress(where, len(items), len(items))
    y = np.fromiter((k for k, _, _ in items), dtype=np.int64, count=len(items))
    return x, y


def read_image_folder(
    path: str | os.PathLike[str],
    *,
    splits: Sequence[str] = ("train", "test"),
    mode: str = "RGB",
    image_size: int | tuple[int, int] | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> DataSplits:
    """Read ``path/{train,test}/<class>/<image>`` (a directory or a tar archive) into memory.

    Args:
        path: the root directory, or a ``.tar``/``.tar.gz``/… archive with that layout.
        splits: the folder names of the training and the test split.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).
        image_size: ``(height, width)`` (or one int) to resize every image to; by default all
            images must already have one size.
        cache: for archives, reuse / write decoded arrays in the cache directory.
        cache_dir: the cache directory (default ``$ABSGD_CACHE_DIR`` or ``~/.cache/absgd``).
        progress: called as ``progress(split, done, total)`` while images are decoded (every
            1000 images and at the end of a split); the library itself prints nothing.

    Returns:
        :class:`DataSplits` with ``uint8 (N, H, W, C)`` images.
    """
    src = Path(path).expanduser()
    splits = tuple(splits)
    if len(splits) != 2 or len(set(splits)) != 2:
        raise ValueError(f"splits must name two different folders (train, test), got {splits}")
    mode = check_mode(mode)
    size = normalize_size(image_size)
    if not src.exists():
        raise FileNotFoundError(
            f"{src} not found: expected a directory or tar archive with "
            f"{splits[0]}/<class>/<image> and {splits[1]}/<class>/<image>"
        )
    archive = src.is_file()
    if archive and not _is_archive(src):
        raise ValueError(f"{src} is neither a directory nor a tar archive {ARCHIVE_SUFFIXES}")

    entry = None
    if archive and cache:
        options = {"v": _CACHE_VERSION, "splits": splits, "mode": mode, "size": size}
        entry = cache_entry(cache_dir, "folder", src, options)
        cached = load_arrays(entry)
        keys = {"class_names", *(f"{s}_{a}" for s in splits for a in "xy")}
        if cached is not None and keys <= set(cached):
            names = tuple(str(n) for n in cached["class_names"])
            parts = [ArrayDataset(cached[f"{s}_x"], cached[f"{s}_y"], names) for s in splits]
            return DataSplits(train=parts[0], test=parts[1])

    tree = _scan_archive(src, splits) if archive else _scan_directory(src, splits)
    names = _class_names(tree, src, splits)
    arrays = {s: _decode_split(tree[s], names, mode, size, f"{src}:{s}", progress) for s in splits}
    del tree
    if entry is not None:
        payload = {f"{s}_{a}": v for s in splits for a, v in zip("xy", arrays[s], strict=True)}
        payload["class_names"] = np.array(names)
        try:
            save_arrays(entry, payload)
        except OSError as exc:
            warnings.warn(f"could not write the cache {entry}: {exc}", stacklevel=2)
    parts = [ArrayDataset(*arrays[s], names) for s in splits]
    return DataSplits(train=parts[0], test=parts[1])
