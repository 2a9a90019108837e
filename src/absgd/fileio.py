"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file under its name."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "write_json", "write_text"]


@contextlib.contextmanager
def atomic_write(dest: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``dest`` for binary writing; on success rename it to
    ``dest`` (after ``fsync``), on any exception delete it. ``dest``'s directory is created.

    ``os.replace`` is atomic on POSIX and Windows, so readers see the old file or the new one.
    The file gets the permissions a plain ``open(dest, "wb")`` would give it (0666 less the
    umask), not the private 0600 of a temporary file.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(d / "a.bin") as f:
    ...     _ = f.write(b"hello")
    >>> (d / "a.bin").read_bytes(), sorted(p.name for p in d.iterdir())
    (b'hello', ['a.bin'])
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600); give it the mode open() would, so that
        # teammates can read run folders and caches as the umask allows.
        with contextlib.suppress(OSError, AttributeError):
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically."""
    with atomic_write(dest) as fh:
        fh.write(text.encode("utf-8"))


def write_json(dest: str | os.PathLike[str], value: Any) -> None:
    """Write ``value`` as indented JSON to ``dest`` atomically (non-finite floats as null)."""
    write_text(dest, json.dumps(_finite(value), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
