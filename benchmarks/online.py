"""Online learning without class priors: one pass over a long-tailed stream, predict-then-train.

The paper's claim: ABSGD needs no class counts, so it works when data arrive as a stream and
the class distribution is unknown (or changes). Every method sees each mini-batch once:

1. it predicts the batch with the current model (prequential accuracy, per class too);
2. it takes one SGD step on it.

No method is given class counts. Methods: plain SGD on cross-entropy (``CE``), focal loss,
class-balanced weights from the *running* counts of the labels seen so far (effective number,
β = 0.999, counts + 1), and ABSGD (cross-entropy; plain SGD for the first quarter of the stream,
then λ; λ chosen on a balanced validation split from {1, 3, 10, 30, 100} with seed 0), and
ABSGD-ESS (the same, with λ > 0 solved on every batch for a target effective sample size chosen
from {0.9, 0.7, 0.5} the same way). At the end of the stream the model is evaluated on the
balanced test set; a second table gives each method minus CE, paired by seed.

Streams, from Fashion-MNIST's training images:

- ``long-tailed``: a Fashion-MNIST-LT training split (exp, ratio 100, from the images left
  after 100 per class are set aside for validation: 5,900 down to 59 per class, 14,639
  images), shuffled once;
- ``drifting``: 8 segments of 1,500 images; within each, class proportions follow the
  exponential profile with ratio 100, and the head class moves to the next class at every
  segment, so yesterday's head is today's tail.

    python benchmarks/online.py --data-root ../shared/data/fashion-mnist \\
        --out benchmarks/results/online.jsonl [--methods CE ABSGD ABSGD-ESS]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import _environment
from summary import mean_std, paired

from absgd import ABWeighting
from absgd.class_weights import effective_number_weights
from absgd.data import (
    BatchAugment,
    channel_stats,
    load_fashion_mnist,
    long_tail_counts,
    select_long_tailed,
    to_nchw,
)
from absgd.losses import build_loss
from absgd.metrics import evaluate
from absgd.models import build_model, to_channels_last
from absgd.optim import ABSGD

METHODS = ("CE", "focal (γ=1)", "CB (running counts)", "ABSGD", "ABSGD-ESS")
LAMS = (1.0, 3.0, 10.0, 30.0, 100.0)
TARGETS = (0.9, 0.7, 0.5)  # ABSGD-ESS: the effective sample size λ is solved for per batch
TUNED = {"ABSGD": LAMS, "ABSGD-ESS": TARGETS}
C = 10


def _streams(train_y: np.ndarray, seed: int, val_per_class: int) -> dict[str, Any]:
    """Index arrays of the two streams and of the balanced validation split."""
    rng = np.random.RandomState(1000 + seed)
    val = np.concatenate(
        [rng.permutation(np.flatnonzero(train_y == c))[:val_per_class] for c in range(C)]
    )
    pool = np.setdiff1d(np.arange(len(train_y)), val)
    counts = long_tail_counts(6000 - val_per_class, C, 100)
    lt = pool[select_long_tailed(train_y[pool], counts, 0)]
    lt = lt[rng.permutation(len(lt))]
    segments = []
    used = np.zeros(len(train_y), dtype=bool)
    used[val] = True
    profile = np.asarray(long_tail_counts(6000, C, 100), dtype=float)
    for k in range(8):
        probs = np.roll(profile, k) / profile.sum()
        take = np.floor(probs * 1500).astype(int)
        picks = []
        for c in range(C):
            free = np.flatnonzero((train_y == c) & ~used)
            chosen = rng.choice(free, size=take[c], replace=False)
            used[chosen] = True
            picks.append(chosen)
        seg = np.concatenate(picks)
        segments.append(seg[rng.permutation(len(seg))])
    return {"long-tailed": lt, "drifting": np.concatenate(segments), "val": val}


def _objective(method: str, lam: float | None, switch: int):
    ce = build_loss("ce", reduction="none")
    if method == "focal (γ=1)":
        focal = build_loss("focal", gamma=1.0, reduction="none")
        return lambda logits, y, step: focal(logits, y).mean()
    if method == "CB (running counts)":
        counts = torch.zeros(C)

        def cb(logits, y, step):
            counts.add_(torch.bincount(y, minlength=C).float())
            w = effective_number_weights((counts + 1).tolist(), beta=0.999)[y]
            losses = ce(logits, y)
            return (w * losses).sum() / w.sum()

        return cb
    if method in TUNED:
        # ABSGD-ESS: ``lam`` is the target effective sample size; λ > 0 is solved per batch.
        target = lam if method == "ABSGD-ESS" else None
        weighting = ABWeighting(math.inf, target_ess=target)
        after = 1.0 if method == "ABSGD-ESS" else lam

        def absgd(logits, y, step):
            weighting.lam = math.inf if step < switch else after
            return weighting(ce(logits, y))

        return absgd
    return lambda logits, y, step: ce(logits, y).mean()


def run_stream(
    x: torch.Tensor,
    y: torch.Tensor,
    order: np.ndarray,
    method: str,
    lam: float | None,
    seed: int,
    batch: int,
    lr: float,
    aug: BatchAugment,
) -> tuple[torch.nn.Module, dict[str, float]]:
    torch.manual_seed(seed)
    model = to_channels_last(build_model("small_cnn", C))
    optimizer = ABSGD(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = math.ceil(len(order) / batch)
    objective = _objective(method, lam, switch=steps // 4)
    gen = torch.Generator().manual_seed(seed)
    preds, labels = [], []
    for step in range(steps):
        idx = torch.from_numpy(order[step * batch : (step + 1) * batch])
        xb, yb = x[idx], y[idx]
        model.eval()
        with torch.no_grad():
            preds.append(
                model(aug.for_eval()(xb).contiguous(memory_format=torch.channels_last)).argmax(1)
            )
        labels.append(yb)
        model.train()
        loss = objective(
            model(aug(xb, gen).contiguous(memory_format=torch.channels_last)), yb, step
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seen = evaluate(torch.cat(preds), torch.cat(labels), num_classes=C)
    return model, {
        "prequential_top1": seen["top1"],
        "prequential_balanced": seen["balanced_accuracy"],
    }


@torch.no_grad()
def _test(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, aug: BatchAugment, counts: np.ndarray
) -> dict[str, Any]:
    model.eval()
    logits = torch.cat(
        [
            model(aug.for_eval()(x[i : i + 1000]).contiguous(memory_format=torch.channels_last))
            for i in range(0, len(x), 1000)
        ]
    )
    return evaluate(logits, y, counts, with_confusion_matrix=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--limit", type=int, default=None, help="first N samples of each stream")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = p.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    data = load_fashion_mnist(args.data_root)
    mean, std = channel_stats(data.train.x)
    aug = BatchAugment(padding=2, flip=False, mean=mean, std=std)
    x_train, y_train = to_nchw(data.train.x), torch.as_tensor(data.train.y)
    x_test, y_test = to_nchw(data.test.x), torch.as_tensor(data.test.y)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    chosen: dict[tuple[str, str], float] = {}  # λ / target chosen on validation, first seed
    for seed in args.seeds:
        streams = _streams(data.train.y, seed, args.val_per_class)
        val = streams.pop("val")
        for stream, order in streams.items():
            order = order[: args.limit] if args.limit else order
            counts = np.bincount(data.train.y[order], minlength=C)
            for method in args.methods:
                if method not in TUNED:
                    lams: tuple[float | None, ...] = (None,)
                elif seed == args.seeds[0]:
                    lams = TUNED[method]
                else:
                    lams = (chosen[(stream, method)],)
                results = []
                for lam in lams:
                    started = time.perf_counter()
                    model, seen = run_stream(
                        x_train, y_train, order, method, lam, seed, args.batch, args.lr, aug
                    )
                    val_metrics = _test(model, x_train[val], y_train[val], aug, counts)
                    test = _test(model, x_test, y_test, aug, counts)
                    results.append(
                        {
                            "kind": "online",
                            "stream": stream,
                            "method": method,
                            "seed": seed,
                            "lam": lam,
                            **seen,
                            "val_balanced": val_metrics["balanced_accuracy"],
                            "test": {
                                k: test[k]
                                for k in (
                                    "top1",
                                    "balanced_accuracy",
                                    "many",
                                    "medium",
                                    "few",
                                    "per_class_accuracy",
                                )
                            },
                            "stream_class_counts": counts.tolist(),
                            "seconds": time.perf_counter() - started,
                            "settings": {"batch": args.batch, "lr": args.lr, "model": "small_cnn"},
                            "environment": _environment(),
                        }
                    )
                if method in TUNED and seed == args.seeds[0]:
                    best = max(results, key=lambda r: r["val_balanced"])
                    chosen[(stream, method)] = best["lam"]
                    for r in results:
                        r["chosen"] = r["lam"] == best["lam"]
                for r in results:
                    with out.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(r) + "\n")
                    rows.append(r)
                    print(
                        f"[{stream}] {method} λ={r['lam']} seed {seed}: prequential "
                        f"{100 * r['prequential_balanced']:.2f} balanced, test balanced "
                        f"{100 * r['test']['balanced_accuracy']:.2f}",
                        flush=True,
                    )
    print(table(rows))
    print()
    print(paired_table(rows))
    return 0


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| stream | method | prequential top-1 | prequential balanced | test top-1 | "
        "test balanced | worst class (test) | λ / target |",
        "|" + "---|" * 8,
    ]
    keys = sorted(
        {(r["stream"], r["method"]) for r in rows}, key=lambda k: (k[0], METHODS.index(k[1]))
    )
    for stream, method in keys:
        sel = [
            r
            for r in rows
            if r["stream"] == stream and r["method"] == method and r.get("chosen", True)
        ]

        lam = sel[0]["lam"]
        lines.append(
            "| "
            + " | ".join(
                [
                    stream,
                    method,
                    mean_std([r["prequential_top1"] for r in sel]),
                    mean_std([r["prequential_balanced"] for r in sel]),
                    mean_std([r["test"]["top1"] for r in sel]),
                    mean_std([r["test"]["balanced_accuracy"] for r in sel]),
                    mean_std([min(r["test"]["per_class_accuracy"]) for r in sel]),
                    "–" if lam is None else f"{lam:g}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def paired_table(rows: list[dict[str, Any]], base: str = "CE") -> str:
    """Test balanced accuracy of each method minus ``base``, paired by seed (95 % t interval)."""
    lines = ["| stream | method − CE | seeds | test balanced | prequential balanced |"]
    lines.append("|---|---|---|---|---|")
    kept = [r for r in rows if r.get("chosen", True)]
    for stream in sorted({r["stream"] for r in kept}):
        here = [r for r in kept if r["stream"] == stream]
        bases = {r["seed"]: r for r in here if r["method"] == base}
        for method in [m for m in METHODS if m != base]:
            pairs = [
                (r, bases[r["seed"]]) for r in here if r["method"] == method and r["seed"] in bases
            ]
            if not pairs:
                continue
            test = [
                100 * (a["test"]["balanced_accuracy"] - b["test"]["balanced_accuracy"])
                for a, b in pairs
            ]
            seen = [100 * (a["prequential_balanced"] - b["prequential_balanced"]) for a, b in pairs]
            lines.append(
                f"| {stream} | {method} | {len(pairs)} | {paired(test)} | {paired(seen)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
