"""The main table: per method, mean ± std over seeds of each metric, the λ chosen, training
time and the paper-style column."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from summary.choose import Choice
from summary.runs import before_switch, lam_switch, method_groups
from summary.stats import mean_std

COLUMNS = (
    ("top-1", "top1"),
    ("balanced", "balanced_accuracy"),
    ("worst class", "worst_class"),
    ("many", "many"),
    ("medium", "medium"),
    ("few", "few"),
)


def tables(
    paths: list[str], shots: tuple[int, int] | None = None, choices: Sequence[Choice] = ()
) -> str:
    """Markdown tables of the runs in ``paths`` (and the methods of ``choices``);
    ``shots=(many, few)`` regroups the classes into many / medium / few by those training-set
    sizes (default: as each run recorded)."""
    groups = method_groups(paths, shots, choices)
    out = []
    for (grid, setting, device), methods in groups.items():
        out.append(f"### {grid}: {setting} ({device})\n")
        names = [name for name, _ in COLUMNS]
        if shots is not None:
            names[3:] = [f"many (>{shots[0]})", "medium", f"few (<{shots[1]})"]
        styled = any(
            r["metrics"].get("paper_top1") is not None
            for rs in methods.values()
            for r in rs
            if r.get("metrics")
        )
        head = ["method", *names, "seeds", "λ / target (val)", "selected < switch", "time"]
        if styled:
            head.append("paper-style top-1 (best test epoch)")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for method, all_rows in methods.items():
            rows = [r for r in all_rows if r.get("metrics") is not None]
            failed = len(all_rows) - len(rows)
            cells = [method]
            cells += [mean_std([r["metrics"][key] for r in rows]) for _, key in COLUMNS]
            cells.append(str(len(rows)) + (f" (+{failed} diverged)" if failed else ""))
            early = sum(before_switch(r) for r in rows)
            rows = rows or all_rows
            lam = rows[0]["lam"]
            kind = (
                "" if rows[0]["_tuned"] else " (candidate)" if rows[0]["_candidate"] else " (fixed)"
            )
            if rows[0].get("_chosen_from"):
                guard = rows[0].get("_guard_text", "")
                cells.append(f"per seed (val {rows[0]['_choice_metric']}{guard})")
            else:
                cells.append("–" if lam is None else f"{lam:g}{kind}")
            switched = any(lam_switch(r) is not None for r in rows)  # a choice mixes the two
            cells.append(f"{early} of {len(rows)}" if switched else "–")
            times = [r["train_wall_seconds"] for r in rows if r["train_wall_seconds"] is not None]
            cells.append(f"{statistics.mean(times):.0f} s" if times else "–")
            if styled:
                cells.append(mean_std([r["metrics"].get("paper_top1") for r in rows]))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
