"""Integration tests on the real data in ../shared/data (skipped cleanly when absent).

The first CIFAR-10 JPEG load decodes 60,000 JPEGs (several seconds); it uses a temporary
cache directory, never the user's cache or the shared folder. Timings are not asserted here:
benchmarks/data_cache.py measures the cache's speed-up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from absgd.data import load_fashion_mnist, make_long_tailed, read_image_folder
from absgd.data.readers import folder

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _no_decoding(*args: object, **kwargs: object) -> None:
    raise AssertionError("the archive was decoded again instead of read from the cache")


def test_cifar10_jpeg_archive_and_cache(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("PIL")
    archive = shared_data / "cifar10-jpeg" / "cifar10_jpeg_q75.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not present")
    before = sorted(p.name for p in archive.parent.iterdir())
    first = read_image_folder(archive, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.cache.npz"))) == 1
    # The second read must come from the cache: decoding again is an error here. (How much
    # faster that is is measured by benchmarks/data_cache.py, not asserted.)
    monkeypatch.setattr(folder, "_decode_split", _no_decoding)
    second = read_image_folder(archive, cache_dir=tmp_path)

    assert first.train.x.shape == (50_000, 32, 32, 3) and first.test.x.shape == (10_000, 32, 32, 3)
    assert first.train.x.dtype == np.uint8
    assert first.train.class_counts().tolist() == [5000] * 10
    assert first.test.class_counts().tolist() == [1000] * 10
    assert first.class_names == CIFAR10
    np.testing.assert_array_equal(first.train.x, second.train.x)
    np.testing.assert_array_equal(first.train.y, second.train.y)
    np.testing.assert_array_equal(first.test.x, second.test.x)
    np.testing.assert_array_equal(first.test.y, second.test.y)
    assert second.class_names == CIFAR10
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
