"""Exceptions raised by the data readers.

Both content errors derive from :class:`ValueError`, so ``except ValueError`` still works;
download failures derive from :class:`OSError`, like other I/O failures.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "DataFormatError", "DownloadError"]


class DataFormatError(ValueError):
    """A data file is truncated, corrupt or not in the expected format."""


class ChecksumError(DataFormatError):
    """A file's MD5 digest differs from the expected one (corrupt or incomplete file)."""


class DownloadError(OSError):
    """A download failed (no network, HTTP error, interrupted transfer)."""
