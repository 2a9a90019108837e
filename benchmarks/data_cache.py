"""Decoded-array cache: reading an image archive the first time against reading it again.

:func:`absgd.data.read_image_folder` decodes every image of a ``train|test/<class>/<image>``
archive once and writes the ``uint8`` arrays to its cache (an uncompressed ``.npz``); later
reads load that file. This script times both in a fresh temporary cache directory (never the
user's cache), ``--repeats`` times each, and reports the medians and their ratio. The tests
check that the second read comes from the cache and equals the first; how much faster it is
is measured here, not asserted.

    python benchmarks/data_cache.py --data ../shared/data/cifar10-jpeg/cifar10_jpeg_q75.tar.gz
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from absgd.data import read_image_folder


def _timed_read(archive: Path, cache_dir: Path) -> tuple[float, Any]:
    start = time.perf_counter()
    splits = read_image_folder(archive, cache_dir=cache_dir)
    return time.perf_counter() - start, splits


def run(archive: Path, repeats: int) -> dict[str, Any]:
    decode, cached = [], []
    images = 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="absgd-cache-bench-") as tmp:
            first_s, first = _timed_read(archive, Path(tmp))
            second_s, second = _timed_read(archive, Path(tmp))
            if not np.array_equal(first.train.x, second.train.x):
                raise RuntimeError("the cached read differs from the decoded one")
            images = len(first.train) + len(first.test)
            decode.append(first_s)
            cached.append(second_s)
    decode_s, cached_s = statistics.median(decode), statistics.median(cached)
    return {
        "archive": str(archive),
        "images": images,
        "repeats": repeats,
        "decode_s": decode_s,
        "cached_s": cached_s,
        "speedup": decode_s / cached_s if cached_s > 0 else float("inf"),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="an image-folder tar archive")
    p.add_argument("--repeats", type=int, default=3, help="fresh caches to time (median)")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    result = run(args.data, args.repeats)
    print("| archive | images | first read (decode) s | cached read s | speed-up |")
    print("|---|---|---|---|---|")
    print(
        f"| {args.data.name} | {result['images']} | {result['decode_s']:.2f} | "
        f"{result['cached_s']:.3f} | {result['speedup']:.1f}x |"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
