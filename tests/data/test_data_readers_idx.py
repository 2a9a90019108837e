"""IDX files written by the test's own encoder."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from absgd.data import DataFormatError, load_fashion_mnist, load_idx_dataset, read_idx

CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, CODES[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, arr: np.ndarray, compress: bool) -> None:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_roundtrip(tmp_path: Path, compress: bool, dtype) -> None:
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype is np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write(tmp_path / "a.idx", arr, compress)
    out = read_idx(tmp_path / "a.idx")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_bad_idx_files(tmp_path: Path) -> None:
    good = idx_bytes(np.zeros((3, 2, 2), np.uint8))
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(DataFormatError, match=r"needs 12 data bytes, found 11 \(truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(good + b"\0")
    with pytest.raises(DataFormatError, match="trailing bytes"):
        read_idx(tmp_path / "long")
    (tmp_path / "magic").write_bytes(b"\x01\x02\x08\x01" + good[4:])
    with pytest.raises(DataFormatError, match="not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "gz").write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(DataFormatError, match="truncated or corrupt gzip"):
        read_idx(tmp_path / "gz")


def make_mnist_dir(root: Path, compress: bool, dotted: bool = False) -> dict:
    rng = np.random.default_rng(0)
    root.mkdir()
    out = {}
    for prefix, n in (("train", 12), ("t10k", 5)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        sep = "." if dotted else "-"
        suffix = ".gz" if compress else ""
        write(root / f"{prefix}-images{sep}idx3-ubyte{suffix}", x, compress)
        write(root / f"{prefix}-labels{sep}idx1-ubyte{suffix}", y, compress)
        out[prefix] = (x, y)
    return out


@pytest.mark.parametrize(("compress", "dotted"), [(True, False), (False, True)])
def test_mnist_style_directory(tmp_path: Path, compress: bool, dotted: bool) -> None:
    exp = make_mnist_dir(tmp_path / "fm", compress, dotted)
    data = load_fashion_mnist(tmp_path / "fm")
    assert data.train.x.shape == (12, 28, 28, 1) and data.train.x.dtype == np.uint8
    np.testing.assert_array_equal(data.train.x[..., 0], exp["train"][0])
    np.testing.assert_array_equal(data.train.y, exp["train"][1])
    np.testing.assert_array_equal(data.test.x[..., 0], exp["t10k"][0])
    assert data.class_names[0] == "T-shirt/top" and data.num_classes == 10


def test_missing_idx_file_names_path_and_source(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load_fashion_mnist(tmp_path / "empty")
    msg = str(err.value)
    assert str(tmp_path / "empty" / "train-images-idx3-ubyte") in msg
    assert "zalandoresearch/fashion-mnist" in msg


def test_labels_outside_class_names(tmp_path: Path) -> None:
    make_mnist_dir(tmp_path / "m", compress=False)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        load_idx_dataset(tmp_path / "m", ["a", "b", "c"])
