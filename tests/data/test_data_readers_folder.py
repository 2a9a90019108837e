"""Image folders and tar archives with known pixels: order, caching, bad input."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

import absgd.data.readers.folder as folder_mod
from absgd.data import DataFormatError, read_image_folder

pytest.importorskip("PIL")

from data_helpers import array_png, solid_png

CLASSES = ["zebra", "ant", "mole"]  # created in this (unsorted) order


def layout() -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{split: {class: {file name: pixels}}} with distinct random 5x4 RGB images."""
    rng = np.random.default_rng(0)
    tree: dict = {}
    for split, n in (("train", 3), ("test", 2)):
        tree[split] = {}
        for cls in CLASSES:
            names = [f"{i:02d}.png" for i in rng.permutation(n)]  # file names in random order
            tree[split][cls] = {f: rng.integers(0, 256, (5, 4, 3), dtype=np.uint8) for f in names}
    return tree


def expected(tree: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for k, cls in enumerate(sorted(CLASSES)):
        for fname in sorted(tree[split][cls]):
            xs.append(tree[split][cls][fname])
            ys.append(k)
    return np.stack(xs), np.array(ys)


def write_dir(root: Path, tree: dict) -> None:
    for split, classes in tree.items():
        for cls, files in classes.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for fname, pixels in files.items():
                (d / fname).write_bytes(array_png(pixels))
    (root / "README.txt").write_text("not an image")
    (root / "train" / "ant" / "notes.txt").write_text("ignored")


def write_tar(path: Path, tree: dict, prefix: str = "", mode: str = "w:gz") -> None:
    entries = [
        (f"{prefix}{split}/{cls}/{fname}", array_png(px))
        for split, classes in tree.items()
        for cls, files in classes.items()
        for fname, px in files.items()
    ]
    order = np.random.default_rng(1).permutation(len(entries))  # archive order is irrelevant
    with tarfile.open(path, mode) as tar:
        readme = b"hello"
        info = tarfile.TarInfo(f"{prefix}README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
        for i in order:
            name, data = entries[i]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def check(data, tree: dict) -> None:
    assert data.class_names == tuple(sorted(CLASSES))
    for split, part in (("train", data.train), ("test", data.test)):
        x, y = expected(tree, split)
        assert part.x.dtype == np.uint8 and part.x.shape == x.shape
        np.testing.assert_array_equal(part.x, x)
        np.testing.assert_array_equal(part.y, y)


def test_directory(tmp_path: Path) -> None:
    tree = layout()
    write_dir(tmp_path / "imgs", tree)
    check(read_image_folder(tmp_path / "imgs"), tree)


@pytest.mark.parametrize(
    ("suffix", "mode", "prefix"), [(".tar.gz", "w:gz", ""), (".tar", "w", "top/")]
)
def test_archive_and_cache(
    tmp_path: Path, monkeypatch, suffix: str, mode: str, prefix: str
) -> None:
    tree = layout()
    src_dir = tmp_path / "shared"
    src_dir.mkdir()
    archive = src_dir / f"imgs{suffix}"
    write_tar(archive, tree, prefix, mode)
    cache = tmp_path / "cache"
    check(read_image_folder(archive, cache_dir=cache), tree)
    assert sorted(p.name for p in src_dir.iterdir()) == [archive.name]  # nothing written beside it
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].name.endswith(".cache.npz")

    def no_scan(*args, **kwargs):
        raise AssertionError("the archive was decoded again instead of read from the cache")

    monkeypatch.setattr(folder_mod, "_scan_archive", no_scan)
    check(read_image_folder(archive, cache_dir=cache), tree)
    # touching the archive (new mtime) invalidates the entry
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        read_image_folder(archive, cache_dir=cache)


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch) -> None:
    archive = tmp_path / "imgs.tar.gz"
    write_tar(archive, layout())
    monkeypatch.setenv("ABSGD_CACHE_DIR", str(tmp_path / "envcache"))
    read_image_folder(archive)
    assert len(list((tmp_path / "envcache").glob("folder-imgs-*.cache.npz"))) == 1


def test_damaged_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    tree = layout()
    archive = tmp_path / "imgs.tar.gz"
    write_tar(archive, tree)
    cache = tmp_path / "cache"
    read_image_folder(archive, cache_dir=cache)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"garbage")
    check(read_image_folder(archive, cache_dir=cache), tree)
    assert entry.stat().st_size > 100


def test_truncated_archive_leaves_no_cache(tmp_path: Path) -> None:
    archive = tmp_path / "imgs.tar.gz"
    write_tar(archive, layout())
    archive.write_bytes(archive.read_bytes()[:-200])
    cache = tmp_path / "cache"
    with pytest.raises(DataFormatError, match=r"imgs\.tar\.gz is truncated"):
        read_image_folder(archive, cache_dir=cache)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_sizes_modes_and_layout_errors(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for split in ("train", "test"):
        for cls, size in (("a", (4, 5)), ("b", (6, 3))):
            d = root / split / cls
            d.mkdir(parents=True)
            (d / "0.png").write_bytes(solid_png((10, 20, 30), size))
    with pytest.raises(DataFormatError, match=r"b/0\.png has shape \(3, 6, 3\).*image_size"):
        read_image_folder(root)
    data = read_image_folder(root, image_size=(7, 8), mode="L")
    assert data.train.x.shape == (2, 7, 8, 1)
    gray = round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)
    assert np.all(np.abs(data.train.x.astype(int) - gray) <= 1)

    (root / "test" / "c").mkdir()
    (root / "test" / "c" / "0.png").write_bytes(solid_png(0))
    with pytest.raises(DataFormatError, match=r"class folders differ.*\['a', 'b', 'c'\]"):
        read_image_folder(root, image_size=4)
    (root / "train" / "c").mkdir()
    with pytest.raises(DataFormatError, match=r"without images in train/: \['c'\]"):
        read_image_folder(root, image_size=4)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_image_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="val"):
        read_image_folder(root, splits=("train", "val"))
    (tmp_path / "file.zip").write_bytes(b"x")
    with pytest.raises(ValueError, match="neither a directory nor a tar archive"):
        read_image_folder(tmp_path / "file.zip")


def test_progress_reports_every_split_to_completion(tmp_path):
    tree = layout()
    write_dir(tmp_path / "root", tree)
    calls = []
    read_image_folder(tmp_path / "root", progress=lambda *args: calls.append(args))
    finished = {what.rsplit(":", 1)[-1]: done for what, done, total in calls if done == total}
    assert finished == {"train": 9, "test": 6}
    assert all(0 <= done <= total for _, done, total in calls)
