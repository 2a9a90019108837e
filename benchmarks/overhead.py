"""Per-step cost of sample-weighting methods, side by side on the same model and batch.

Methods (one optimisation step each: forward, objective, backward, optimiser step):

- ``sgd``: plain momentum SGD on the mean cross-entropy (the baseline);
- ``absgd_ce``, ``absgd_ldam``: ABSGD (λ = 1) on cross-entropy and on LDAM;
- ``rgd``: RGD's clipped-exponential weights on cross-entropy;
- ``mwn``: Meta-Weight-Net (virtual step, second-order meta step on a balanced meta batch of
  the same size, real step).

Timing: every method gets its own copy of the model (same initial weights) and its own
optimiser; after ``--warmup`` untimed steps, ``--steps`` rounds run the methods in turn, the
order rotating every round, so slow phases of a noisy machine hit all methods alike. Each
method's median step time and interquartile range are reported, and its cost relative to plain
SGD is the median over rounds of ``t_method / t_sgd`` within the same round.

Memory: the peak of one step above the level between steps — on CUDA the allocator's
``max_memory_allocated``; on the CPU the C heap in use (glibc's ``mallinfo2``, where the CPU
allocator's tensors live) read after every aten operation of the forward and backward passes
(what an operation allocates and frees internally is not seen, alike for every method).

    python benchmarks/overhead.py                          # CPU, ResNet-32 and the small CNN
    python benchmarks/overhead.py --device cuda --json overhead.json
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from absgd import ABSGD, build_objective
from absgd.meta_weight_net import MetaWeightNet
from absgd.models import build_model

METHODS = ("sgd", "absgd_ce", "absgd_ldam", "rgd", "mwn")
SETTINGS = {
    # name: (model, input shape, batch)
    "resnet32": ("resnet32", (3, 32, 32), 128),
    "small_cnn": ("small_cnn", (1, 28, 28), 256),
}
NUM_CLASSES = 10
COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT, ratio 100


@dataclass
class Bench:
    """One method's model, optimiser and step function."""

    name: str
    model: nn.Module
    step: Callable[[], None]


def _objective(method: str) -> nn.Module:
    if method == "absgd_ce":
        return build_objective("ce", weighting="absgd", weighting_options={"lam": 1.0})
    if method == "absgd_ldam":
        return build_objective(
            "ldam",
            class_counts=COUNTS,
            loss_options={"scale": 1.0},
            weighting="absgd",
            weighting_options={"lam": 1.0},
        )
    if method == "rgd":
        return build_objective("ce", weighting="rgd")
    return build_objective("ce")


def make_bench(method: str, setting: str, device: torch.device, batch: int | None) -> Bench:
    name, shape, default_batch = SETTINGS[setting]
    b = batch or default_batch
    torch.manual_seed(0)
    options: dict[str, Any] = {"in_channels": shape[0]}
    if name == "small_cnn":
        options["input_size"] = shape[1]
    model = build_model(name, NUM_CLASSES, **options).to(device)
    optimizer = ABSGD(model.parameters(), lr=0.01, weight_decay=2e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, *shape, generator=g).to(device)
    y = torch.randint(0, NUM_CLASSES, (b,), generator=g).to(device)
    if method == "mwn":
        x_meta = torch.randn(b, *shape, generator=g).to(device)
        y_meta = (torch.arange(b) % NUM_CLASSES).to(device)  # balanced meta batch
        mwn = MetaWeightNet(model, nn.CrossEntropyLoss(reduction="none"), optimizer)

        def step() -> None:
            mwn.step(x, y, x_meta, y_meta)

        return Bench(method, model, step)
    objective = _objective(method).to(device)

    def plain_step() -> None:
        loss = objective(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return Bench(method, model, plain_step)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_methods(
    setting: str,
    methods: list[str],
    device: torch.device,
    steps: int,
    warmup: int,
    batch: int | None,
) -> dict[str, list[float]]:
    benches = [make_bench(m, setting, device, batch) for m in methods]
    for bench in benches:
        for _ in range(warmup):
            bench.step()
    _sync(device)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(steps):
        order = benches[r % len(benches) :] + benches[: r % len(benches)]
        for bench in order:
            _sync(device)
            start = time.perf_counter()
            bench.step()
            _sync(device)
            times[bench.name].append(time.perf_counter() - start)
    return times


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _heap_reader() -> Callable[[], int] | None:
    """Bytes of the C heap in use (glibc's mallinfo2), or ``None`` where unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return in_use


class _PeakAfterEachOp(TorchDispatchMode):
    """Reads the heap after every aten operation (forward and backward) and keeps the peak."""

    def __init__(self, read: Callable[[], int]) -> None:
        super().__init__()
        self.read, self.peak = read, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.read())
        return out


def _peak_cpu_memory(setting: str, method: str, batch: int | None) -> float | None:
    """Peak growth (MiB) of the C heap in use during one step, above its level between steps
    (tensor storage of the CPU allocator lives there); ``None`` without glibc."""
    read = _heap_reader()
    if read is None:
        return None
    bench = make_bench(method, setting, torch.device("cpu"), batch)
    bench.step()  # optimiser state allocated
    base = read()
    with _PeakAfterEachOp(read) as tracker:
        bench.step()
    return (tracker.peak - base) / 2**20


def _peak_cuda_memory(setting: str, method: str, device: torch.device, batch: int | None) -> float:
    bench = make_bench(method, setting, device, batch)
    bench.step()  # optimiser state allocated
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    bench.step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for setting in args.models:
        times = time_methods(setting, args.methods, device, args.steps, args.warmup, args.batch)
        base = times["sgd"]
        for method in args.methods:
            q1, med, q3 = _quartiles(times[method])
            ratios = [t / b for t, b in zip(times[method], base, strict=True)]
            r1, rmed, r3 = _quartiles(ratios)
            row = {
                "model": setting,
                "batch": args.batch or SETTINGS[setting][2],
                "method": method,
                "median_ms": 1000 * med,
                "iqr_ms": [1000 * q1, 1000 * q3],
                "ratio_to_sgd": rmed,
                "ratio_iqr": [r1, r3],
                "steps": len(times[method]),
            }
            if args.memory:
                if device.type == "cuda":
                    row["peak_mib"] = _peak_cuda_memory(setting, method, device, args.batch)
                else:
                    row["peak_mib"] = _peak_cpu_memory(setting, method, args.batch)
            rows.append(row)
        if args.memory:
            base_mem = next(
                r["peak_mib"] for r in rows if r["model"] == setting and r["method"] == "sgd"
            )
            for r in rows:
                if r["model"] == setting:
                    known = base_mem and r["peak_mib"] is not None
                    r["memory_ratio_to_sgd"] = r["peak_mib"] / base_mem if known else None
    return {
        "rows": rows,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "steps": args.steps,
        "warmup": args.warmup,
        "command": " ".join(sys.argv),
    }


def markdown(result: dict[str, Any]) -> str:
    memory = any("peak_mib" in r for r in result["rows"])
    head = ["model", "batch", "method", "median step (ms)", "IQR (ms)", "× plain SGD (IQR)"]
    if memory:
        head += ["peak memory (MiB)", "memory × SGD"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [
            r["model"],
            str(r["batch"]),
            r["method"],
            f"{r['median_ms']:.1f}",
            f"{r['iqr_ms'][0]:.1f}–{r['iqr_ms'][1]:.1f}",
            f"{r['ratio_to_sgd']:.3f} ({r['ratio_iqr'][0]:.3f}–{r['ratio_iqr'][1]:.3f})",
        ]
        if memory:
            ratio = r.get("memory_ratio_to_sgd")
            peak = r["peak_mib"]
            cells += [
                "–" if peak is None else f"{peak:.1f}",
                "–" if ratio is None else f"{ratio:.3f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--steps", type=int, default=20, help="timed rounds (every method once each)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per method first")
    p.add_argument("--batch", type=int, default=None, help="override the batch size")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if "sgd" not in args.methods:
        args.methods = ["sgd", *args.methods]
    if args.steps < 1:
        p.error("--steps must be >= 1")
    result = run(args)
    print(
        f"device: {result['device']} ({result['device_name']}), {result['threads']} threads, "
        f"torch {result['torch']}, {args.steps} timed rounds after {args.warmup} warm-up steps"
    )
    print(markdown(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
