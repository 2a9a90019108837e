"""Reading grid results: the run and selection lines, each run's device, switch and stage 1,
and the runs grouped per table (grid, setting, device) and method."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absgd.training.tune import top1_at_counts
from summary.choose import Choice, chosen_runs


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


def lam_switch(row: dict[str, Any]) -> int | None:
    """The epoch after which a run's ABSGD weights start (``objective.lam_switch``), or None."""
    switch = ((row.get("config") or {}).get("objective") or {}).get("lam_switch")
    return None if switch is None else int(switch)


def before_switch(row: dict[str, Any]) -> bool:
    """Whether validation selected an epoch before the ABSGD switch (a plain-SGD model)."""
    switch = lam_switch(row)
    epoch = (row.get("metrics") or {}).get("selected_epoch")
    return switch is not None and epoch is not None and epoch <= switch


def stage_one_end(row: dict[str, Any]) -> int | None:
    """The last epoch of a run's first stage: its ABSGD switch (``objective.lam_switch``),
    else its DRW switch (``class_weighting: drw``), else ``None``."""
    if (switch := lam_switch(row)) is not None:
        return switch
    objective = (row.get("config") or {}).get("objective") or {}
    if objective.get("class_weighting") == "drw":
        switch = (objective.get("class_weighting_options") or {}).get("switch")
        return None if switch is None else int(switch)
    return None


def same_stage_one(base: dict[str, Any], method: dict[str, Any]) -> bool | None:
    """Whether two runs trained identically up to the method's switch (its ABSGD switch, or
    for a run without ABSGD its DRW switch, e.g. a base re-run against its earlier run): every
    epoch's mean training loss up to it equal to 1e-6 relative (the mean is accumulated
    differently with and without sample weights, which moves its last digits; runs that
    trained apart differ from the first epoch by far more); ``None`` where a curve or the
    switch is missing."""
    switch = stage_one_end(method)
    if switch is None or not base.get("curve") or not method.get("curve"):
        return None

    def losses(row: dict[str, Any]) -> dict[int, float]:
        return {
            e["epoch"]: e["train_loss"]
            for e in row["curve"]
            if e["epoch"] <= switch and e.get("train_loss") is not None
        }

    a, b = losses(base), losses(method)
    common = sorted(set(a) & set(b))
    return None if not common else all(math.isclose(a[e], b[e], rel_tol=1e-6) for e in common)


def train_prior_top1(metrics: dict[str, Any]) -> float | None:
    """Top-1 on a test set whose classes occur as often as in training: the per-class
    accuracies ``a_k`` weighted by the training counts ``n_k``, ``Σ n_k a_k / Σ n_k`` (what a
    user whose data keep the training skew would see; ``None`` without the counts)."""
    counts, accuracy = metrics.get("train_class_counts"), metrics.get("per_class_accuracy")
    if counts and accuracy and len(counts) != len(accuracy):
        return None
    return top1_at_counts(accuracy, counts)


def method_groups(
    paths: list[str], shots: tuple[int, int] | None, choices: Sequence[Choice] = ()
) -> dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]]:
    """The runs of ``paths`` per table (grid, setting, device) and method, each with its worst
    class and paper-style number (and the ``shots`` regrouping) among its metrics; a selected
    method keeps only its chosen value's runs, and candidates whose selection has not run yet
    get a row each. Each of ``choices`` adds a method to every table that has its candidates
    (:func:`summary.choose.chosen_runs`)."""
    runs, chosen = load(paths)
    for row in (r for r in runs if r.get("metrics") is not None):
        m = row["metrics"]
        extra: dict[str, Any] = {
            "worst_class": min(m["per_class_accuracy"]),
            "train_prior_top1": train_prior_top1(m),
        }
        if shots is not None:
            extra.update(shot_accuracies(m, *shots))
        style = m.get("paper_style") or {}
        extra["paper_top1"] = style.get("best_test_top1")
        row["metrics"] = {**m, **extra}
    groups: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    for row in runs:
        selection = chosen.get((row["_file"], row["grid"], row["setting"], row["method"]))
        if selection is not None and row["lam"] != selection["lam"]:
            continue  # a candidate that was not chosen
        row["_tuned"] = selection is not None and len(selection.get("scores") or {}) > 1
        row["_chose"] = (
            selection is not None and row["_tuned"] and row["seed"] == selection.get("seed")
        )
        name = row["method"]
        row["_candidate"] = selection is None and row.get("param") is not None
        if row["_candidate"]:
            # Candidates whose selection has not run yet (an unfinished grid): one row each.
            name = f"{name} [{row['param'].split('.')[-1]}={row['lam']:g}, not selected yet]"
        key = (row["grid"], row["setting"], device_label(row))
        groups[key].setdefault(name, []).append(row)
    names = [choice.name for choice in choices]
    if len(set(names)) < len(names):
        raise SystemExit(f"--choose: two choices share a name ({names})")
    for (grid, setting, _), methods in groups.items():
        clash = sorted(set(names) & set(methods))
        if clash:
            raise SystemExit(
                f"--choose {clash[0]!r}: {grid}: {setting} already has a method of that name; "
                "name the choice otherwise"
            )
        for choice in choices:
            if rows := chosen_runs(methods, choice):
                methods[choice.name] = rows
    return groups


def level_note(level: float) -> str:
    """The heading's note of a confidence level other than the default 95 %."""
    return "" if level == 0.95 else f", {100 * level:g} % intervals"
