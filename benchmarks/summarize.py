"""Turn grid results (JSON lines from ``grid.py``) into mean ± std markdown tables.

    python benchmarks/summarize.py benchmarks/results/fmnist_lt.jsonl [more.jsonl ...]
    python benchmarks/summarize.py FILE --pair CE ABSGD-ESS --pair LDAM-DRW "ABSGD-ESS + LDAM-DRW"

One table per grid and setting: a row per method with top-1, balanced accuracy, worst-class,
many / medium / few-shot accuracy (mean ± sample standard deviation over seeds, in %), the
number of seeds, the λ or target chosen on validation ("fixed" where there was one
candidate), how many runs validation selected before the ABSGD switch (their number is the
plain-SGD model), and the mean training time. Where runs evaluated the test split every epoch,
a last column gives the paper-style number (the best test epoch's top-1: optimistic, never
used for selection). Runs on different devices (CPU, a GPU's name) get separate tables. Only
the runs with the chosen value enter the tuned rows.

``--pair BASE METHOD`` adds a table of paired differences (METHOD − BASE, matched by seed):
mean and confidence interval (Student's t over the seeds; 95 % unless ``--confidence``) for
each metric, and the balanced-accuracy difference seed by seed, starred on the seed that chose
λ (its run won a selection on validation; the other seeds did not), and marked † where the two
runs of a seed trained differently before the switch (the ABSGD switch, or for a run without
ABSGD its DRW switch; their per-epoch training losses up to it are not identical: a different
stage-1 model, by design or, with the same config, by the machine's arithmetic), so part of
that seed's difference is not ABSGD's.
BASE may list several base methods separated by ``|`` (``"LDAM-DRW | LDAM-DRW, re-run"``): each seed
is then paired with the first listed base run of that seed that trained the same stage 1 as the
method's run (else the first listed, marked †), and a line under the table names each seed's
partner. It pairs a method with base runs from more than one session without pairing across
stage-1 models.
``--confidence LEVEL`` sets the paired intervals' level (default 0.95).
``--per-class`` adds, for each pair, a table by class: both methods' mean accuracy, the
paired difference with its interval (95 % unless ``--confidence``) and in how many seeds the
method was higher.
``--after-switch`` adds, per ABSGD method, the lowest effective sample size after the switch
and the largest fall of validation balanced accuracy below the switch epoch (worst seed; "none
(+r)" when it never fell below it, r its smallest rise).
``--candidates`` adds, per ABSGD method, every λ (or target) candidate on the seed that chose
among them: the validation score that chose, and the test numbers, which only report.
``--lam-scale`` adds one table over all files: every fixed-λ candidate on that seed with the
training loss at the switch, λ divided by it, and the effective sample size after the switch
(first epoch, lowest, last), to compare how sharp a λ was across losses and schedules.
``--curve K`` adds, where runs evaluated the test split every epoch, the mean test top-1 every
K epochs, its fall from each run's best test epoch to its last (how much of what the model
once knew about the clean test set it lost, e.g. by memorising noisy labels), and the test
top-1 at the epoch of best validation balanced accuracy (what early stopping would keep).
Test numbers only report; nothing here selects on them.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    ("top-1", "top1"),
    ("balanced", "balanced_accuracy"),
    ("worst class", "worst_class"),
    ("many", "many"),
    ("medium", "medium"),
    ("few", "few"),
)
PAIRED = (("top-1", "top1"), ("balanced", "balanced_accuracy"), ("worst class", "worst_class"))


def t_central(x: float, df: int) -> float:
    """``P(|T| ≤ x)`` for Student's t with ``df`` degrees of freedom, ``x ≥ 0``.

    The finite sums of Abramowitz & Stegun 26.7.3–4 in ``θ = atan(x / √df)``: for even
    ``df``, ``sin θ · Σ_{k<df/2} c_k cos^{2k} θ`` with ``c_0 = 1``, ``c_k = c_{k−1}(2k−1)/(2k)``;
    for odd ``df``, ``(2/π)(θ + sin θ · Σ_{k<(df−1)/2} d_k cos^{2k+1} θ)`` with ``d_0 = 1``,
    ``d_k = d_{k−1}(2k)/(2k+1)``.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    theta = math.atan(x / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c * c * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    term, total = c, 0.0
    for k in range((df - 1) // 2):
        if k:
            term *= c * c * (2 * k) / (2 * k + 1)
        total += term
    return (2 / math.pi) * (theta + s * total)


@functools.cache  # one bisection per (df, level), not one per table cell
def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom: the
    ``x`` with ``P(|T| ≤ x) = level`` (bisection on :func:`t_central`, to 1e-12 relative).
    Levels whose quantile exceeds 1e12 (e.g. 1 − 1e-16) are refused: no interval needs them."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")
    lo, hi = 0.0, 1.0
    while t_central(hi, df) < level:
        lo, hi = hi, 2 * hi
        if hi > 1e12:
            raise ValueError(
                f"confidence level {level} is too close to 1 for {df} degrees of freedom"
            )
    for _ in range(200):  # each halves the bracket; 200 is far more than 1e-12 relative needs
        if hi - lo <= 1e-12 * hi:
            break
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_central(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def paired(diffs: list[float], level: float = 0.95) -> str:
    """``mean [low, high]`` of paired differences (in points) with a ``level`` t interval."""
    n = len(diffs)
    if n == 0:
        return "–"
    mean = statistics.mean(diffs)
    if n == 1:
        return f"{mean:+.2f} (1 seed)"
    half = t_quantile(n - 1, level) * statistics.stdev(diffs) / n**0.5
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


def mean_std(values: Sequence[float | None]) -> str:
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


def lam_switch(row: dict[str, Any]) -> int | None:
    """The epoch after which a run's ABSGD weights start (``objective.lam_switch``), or None."""
    switch = ((row.get("config") or {}).get("objective") or {}).get("lam_switch")
    return None if switch is None else int(switch)


def before_switch(row: dict[str, Any]) -> bool:
    """Whether validation selected an epoch before the ABSGD switch (a plain-SGD model)."""
    switch = lam_switch(row)
    epoch = (row.get("metrics") or {}).get("selected_epoch")
    return switch is not None and epoch is not None and epoch <= switch


def after_switch(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """From a run's per-epoch curve: the lowest effective sample size after the ABSGD switch,
    and the largest fall of validation balanced accuracy below the switch epoch's (points)."""
    switch = lam_switch(row)
    curve = row.get("curve") or []
    if switch is None or not curve:
        return None, None
    at = [e for e in curve if e["epoch"] == switch]
    post = [e for e in curve if e["epoch"] > switch]
    ess = [e["ess"] for e in post if e.get("ess") is not None]
    drop = None
    if at and post and at[0].get("val_balanced_accuracy") is not None:
        vals = [
            e["val_balanced_accuracy"] for e in post if e.get("val_balanced_accuracy") is not None
        ]
        drop = 100 * (at[0]["val_balanced_accuracy"] - min(vals)) if vals else None
    return (min(ess) if ess else None), drop


def drop_text(drop: float | None) -> str:
    """A validation drop below the switch epoch in points; ``none (+r)`` when validation never
    fell below it (``r``: its smallest rise)."""
    if drop is None:
        return "–"
    return f"{drop:.1f}" if drop > 0 else f"none (+{abs(drop):.1f})"


def switch_tables(paths: list[str]) -> str:
    """Per ABSGD method: the worst over seeds of the lowest post-switch ESS and of the largest
    post-switch drop of validation balanced accuracy (what a collapse looks like)."""
    out = []
    for (grid, setting, device), methods in _groups(paths, None).items():
        rows_out = []
        for method, rows in methods.items():
            stats = [after_switch(r) for r in rows]
            ess = [e for e, _ in stats if e is not None]
            drops = [d for _, d in stats if d is not None]
            if ess or drops:
                low = f"{min(ess):.3f}" if ess else "–"
                worst = drop_text(max(drops)) if drops else "–"
                rows_out.append(f"| {method} | {low} | {worst} | {len(stats)} |")
        if rows_out:
            out.append(f"### {grid}: {setting} ({device}), after the switch\n")
            out.append("| method | lowest ESS | largest validation drop (points) | runs |")
            out.append("|---|---|---|---|")
            out.extend(rows_out)
            out.append("")
    return "\n".join(out)


def _candidate_groups(
    paths: list[str], least: int = 2
) -> list[tuple[tuple[str, str, str, str, str], dict[str, Any] | None, list[dict[str, Any]]]]:
    """Per ABSGD method with at least ``least`` candidates: ``((file, grid, setting, method,
    device), selection line or None, the candidates' runs on the seed that chose, by value)``;
    without a selection line yet, the lowest seed's runs."""
    runs, chosen = load(paths)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in runs:
        if row.get("param") is not None:
            key = (row["_file"], row["grid"], row["setting"], row["method"], device_label(row))
            groups[key].append(row)
    out = []
    for (path, grid, setting, method, device), rows in groups.items():
        selection = chosen.get((path, grid, setting, method))
        seed = selection["seed"] if selection else min(r["seed"] for r in rows)
        candidates = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["lam"])
        if len(candidates) >= least:
            out.append(((path, grid, setting, method, device), selection, candidates))
    return out


def _selection_score(row: dict[str, Any], selection: dict[str, Any] | None) -> float | None:
    """The validation score a candidate's selection used (its run's own as a fallback)."""
    scores = {float(k): v for k, v in ((selection or {}).get("scores") or {}).items()}
    metric = (selection or {}).get("metric", "val balanced_accuracy")
    return scores.get(float(row["lam"]), (row.get("val") or {}).get(metric.split()[-1]))


def candidate_tables(paths: list[str]) -> str:
    """Per ABSGD method with λ candidates: each candidate's run on the seed that chose (the
    validation score that chose it, then test numbers that only report), the chosen one in
    bold; candidates whose choice has not run yet are listed without a mark."""
    out = []
    for (_, grid, setting, method, device), selection, candidates in _candidate_groups(paths):
        seed = candidates[0]["seed"]
        param = candidates[0]["param"].split(".")[-1]
        metric = (selection or {}).get("metric", "val balanced_accuracy")
        out.append(
            f"### {grid}: {setting} ({device}), {method}: the {param} candidates, seed {seed}\n"
        )
        head = [param, f"{metric} (chose)", "test balanced", "worst class (test)",
                "paper-style top-1", "lowest ESS after switch",
                "largest validation drop"]  # fmt: skip
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for r in candidates:
            m = r.get("metrics") or {}
            ess, drop = after_switch(r)
            score = _selection_score(r, selection)
            style = (m.get("paper_style") or {}).get("best_test_top1")
            mark = "**" if selection is not None and r["lam"] == selection["lam"] else ""
            cells = [
                f"{mark}{r['lam']:g}{mark}",
                "–" if score is None else f"{100 * score:.1f}",
                "diverged" if not m else f"{100 * m['balanced_accuracy']:.2f}",
                "–" if not m else f"{100 * min(m['per_class_accuracy']):.1f}",
                "–" if style is None else f"{100 * style:.2f}",
                "–" if ess is None else f"{ess:.3f}",
                drop_text(drop),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def loss_at_switch(row: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """From a run's curve: the mean training loss of the switch epoch (the last of stage 1,
    the scale λ meets when ABSGD starts), and the effective sample size of the first epoch
    after it and of the last epoch."""
    switch = lam_switch(row)
    curve = row.get("curve") or []
    if switch is None or not curve:
        return None, None, None
    by_epoch = {e["epoch"]: e for e in curve}
    last = max(by_epoch)
    return (
        (by_epoch.get(switch) or {}).get("train_loss"),
        (by_epoch.get(switch + 1) or {}).get("ess"),
        by_epoch[last].get("ess") if last > switch else None,
    )


def _blew_up_after_switch(row: dict[str, Any]) -> bool:
    """True when the run trained past its switch without one epoch's effective sample size: the
    weights were not finite, so it diverged, even if it kept an earlier selected model (and
    so has test metrics)."""
    switch = lam_switch(row)
    after = [e for e in row.get("curve") or [] if switch is not None and e["epoch"] > switch]
    return bool(after) and all(e.get("ess") is None for e in after)


def lam_scale_table(paths: list[str]) -> str:
    """One table over every file: each fixed λ (``objective.lam``) on the seed that chose among
    a method's candidates (or its one run there), with the training loss at the switch, λ
    divided by it, and the effective sample size in the first epoch after the switch, at its
    lowest after it and in the last epoch; the chosen λ in bold; a run that diverged says so.
    How sharp a λ is depends on the losses it meets, so this puts every grid's λ beside the
    loss and the sharpness. Methods with λ fixed in their overrides (no ``param``) are not
    listed."""
    rows_out = []
    for key, selection, candidates in _candidate_groups(paths, least=1):
        path, _, setting, method, device = key
        if candidates[0]["param"] != "objective.lam":
            continue
        for r in candidates:
            loss, first, last = loss_at_switch(r)
            low, _ = after_switch(r)
            score = _selection_score(r, selection)
            mark = "**" if selection is not None and r["lam"] == selection["lam"] else ""
            gone = "diverged" if not r.get("metrics") or _blew_up_after_switch(r) else "–"
            cells = [
                Path(path).stem,
                f"{setting} ({device})",
                method,
                f"{mark}{r['lam']:g}{mark}",
                "–" if loss is None else f"{loss:.3f}",
                "–" if not loss else f"{r['lam'] / loss:.1f}",
                gone if first is None else f"{first:.3f}",
                gone if low is None else f"{low:.3f}",
                gone if last is None else f"{last:.3f}",
                "–" if score is None else f"{100 * score:.1f}",
            ]
            rows_out.append("| " + " | ".join(cells) + " |")
    if not rows_out:
        return ""
    head = ["results file", "setting", "method", "λ", "training loss at the switch", "λ / loss",
            "ESS, first epoch after", "lowest ESS after", "ESS, last epoch",
            "validation score"]  # fmt: skip
    out = ["### λ against the loss it meets: every fixed λ, on the seed that chose\n"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows_out, ""]
    return "\n".join(out)


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
    for (grid, setting, device), methods in _groups(paths, None).items():
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


def _groups(
    paths: list[str], shots: tuple[int, int] | None
) -> dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]]:
    runs, chosen = load(paths)
    for row in (r for r in runs if r.get("metrics") is not None):
        m = row["metrics"]
        extra: dict[str, Any] = {"worst_class": min(m["per_class_accuracy"])}
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
    return groups


def _level_note(level: float) -> str:
    """The heading's note of a confidence level other than the default 95 %."""
    return "" if level == 0.95 else f", {100 * level:g} % intervals"


def pair_tables(
    paths: list[str],
    pairs: list[tuple[str, str]],
    shots: tuple[int, int] | None = None,
    level: float = 0.95,
) -> str:
    """Paired differences METHOD − BASE (points), matched by seed, per grid and setting, with
    ``level`` t intervals."""
    out = []
    for (grid, setting, device), methods in _groups(paths, shots).items():
        present = [(b, m) for b, m in pairs if _has_base(methods, b) and m in methods]
        if not present:
            continue
        out.append(f"### {grid}: {setting} ({device}), paired by seed{_level_note(level)}\n")
        head = ["method − base", "seeds", *(name for name, _ in PAIRED), "paper-style top-1"]
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
            for _, key in (*PAIRED, ("", "paper_top1")):
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


def per_class_tables(paths: list[str], pairs: list[tuple[str, str]], level: float = 0.95) -> str:
    """Per pair, per class (largest training class first): the mean test accuracy of base and
    method over the paired seeds, METHOD − BASE (points) with its ``level`` interval, and in how
    many seeds the method was higher. Where a gain or loss sits (head or tail), which the
    balanced mean hides."""
    out = []
    for (grid, setting, device), methods in _groups(paths, None).items():
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
                f"### {grid}: {setting} ({device}), {method} − {base} by class"
                f"{_level_note(level)}\n"
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


def tables(paths: list[str], shots: tuple[int, int] | None = None) -> str:
    """Markdown tables of the runs in ``paths``; ``shots=(many, few)`` regroups the classes
    into many / medium / few by those training-set sizes (default: as each run recorded)."""
    groups = _groups(paths, shots)
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
            cells.append("–" if lam is None else f"{lam:g}{kind}")
            switch = lam_switch(rows[0])
            cells.append("–" if switch is None else f"{early} of {len(rows)}")
            times = [r["train_wall_seconds"] for r in rows if r["train_wall_seconds"] is not None]
            cells.append(f"{statistics.mean(times):.0f} s" if times else "–")
            if styled:
                cells.append(mean_std([r["metrics"].get("paper_top1") for r in rows]))
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
    p.add_argument(
        "--pair",
        nargs=2,
        action="append",
        default=[],
        metavar=("BASE", "METHOD"),
        help="also tabulate METHOD − BASE paired by seed, with 95 %% intervals unless "
        "--confidence (repeatable); BASE may list base methods separated by '|', and each seed "
        "pairs with the first whose run shares its stage 1",
    )
    p.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        metavar="LEVEL",
        help="the paired intervals' confidence level, strictly between 0 and 1 (default 0.95; "
        "e.g. 0.975 for the second of two looks at one comparison)",
    )
    p.add_argument(
        "--per-class",
        action="store_true",
        help="with --pair: also tabulate each pair's accuracy and paired difference per class",
    )
    p.add_argument(
        "--after-switch",
        action="store_true",
        help="also tabulate the lowest ESS and the largest validation drop after the switch",
    )
    p.add_argument(
        "--candidates",
        action="store_true",
        help="also tabulate every λ / target candidate on the seed that chose among them",
    )
    p.add_argument(
        "--lam-scale",
        action="store_true",
        help="also tabulate every fixed-λ candidate against the training loss at the switch "
        "and the effective sample size after it, over all files in one table",
    )
    p.add_argument(
        "--curve",
        type=int,
        metavar="K",
        help="also tabulate the mean test top-1 every K epochs and the fall from the best "
        "test epoch to the last (runs with train.test_every=1)",
    )
    args = p.parse_args(argv)
    if args.curve is not None and args.curve < 1:
        p.error(f"--curve needs a positive number of epochs, got {args.curve}")
    if args.shots is not None and not 0 < args.shots[1] <= args.shots[0]:
        p.error(f"--shots needs 0 < FEW <= MANY, got MANY={args.shots[0]} FEW={args.shots[1]}")
    shots = tuple(args.shots) if args.shots else None
    if not 0 < args.confidence < 1:
        p.error(f"--confidence must lie strictly between 0 and 1, got {args.confidence}")
    if args.per_class and not args.pair:
        p.error("--per-class tabulates the pairs given with --pair; give at least one --pair")
    print(tables(args.files, shots))
    if args.pair:
        print(pair_tables(args.files, [tuple(p) for p in args.pair], shots, args.confidence))
    if args.per_class:
        print(per_class_tables(args.files, [tuple(p) for p in args.pair], args.confidence))
    if args.after_switch:
        print(switch_tables(args.files))
    if args.candidates:
        print(candidate_tables(args.files))
    if args.lam_scale:
        print(lam_scale_table(args.files))
    if args.curve is not None:
        print(curve_tables(args.files, args.curve))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
