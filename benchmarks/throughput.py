"""Training throughput: the ``absgd train`` loop against a conventional per-image pipeline.

Both train ResNet-32 with momentum SGD on the same long-tailed CIFAR-10 subset (exponential
profile, ratio 100: 12,406 images), at the same batch size, for the same number of steps:

- ``absgd``: :func:`absgd.training.train` on the config ``cpu/cifar10_lt_exp100_short_ce``. The
  archive is decoded once into a cache; batches are gathered from in-memory ``uint8`` tensors
  and augmented (random crop with padding 4, flip, normalisation) as whole batches.
- ``per-image``: what research scripts usually do — a ``Dataset`` that decodes each JPEG with
  Pillow and augments it image by image (pad + random crop, flip, to tensor, normalise), a
  ``DataLoader`` with worker processes, then the same model, optimiser and cross-entropy. The
  JPEG bytes are held in memory (no disk reads: generous to this pipeline).
- ``per-image, channels-last``: the same with the model and batches in the channels-last
  layout that ``absgd train`` uses for convolutional models; it separates the gain of the
  data pipeline from the gain of the layout.

Images per second are measured between the end of ``--warmup`` steps and the last step; the
pipelines alternate ``--repeats`` times (A B C A B C ...) and medians are reported.

    python benchmarks/throughput.py --data ../shared/data/cifar10-jpeg/cifar10_jpeg_q75.tar.gz
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from absgd.cli import SHIPPED_CONFIGS
from absgd.data import CIFAR10_MEAN, CIFAR10_STD, long_tail_counts, select_long_tailed
from absgd.models import build_model, to_channels_last
from absgd.optim import ABSGD
from absgd.training import Reporter, RunInterrupted, train
from absgd.training.config import load_config

CONFIG = SHIPPED_CONFIGS / "cpu" / "cifar10_lt_exp100_short_ce.yaml"


class _StepClock(Reporter):
    def __init__(self) -> None:
        self.times: list[float] = []

    def step(self) -> None:
        self.times.append(time.perf_counter())


def _rate(times: list[float], warmup: int, batch: int) -> float:
    timed = times[warmup:]
    if len(timed) < 2:
        raise ValueError("need at least two timed steps; raise --steps")
    return (len(timed) - 1) * batch / (timed[-1] - timed[0])


def run_absgd(data: str, steps: int, warmup: int, batch: int, ratio: float, workdir: str) -> float:
    cfg = load_config(
        CONFIG,
        [
            f"data.root={data}",
            f"data.imbalance_ratio={ratio}",
            "data.val_source=none",
            "train.select=last",
            f"train.batch_size={batch}",
            "train.device=cpu",
        ],
    )
    clock = _StepClock()
    out = tempfile.mkdtemp(dir=workdir)
    with contextlib.suppress(RunInterrupted):  # the run stops itself after the steps
        train(cfg, out, reporter=clock, stop_after_steps=warmup + steps)
    return _rate(clock.times, warmup, batch)


def _read_train_jpegs(path: str) -> tuple[list[bytes], np.ndarray]:
    """JPEG bytes and labels of ``train/<class>/<file>``, classes and files in sorted order."""
    files: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 3 and parts[-3] == "train":
                fh = tar.extractfile(member)
                assert fh is not None
                files.setdefault(parts[-2], {})[parts[-1]] = fh.read()
    names = sorted(files)
    blobs, labels = [], []
    for k, name in enumerate(names):
        for fname in sorted(files[name]):
            blobs.append(files[name][fname])
            labels.append(k)
    return blobs, np.asarray(labels)


class PerImageDataset(Dataset):
    """Decode one JPEG with Pillow, pad 4 + random 32x32 crop, random flip, normalise."""

    def __init__(self, blobs: list[bytes], labels: np.ndarray) -> None:
        self.blobs, self.labels = blobs, labels
        self.mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, ImageOps

        img = Image.open(io.BytesIO(self.blobs[i])).convert("RGB")
        img = ImageOps.expand(img, border=4, fill=0)
        dx, dy = np.random.randint(0, 9, size=2)
        img = img.crop((dx, dy, dx + 32, dy + 32))
        if np.random.rand() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        return (x.float() / 255 - self.mean) / self.std, int(self.labels[i])


def run_per_image(
    blobs: list[bytes],
    labels: np.ndarray,
    steps: int,
    warmup: int,
    batch: int,
    workers: int,
    channels_last: bool = False,
) -> float:
    torch.manual_seed(0)
    model = build_model("resnet32", 10)
    if channels_last:
        model = to_channels_last(model)
    optimizer = ABSGD(model.parameters(), lr=0.1, weight_decay=2e-4)
    loader = DataLoader(
        PerImageDataset(blobs, labels),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    times: list[float] = []
    model.train()
    while len(times) < warmup + steps:
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter())
            if len(times) >= warmup + steps:
                break
    return _rate(times, warmup, batch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="image-folder archive of CIFAR-10 (tar.gz)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (per-image)")
    p.add_argument("--repeats", type=int, default=2, help="A B rounds")
    p.add_argument("--imbalance-ratio", type=float, default=100.0)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    blobs, labels = _read_train_jpegs(args.data)
    counts = long_tail_counts(int(np.bincount(labels).min()), 10, args.imbalance_ratio)
    keep = select_long_tailed(labels, counts, 0)
    blobs = [blobs[i] for i in keep]
    labels = labels[keep]
    rates: dict[str, list[float]] = {"absgd": [], "per-image": [], "per-image, channels-last": []}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            rates["absgd"].append(
                run_absgd(
                    args.data, args.steps, args.warmup, args.batch, args.imbalance_ratio, work
                )
            )
            for name, cl in (("per-image", False), ("per-image, channels-last", True)):
                rates[name].append(
                    run_per_image(
                        blobs, labels, args.steps, args.warmup, args.batch, args.workers, cl
                    )
                )
    ours, theirs = statistics.median(rates["absgd"]), statistics.median(rates["per-image"])
    result: dict[str, Any] = {
        "images_per_second": rates,
        "median": {name: statistics.median(values) for name, values in rates.items()},
        "speedup": ours / theirs,
        "train_images": len(labels),
        "batch": args.batch,
        "steps": args.steps,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "command": " ".join(sys.argv),
    }
    print(
        f"ResNet-32, batch {args.batch}, {len(labels)} training images, {args.steps} timed "
        f"steps x {args.repeats}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"
    )
    print("| pipeline | images/s (each run) | median | × per-image |")
    print("|---|---|---|---|")
    for name, values in rates.items():
        each = ", ".join(f"{v:.0f}" for v in values)
        med = statistics.median(values)
        print(f"| {name} | {each} | {med:.0f} | {med / theirs:.2f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
