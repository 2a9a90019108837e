"""Turn grid results (JSON lines from ``grid.py``) into mean ± std markdown tables.

    python benchmarks/summarize.py benchmarks/results/fmnist_lt.jsonl [more.jsonl ...]

One table per grid and setting: a row per method with top-1, balanced accuracy, many /
medium / few-shot accuracy (mean ± sample standard deviation over seeds, in %), the number of
seeds, the λ chosen on validation ("fixed" where there was one candidate) and the mean
training time. Runs on different devices (CPU, a GPU's name) get separate tables. Only the
runs with the chosen λ enter the ABSGD rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

COLUMNS = (
    ("top-1", "top1"),
    ("balanced", "balanced_accuracy"),
    ("many", "many"),
    ("medium", "medium"),
    ("few", "few"),
)


def mean_std(values: list[float | None]) -> str:
    """``mean ± std`` of fractions, in %, over the values that are not ``None``."""
    vals = [100 * v for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def device_label(row: dict[str, Any]) -> str:
    """Where a run trained: the GPU's name, else ``CPU`` (runs of one table share it)."""
    env = row.get("environment") or {}
    name = env.get("device_name") if str(env.get("device", "cpu")).startswith("cuda") else None
    return name or "CPU"


def load(paths: list[str]) -> tuple[list[dict[str, Any]], dict[tuple, dict[str, Any]]]:
    runs, chosen = [], {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row["kind"] == "run":
                    runs.append({**row, "_file": path})
                elif row["kind"] == "lam_selection":
                    # A selection applies to the runs of its own file (one grid's state).
                    chosen[(path, row["grid"], row["setting"], row["method"])] = row
    return runs, chosen


def shot_accuracies(metrics: dict[str, Any], many: int, few: int) -> dict[str, float | None]:
    """Many / medium / few-shot accuracy recomputed from the per-class accuracies: the mean over
    the classes with more than ``many``, ``few``..``many``, and fewer than ``few`` training
    images (``None`` for an empty group)."""
    acc, counts = metrics["per_class_accuracy"], metrics["train_class_counts"]
    groups: dict[str, list[float]] = {"many": [], "medium": [], "few": []}
    for a, n in zip(acc, counts, strict=True):
        groups["many" if n > many else "few" if n < few else "medium"].append(a)
    return {k: statistics.mean(v) if v else None for k, v in groups.items()}


def tables(paths: list[str], shots: tuple[int, int] | None = None) -> str:
    """Markdown tables of the runs in ``paths``; ``shots=(many, few)`` regroups the classes
    into many / medium / few by those training-set sizes (default: as each run recorded)."""
    runs, chosen = load(paths)
    if shots is not None:
        for row in (r for r in runs if r.get("metrics") is not None):
            row["metrics"] = {**row["metrics"], **shot_accuracies(row["metrics"], *shots)}
    groups: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    for row in runs:
        selection = chosen.get((row["_file"], row["grid"], row["setting"], row["method"]))
        if selection is not None and row["lam"] != selection["lam"]:
            continue  # a λ candidate that was not chosen
        key = (row["grid"], row["setting"], device_label(row))
        groups[key].setdefault(row["method"], []).append(row)
    out = []
    for (grid, setting, device), methods in groups.items():
        out.append(f"### {grid}: {setting} ({device})\n")
        names = [name for name, _ in COLUMNS]
        if shots is not None:
            names[2:] = [f"many (>{shots[0]})", "medium", f"few (<{shots[1]})"]
        head = ["method", *names, "seeds", "λ (val)", "time"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for method, all_rows in methods.items():
            rows = [r for r in all_rows if r.get("metrics") is not None]
            failed = len(all_rows) - len(rows)
            cells = [method]
            cells += [mean_std([r["metrics"][key] for r in rows]) for _, key in COLUMNS]
            cells.append(str(len(rows)) + (f" (+{failed} diverged)" if failed else ""))
            rows = rows or all_rows
            lam = rows[0]["lam"]
            selection = chosen.get((rows[0]["_file"], grid, setting, method))
            tuned = selection is not None and len(selection.get("scores") or {}) > 1
            cells.append("–" if lam is None else f"{lam:g}" if tuned else f"{lam:g} (fixed)")
            times = [r["train_wall_seconds"] for r in rows if r["train_wall_seconds"] is not None]
            cells.append(f"{statistics.mean(times):.0f} s" if times else "–")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument(
        "--shots",
        type=int,
        nargs=2,
        metavar=("MANY", "FEW"),
        help="regroup many / medium / few as > MANY, FEW..MANY, < FEW training images",
    )
    args = p.parse_args(argv)
    if args.shots is not None and not 0 < args.shots[1] <= args.shots[0]:
        p.error(f"--shots needs 0 < FEW <= MANY, got MANY={args.shots[0]} FEW={args.shots[1]}")
    print(tables(args.files, tuple(args.shots) if args.shots else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
