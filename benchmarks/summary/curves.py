"""Test accuracy by epoch (report only): the fall from the best test epoch and what early
stopping on validation would have kept."""

from __future__ import annotations

import statistics
from typing import Any

from summary.runs import method_groups
from summary.stats import mean_std


def test_curve(row: dict[str, Any]) -> dict[int, float]:
    """Epoch → test top-1 from a run's curve (the epochs that evaluated the test split)."""
    return {
        int(e["epoch"]): float(e["test_top1"])
        for e in row.get("curve") or []
        if e.get("test_top1") is not None
    }


def early_stopped(row: dict[str, Any]) -> float | None:
    """Test top-1 at the epoch of best validation balanced accuracy (the first of ties): what
    early stopping on the validation split would have kept, or ``None`` if that epoch did not
    evaluate the test split."""
    curve = [e for e in row.get("curve") or [] if e.get("val_balanced_accuracy") is not None]
    if not curve:
        return None
    best = max(curve, key=lambda e: e["val_balanced_accuracy"])  # max keeps the first of ties
    return best.get("test_top1")


def curve_tables(paths: list[str], every: int) -> str:
    """Per method: mean test top-1 (%) every ``every`` epochs and at the last, the fall from
    each seed's best test epoch to its last (points), and the test top-1 at the epoch of best
    validation balanced accuracy (early stopping; mean ± std over seeds)."""
    out = []
    for (grid, setting, device), methods in method_groups(paths, None).items():
        runs = {
            method: [r for r in rows if r.get("metrics") and test_curve(r)]
            for method, rows in methods.items()
        }
        curves = {m: [test_curve(r) for r in rs] for m, rs in runs.items() if rs}
        if not curves:
            continue
        last = max(max(c) for cs in curves.values() for c in cs)
        epochs = sorted({*range(every, last + 1, every), last})
        out.append(f"### {grid}: {setting} ({device}), test top-1 by epoch (report only)\n")
        head = [
            "method",
            *(f"ep. {e}" for e in epochs),
            "best → last (points)",
            "at best val. epoch",
            "seeds",
        ]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for method, cs in curves.items():
            cells = [method]
            for e in epochs:
                at = [c[e] for c in cs if e in c]
                cells.append(f"{100 * statistics.mean(at):.1f}" if len(at) == len(cs) else "–")
            falls = [c[max(c)] - max(c.values()) for c in cs]
            stopped = [early_stopped(r) for r in runs[method]]
            cells += [mean_std(falls), mean_std(stopped), str(len(cs))]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
