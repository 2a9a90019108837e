"""Cache location, keys and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from absgd.data.cache import atomic_write, cache_entry, default_cache_dir, load_arrays, save_arrays


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ABSGD_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ABSGD_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "absgd"


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out" / "x.bin"
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write(b"partial")
        raise RuntimeError("interrupted")
    assert list((tmp_path / "out").iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write(b"new")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"  # the previous version survives


def test_entry_key_follows_size_mtime_and_options(tmp_path: Path) -> None:
    src = tmp_path / "a.tar.gz"
    src.write_bytes(b"x")
    first = cache_entry(tmp_path / "c", "folder", src, {"mode": "RGB"})
    assert first == cache_entry(tmp_path / "c", "folder", src, {"mode": "RGB"})
    assert first.parent == tmp_path / "c" and first.name.startswith("folder-a-")
    assert first != cache_entry(tmp_path / "c", "folder", src, {"mode": "L"})
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert first != cache_entry(tmp_path / "c", "folder", src, {"mode": "RGB"})


def test_arrays_roundtrip_and_garbage(tmp_path: Path) -> None:
    arrays = {"x": np.arange(6, dtype=np.uint8).reshape(2, 3), "names": np.array(["a", "bc"])}
    save_arrays(tmp_path / "e.npz", arrays)
    back = load_arrays(tmp_path / "e.npz")
    assert back is not None and back["names"].tolist() == ["a", "bc"]
    np.testing.assert_array_equal(back["x"], arrays["x"])
    (tmp_path / "g.npz").write_bytes(b"not a zip")
    assert load_arrays(tmp_path / "g.npz") is None
    assert load_arrays(tmp_path / "missing.npz") is None
