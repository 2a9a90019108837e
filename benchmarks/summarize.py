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


def tables(paths: list[str]) -> str:
    runs, chosen = load(paths)
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
        head = ["method", *(name for name, _ in COLUMNS), "seeds", "λ (val)", "time"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for method, rows in methods.items():
            cells = [method]
            cells += [mean_std([r["metrics"][key] for r in rows]) for _, key in COLUMNS]
            cells.append(str(len(rows)))
            lam = rows[0]["lam"]
            selection = chosen.get((rows[0]["_file"], grid, setting, method))
            tuned = selection is not None and len(selection.get("scores") or {}) > 1
            cells.append("–" if lam is None else f"{lam:g}" if tuned else f"{lam:g} (fixed)")
            seconds = statistics.mean(r["train_wall_seconds"] for r in rows)
            cells.append(f"{seconds:.0f} s")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    print(tables(args.files))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
