"""Paired differences METHOD − BASE by seed, overall and per class."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from summary.choose import Choice
from summary.runs import level_note, method_groups, same_stage_one
from summary.stats import mean_std, paired

PAIRED = (("top-1", "top1"), ("balanced", "balanced_accuracy"), ("worst class", "worst_class"))
TRAIN_PRIOR = ("top-1 at the training prior", "train_prior_top1")
"""The optional column (``--train-prior``): top-1 with the classes weighted as in training."""


def pair_tables(
    paths: list[str],
    pairs: list[tuple[str, str]],
    shots: tuple[int, int] | None = None,
    level: float = 0.95,
    train_prior: bool = False,
    choices: Sequence[Choice] = (),
) -> str:
    """Paired differences METHOD − BASE (points), matched by seed, per grid and setting, with
    ``level`` t intervals; ``train_prior`` adds top-1 at the training prior
    (:func:`summary.runs.train_prior_top1`); ``choices`` add methods (:mod:`summary.choose`)."""
    columns = (*PAIRED, TRAIN_PRIOR) if train_prior else PAIRED
    out = []
    for (grid, setting, device), methods in method_groups(paths, shots, choices).items():
        present = [(b, m) for b, m in pairs if _has_base(methods, b) and m in methods]
        if not present:
            continue
        out.append(f"### {grid}: {setting} ({device}), paired by seed{level_note(level)}\n")
        head = ["method − base", "seeds", *(name for name, _ in columns), "paper-style top-1"]
        head.append("balanced by seed (* chose λ / target, † stage 1 differs)")
        marked = False
        partners = []
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for base, method in present:
            both = _paired_runs(methods, base, methods[method])
            cells = [f"{method} − {base_label(base)}", str(len(both))]
            if len(base_names(base)) > 1:
                partners.append(f"{method}: {partners_text(both)}")
            for _, key in (*columns, ("", "paper_top1")):
                diffs = [
                    100 * (m["metrics"][key] - b["metrics"][key])
                    for b, m in both
                    if m["metrics"].get(key) is not None and b["metrics"].get(key) is not None
                ]
                cells.append(paired(diffs, level))
            cells.append(by_seed_text(both, "balanced_accuracy"))
            out.append("| " + " | ".join(cells) + " |")
            marked = marked or "†" in cells[-1]
        if marked:
            out.append("")
            out.append(
                "† The two runs of this seed trained differently before the switch (training"
                " losses up to it differ): part of its difference is another stage-1 model."
            )
        if partners:
            out.append("")
            out.extend(f"Partners by seed, {text}." for text in partners)
        out.append("")
    return "\n".join(out)


def by_seed_text(both: list[tuple[dict[str, Any], dict[str, Any]]], key: str) -> str:
    """The paired differences seed by seed (``s1 +2.44``), ``*`` on a seed whose run of either
    method chose its λ on validation: its number won a selection, so it may flatter the
    method; the seeds without a star show the difference on runs that did not choose."""
    parts = []
    for b, m in sorted(both, key=lambda pair: pair[1]["seed"]):
        star = "*" if b.get("_chose") or m.get("_chose") else ""
        star += "†" if same_stage_one(b, m) is False else ""
        parts.append(f"s{m['seed']}{star} {100 * (m['metrics'][key] - b['metrics'][key]):+.2f}")
    return ", ".join(parts) or "–"


def base_names(base: str) -> list[str]:
    """The base methods a ``--pair`` BASE names: one name, or several separated by ``|``."""
    return [name.strip() for name in base.split("|") if name.strip()]


def base_label(base: str) -> str:
    """BASE as a table shows it (``|`` would split a markdown cell)."""
    return " / ".join(base_names(base))


def _has_base(methods: dict[str, list[dict[str, Any]]], base: str) -> bool:
    return any(name in methods for name in base_names(base))


def _paired_runs(
    methods: dict[str, list[dict[str, Any]]], base: str, method_rows: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(base run, method run) of each seed that both finished, in the method's order. Where
    ``base`` names several base methods, a seed's partner is the first listed base run of that
    seed that trained the same stage 1 as the method's run (``same_stage_one``), else the first
    listed run of that seed."""
    by_seed: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for name in base_names(base):
        for row in methods.get(name, []):
            if row.get("metrics"):
                by_seed[row["seed"]].append(row)
    both = []
    for row in method_rows:
        if not row.get("metrics") or not by_seed.get(row["seed"]):
            continue
        runs = by_seed[row["seed"]]
        shared = [b for b in runs if same_stage_one(b, row) is not False]
        both.append(((shared or runs)[0], row))
    return both


def partners_text(both: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """Which base method each seed was paired with (``LDAM-DRW for s0, s1; …``)."""
    seeds: dict[str, list[str]] = {}
    for b, m in sorted(both, key=lambda pair: pair[1]["seed"]):
        seeds.setdefault(b["method"], []).append(f"s{m['seed']}")
    return "; ".join(f"{name} for {', '.join(s)}" for name, s in seeds.items())


def per_class_tables(
    paths: list[str],
    pairs: list[tuple[str, str]],
    level: float = 0.95,
    choices: Sequence[Choice] = (),
) -> str:
    """Per pair, per class (largest training class first): the mean test accuracy of base and
    method over the paired seeds, METHOD − BASE (points) with its ``level`` interval, and in how
    many seeds the method was higher. Where a gain or loss sits (head or tail), which the
    balanced mean hides."""
    out = []
    for (grid, setting, device), methods in method_groups(paths, None, choices).items():
        for pair_base, method in pairs:
            if not _has_base(methods, pair_base) or method not in methods:
                continue
            base = base_label(pair_base)
            both = _paired_runs(methods, pair_base, methods[method])
            if not both:
                continue
            counts = both[0][0]["metrics"]["train_class_counts"]
            for b, m in both:
                if b["metrics"]["train_class_counts"] != counts or (
                    m["metrics"]["train_class_counts"] != counts
                ):
                    raise SystemExit(
                        f"{grid}: {setting}: the runs of {base} and {method} with seed "
                        f"{m['seed']} trained on other class counts than seed {both[0][1]['seed']}"
                    )
            out.append(
                f"### {grid}: {setting} ({device}), {method} − {base} by class{level_note(level)}\n"
            )
            head = ["class", "training images", base, method, f"{method} − {base}", "higher in"]
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            for c in sorted(range(len(counts)), key=lambda i: (-counts[i], i)):
                acc_b = [b["metrics"]["per_class_accuracy"][c] for b, _ in both]
                acc_m = [m["metrics"]["per_class_accuracy"][c] for _, m in both]
                diffs = [100 * (y - x) for x, y in zip(acc_b, acc_m, strict=True)]
                higher = sum(d > 0 for d in diffs)
                cells = [str(c), str(counts[c]), mean_std(acc_b), mean_std(acc_m)]
                cells += [paired(diffs, level), f"{higher} of {len(diffs)}"]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)
