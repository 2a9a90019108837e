"""Turn grid results (JSON lines from ``grid.py``) into mean ± std markdown tables.

    python benchmarks/summarize.py benchmarks/results/fmnist_lt.jsonl [more.jsonl ...]

One table per grid and setting: a row per method with top-1, balanced accuracy, many /
medium / few-shot accuracy (mean ± sample standard deviation over seeds, in %), the number of
seeds, the λ chosen on validation and the mean training time. Only the runs with the chosen λ
enter the ABSGD rows.
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


def load(paths: list[str]) -> tuple[list[dict[str, Any]], dict[tuple, dict[str, Any]]]:
    runs, chosen = [], {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row["kind"] == "run":
                    runs.append(row)
                elif row["kind"] == "lam_selection":
                    chosen[(row["grid"], row["setting"], row["method"])] = row
    return runs, chosen


def tables(paths: list[str]) -> str:
    runs, chosen = load(paths)
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    for row in runs:
        selection = chosen.get((row["grid"], row["setting"], row["method"]))
        if selection is not None and row["lam"] != selection["lam"]:
            continue  # a λ candidate that was not chosen
        groups[(row["grid"], row["setting"])].setdefault(row["method"], []).append(row)
    out = []
    for (grid, setting), methods in groups.items():
        out.append(f"### {grid}: {setting}\n")
        head = ["method", *(name for name, _ in COLUMNS), "seeds", "λ (val)", "time"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for method, rows in methods.items():
            cells = [method]
            cells += [mean_std([r["metrics"][key] for r in rows]) for _, key in COLUMNS]
            cells.append(str(len(rows)))
            lam = rows[0]["lam"]
            cells.append("–" if lam is None else f"{lam:g}")
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
