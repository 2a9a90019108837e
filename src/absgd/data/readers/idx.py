"""IDX files (MNIST, Fashion-MNIST, KMNIST …), gzip-compressed or raw.

Format (LeCun et al.): two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B``
int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions ``d``, then
``d`` big-endian ``uint32`` sizes and the big-endian data in C order.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from absgd.data.dataset import ArrayDataset, DataSplits
from absgd.data.errors import DataFormatError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_mnist",
    "read_idx",
]

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FASHION_URL = "https://github.com/zalandoresearch/fashion-mnist (data/fashion/*.gz)"
_MNIST_URL = "http://yann.lecun.com/exdb/mnist/ (or a mirror)"


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (``.gz`` detected by its magic bytes) into a native-endian array.

    Raises:
        DataFormatError: bad magic, unknown type code, or a truncated / oversized payload.
    """
    src = Path(path)
    raw = src.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DataFormatError(f"{src} is a truncated or corrupt gzip file ({exc})") from exc
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _DTYPES:
        raise DataFormatError(
            f"{src} is not an IDX file (header {raw[:4].hex()}, expected 0000 <type> <ndim> "
            f"with type in {[hex(k) for k in _DTYPES]})"
        )
    dtype = np.dtype(_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{src}: header truncated ({len(raw)} bytes)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        raise DataFormatError(
            f"{src}: shape {shape} needs {expected} data bytes, found {found} "
            f"({'truncated' if found < expected else 'trailing bytes'})"
        )
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _find(root: Path, stem: str, hint: str) -> Path:
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"{root / stem}[.gz] not found. Download the IDX files (train-images-idx3-ubyte.gz, "
        f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) "
        f"from {hint} and put them in {root}"
    )


def load_idx_dataset(
    root: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    *,
    prefixes: tuple[str, str] = ("train", "t10k"),
    source_hint: str = "the dataset's website",
) -> DataSplits:
    """An MNIST-style directory: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

    Images become ``uint8 (N, H, W, 1)``; ``class_names`` defaults to ``"0" … str(max label)``.
    """
    base = Path(root).expanduser()
    loaded = []
    for prefix in prefixes:
        x = read_idx(_find(base, f"{prefix}-images-idx3-ubyte", source_hint))
        y = read_idx(_find(base, f"{prefix}-labels-idx1-ubyte", source_hint))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataFormatError(
                f"{base}: {prefix} images {x.shape} and labels {y.shape} do not match "
                f"(expected (N, H, W) and (N,))"
            )
        loaded.append((x.astype(np.uint8, copy=False)[..., None], y.astype(np.int64)))
    if class_names is None:
        top = max(int(y.max()) for _, y in loaded if len(y))
        class_names = [str(i) for i in range(top + 1)]
    train, test = (ArrayDataset(x, y, tuple(class_names)) for x, y in loaded)
    return DataSplits(train=train, test=test)


def load_fashion_mnist(root: str | os.PathLike[str]) -> DataSplits:
    """Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 60,000 / 10,000 28×28 grayscale images."""
    return load_idx_dataset(root, FASHION_MNIST_CLASSES, source_hint=_FASHION_URL)


def load_mnist(root: str | os.PathLike[str]) -> DataSplits:
    """MNIST (LeCun et al. 1998): 60,000 / 10,000 28×28 grayscale digits."""
    return load_idx_dataset(root, [str(i) for i in range(10)], source_hint=_MNIST_URL)
