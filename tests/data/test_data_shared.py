"""Integration tests on the real data in ../shared/data (skipped cleanly when absent).

The first CIFAR-10 JPEG load decodes 60,000 JPEGs (several seconds); it uses a temporary
cache directory, never the user's cache or the shared folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from absgd.data import load_fashion_mnist, make_long_tailed, read_image_folder

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_cifar10_jpeg_archive_and_cache(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    archive = shared_data / "cifar10-jpeg" / "cifar10_jpeg_q75.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not present")
    before = sorted(p.name for p in archive.parent.iterdir())
    start = time.perf_counter()
    first = read_image_folder(archive, cache_dir=tmp_path)
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    second = read_image_folder(archive, cache_dir=tmp_path)
    cached_s = time.perf_counter() - start

    assert first.train.x.shape == (50_000, 32, 32, 3) and first.test.x.shape == (10_000, 32, 32, 3)
    assert first.train.x.dtype == np.uint8
    assert first.train.class_counts().tolist() == [5000] * 10
    assert first.test.class_counts().tolist() == [1000] * 10
    assert first.class_names == CIFAR10
    np.testing.assert_array_equal(first.train.x, second.train.x)
    np.testing.assert_array_equal(first.test.y, second.test.y)
    assert cached_s < decode_s / 10, f"decode {decode_s:.2f} s, cached {cached_s:.2f} s"
    assert sorted(p.name for p in archive.parent.iterdir()) == before

    lt = make_long_tailed(first.train, 100)
    assert lt.class_counts().tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_fashion_mnist(shared_data: Path) -> None:
    root = shared_data / "fashion-mnist"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    data = load_fashion_mnist(root)
    assert data.train.x.shape == (60_000, 28, 28, 1) and data.test.x.shape == (10_000, 28, 28, 1)
    assert data.train.class_counts().tolist() == [6000] * 10
    assert data.test.class_counts().tolist() == [1000] * 10
