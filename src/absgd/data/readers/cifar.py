"""CIFAR-10 / CIFAR-100 from the canonical python archives (Krizhevsky, 2009).

``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5``,
``test_batch`` and ``batches.meta``; ``cifar-100-python.tar.gz`` holds
``cifar-100-python/train``, ``test`` and ``meta``. Each is a pickled dict with ``data``
(``uint8 (N, 3072)``, channel-major rows) and ``labels`` / ``fine_labels`` (+ ``coarse_labels``).
The training set is the batches concatenated in order, i.e. the canonical order on which the
long-tailed selection (:func:`absgd.data.select_long_tailed`) is defined.

The pickles are read with an unpickler that only accepts NumPy arrays and plain containers,
so a tampered archive cannot run code. The archive is read as one stream.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from absgd.data.cache import default_cache_dir
from absgd.data.dataset import ArrayDataset, DataSplits
from absgd.data.download import download_url, verify_md5
from absgd.data.errors import DataFormatError

__all__ = ["CIFAR_ARCHIVES", "CifarArchive", "load_cifar", "read_cifar_archive"]


@dataclass(frozen=True)
class CifarArchive:
    """Where a canonical CIFAR archive comes from and what it contains."""

    filename: str
    url: str
    md5: str
    folder: str
    train_members: tuple[str, ...]
    test_member: str
    meta_member: str


CIFAR_ARCHIVES: dict[str, CifarArchive] = {
    "cifar10": CifarArchive(
        filename="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_member="test_batch",
        meta_member="batches.meta",
    ),
    "cifar100": CifarArchive(
        filename="cifar-100-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_members=("train",),
        test_member="test",
        meta_member="meta",
    ),
}

_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): __import__("codecs").encode,
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(_mod, "scalar")] = _SCALAR


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a CIFAR pickle"
            ) from None


def _unpickle(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:
        raise DataFormatError(f"{where} is not a readable CIFAR pickle: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where} holds a {type(obj).__name__}, expected a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _names(values: list[Any]) -> tuple[str, ...]:
    return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values)


def _images(batch: dict[str, Any], where: str) -> np.ndarray:
    data = np.asarray(batch.get("data"))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataFormatError(f"{where}: 'data' must be uint8 (N, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _detect(path: Path) -> CifarArchive:
    name = path.name.lower()
    for spec in CIFAR_ARCHIVES.values():
        if name.startswith(spec.filename.split(".")[0]):
            return spec
    raise ValueError(
        f"cannot tell CIFAR-10 from CIFAR-100 by the file name {path.name!r}; "
        f"pass name='cifar10' or name='cifar100'"
    )


def read_cifar_archive(
    path: str | os.PathLike[str], *, name: str | None = None, md5: str | None = None
) -> DataSplits:
    """Read a canonical CIFAR python archive (``.tar.gz``) into memory.

    Args:
        path: the archive.
        name: ``"cifar10"`` or ``"cifar100"``; by default from the file name.
        md5: expected MD5 of the archive, checked before reading when given.

    Returns:
        :class:`DataSplits` with ``uint8 (N, 32, 32, 3)`` images; for CIFAR-100 the fine labels,
        with each class's superclass in ``class_groups`` and their names in ``group_names``.

    Raises:
        ChecksumError: ``md5`` differs. DataFormatError: truncated or malformed archive.
    """
    src = Path(path).expanduser()
    if name is not None and name not in CIFAR_ARCHIVES:
        raise ValueError(f"name must be one of {sorted(CIFAR_ARCHIVES)}, got {name!r}")
    spec = CIFAR_ARCHIVES[name] if name is not None else _detect(src)
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found (download it from {spec.url})")
    if md5 is not None:
        verify_md5(src, md5, source=spec.url)
    wanted = {*spec.train_members, spec.test_member, spec.meta_member}
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(src, mode="r|*") as archive:
            for member in archive:
                parts = PurePosixPath(member.name).parts
                ours = len(parts) >= 2 and parts[-2] == spec.folder and parts[-1] in wanted
                if member.isfile() and ours:
                    fh = archive.extractfile(member)
                    blobs[parts[-1]] = fh.read() if fh is not None else b""
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise DataFormatError(
            f"{src} is truncated or not a readable tar archive ({exc}); delete it and obtain "
            f"{spec.filename} again from {spec.url}"
        ) from exc
    missing = sorted(wanted - set(blobs))
    if missing:
        raise DataFormatError(
            f"{src} lacks {[f'{spec.folder}/{m}' for m in missing]}; is it {spec.filename}?"
        )

    batches = {m: _unpickle(blobs.pop(m), f"{src}:{spec.folder}/{m}") for m in sorted(wanted)}
    meta = batches[spec.meta_member]
    fine = "labels" if "labels" in batches[spec.test_member] else "fine_labels"
    names = _names(meta["label_names" if fine == "labels" else "fine_label_names"])

    def split(members: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        parts = [batches[m] for m in members]
        where = f"{src}:{spec.folder}"
        x = np.concatenate([_images(b, where) for b in parts])
        y = np.concatenate([np.asarray(b[fine], dtype=np.int64) for b in parts])
        coarse = None
        if "coarse_labels" in parts[0]:
            coarse = np.concatenate([np.asarray(b["coarse_labels"], np.int64) for b in parts])
        if len(x) != len(y):
            raise DataFormatError(f"{where}: {len(x)} images but {len(y)} labels")
        return np.ascontiguousarray(x), y, coarse

    x_tr, y_tr, c_tr = split(spec.train_members)
    x_te, y_te, _ = split((spec.test_member,))
    groups = group_names = None
    if c_tr is not None:
        pairs = np.unique(np.stack([y_tr, c_tr], axis=1), axis=0)
        if len(pairs) != len(np.unique(y_tr)):
            raise DataFormatError(f"{src}: a fine class has more than one coarse label")
        lookup = dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))
        groups = tuple(lookup.get(c, 0) for c in range(len(names)))
        group_names = _names(meta.get("coarse_label_names", []))
    train = ArrayDataset(x_tr, y_tr, names, groups, group_names or None)
    test = ArrayDataset(x_te, y_te, names, groups, group_names or None)
    return DataSplits(train=train, test=test)


def load_cifar(
    name: str = "cifar10",
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> DataSplits:
    """CIFAR-10 or CIFAR-100 from ``root`` (a directory holding the canonical archive, or the
    archive itself), optionally downloading it there first.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: directory or archive path; default the cache directory
            (``$ABSGD_CACHE_DIR`` or ``~/.cache/absgd``).
        download: when the archive is missing, download it from the canonical URL into
            ``root`` (MD5-verified, atomic). Never done unless asked.
        verify: check the archive's MD5 against the canonical one before reading.

    Raises:
        FileNotFoundError: the archive is missing and ``download`` is false; the message says
            which file to place where. DownloadError: the download failed (e.g. offline).
        ChecksumError: the archive is not byte-identical to the canonical one.

    >>> load_cifar("cifar10", "/nonexistent")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /nonexistent/cifar-10-python.tar.gz not found. Place the canonical ...
    """
    if name not in CIFAR_ARCHIVES:
        raise ValueError(f"name must be one of {sorted(CIFAR_ARCHIVES)}, got {name!r}")
    spec = CIFAR_ARCHIVES[name]
    base = Path(root).expanduser() if root is not None else default_cache_dir()
    path = base if base.is_file() else base / spec.filename
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"{path} not found. Place the canonical {spec.filename} (from {spec.url}, MD5 "
                f"{spec.md5}) there, or let it be downloaded: with the absgd command "
                "--set data.root=DIR (the file or its folder) or --set "
                "data.options.download=true; from Python root=DIR or download=True"
            )
        download_url(spec.url, path, spec.md5)
    return read_cifar_archive(path, name=name, md5=spec.md5 if verify else None)
