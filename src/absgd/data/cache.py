"""The decoded-array cache (entries written atomically with absgd.fileio).

Decoding an image archive is slow (≈10 s for CIFAR-10 as JPEGs), so readers store the decoded
``uint8`` arrays once as an uncompressed ``.npz`` in the cache directory and reuse them. The
cache directory is ``cache_dir`` when given, else ``$ABSGD_CACHE_DIR``, else
``~/.cache/absgd``. A cache entry's name holds a hash of the source file's absolute path, size
and modification time and of the reader's options, so replacing or touching the source
invalidates it. Entries are written to a temporary file in the same directory and renamed
into place with ``os.replace`` (atomic on POSIX and Windows), so a crash never leaves a
half-written entry under the final name; an unreadable entry is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from absgd.fileio import atomic_write

__all__ = [
    "CACHE_ENV",
    "cache_entry",
    "default_cache_dir",
    "load_arrays",
    "save_arrays",
]

CACHE_ENV = "ABSGD_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$ABSGD_CACHE_DIR`` if set (and non-empty), else ``~/.cache/absgd``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "absgd"


def cache_entry(
    cache_dir: str | os.PathLike[str] | None,
    kind: str,
    source: str | os.PathLike[str],
    options: Mapping[str, object],
) -> Path:
    """Path of the cache entry for ``source`` decoded with ``options`` (not created).

    The key hashes ``source``'s absolute path, size and ``st_mtime_ns`` plus ``options``.
    """
    src = Path(source).resolve()
    st = src.stat()
    key = json.dumps(
        {"path": str(src), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "options": options},
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    stem = src.name.split(".")[0] or "data"
    return root / f"{kind}-{stem}-{digest}.cache.npz"


def save_arrays(dest: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` atomically as an uncompressed ``.npz`` (no pickled objects)."""
    with atomic_write(dest) as fh:
        named: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        np.savez(fh, **named)


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` written by :func:`save_arrays`; ``None`` when the file is
    missing or unreadable (a damaged entry is then rebuilt by the caller)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
