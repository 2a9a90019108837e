"""Checksummed downloads.

A download streams into a temporary file in the destination directory, checks the MD5 and only
then renames the file into place (``os.replace``): an interrupted transfer or a wrong checksum
never leaves a file under the final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from absgd.data.errors import ChecksumError, DownloadError
from absgd.fileio import atomic_write

__all__ = ["download_url", "md5_file", "verify_md5"]


def md5_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def verify_md5(path: str | os.PathLike[str], expected: str, *, source: str | None = None) -> None:
    """Raise :class:`ChecksumError` naming the file and both digests if they differ."""
    got = md5_file(path)
    if got != expected.lower():
        where = f" Obtain it again from {source}." if source else ""
        raise ChecksumError(
            f"{path}: MD5 is {got}, expected {expected.lower()}; the file is corrupt, truncated "
            f"or not the canonical one.{where}"
        )


def _open_url(url: str, timeout: float) -> IO[bytes]:
    """``urlopen`` (a seam the tests replace to simulate a machine without network)."""
    return urllib.request.urlopen(url, timeout=timeout)


def download_url(
    url: str, dest: str | os.PathLike[str], md5: str | None = None, *, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``md5`` when given.

    Raises:
        DownloadError: the transfer failed (no network, HTTP error, truncated body).
        ChecksumError: the downloaded bytes have another MD5; nothing is left at ``dest``.
    """
    dest = Path(dest)
    try:
        with _open_url(url, timeout) as response, atomic_write(dest) as out:
            expected_len = getattr(response, "headers", {}).get("Content-Length")
            digest = hashlib.md5(usedforsecurity=False)
            received = 0
            while block := response.read(1 << 20):
                digest.update(block)
                out.write(block)
                received += len(block)
            if expected_len is not None and received != int(expected_len):
                raise DownloadError(
                    f"download of {url} ended after {received} of {expected_len} bytes"
                )
            if md5 is not None and digest.hexdigest() != md5.lower():
                raise ChecksumError(
                    f"download of {url}: MD5 is {digest.hexdigest()}, expected {md5.lower()}; "
                    f"nothing was written to {dest}"
                )
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        TimeoutError,
        ConnectionError,
    ) as exc:
        raise DownloadError(
            f"could not download {url} ({exc}). Without network, fetch it on another machine "
            f"and place it at {dest}"
        ) from exc
    return dest
