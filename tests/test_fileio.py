"""Atomic writes: whole files only, with the permissions the umask gives ordinary files."""

from __future__ import annotations

import os
import stat

import pytest

from absgd.fileio import atomic_write, write_text


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "final.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "final.json").stat().st_mode) == mode


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "a.txt") as fh:
        fh.write(b"half")
        raise RuntimeError("crash")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
