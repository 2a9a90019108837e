"""What happened after the ABSGD switch: the lowest effective sample size, the largest
validation drop, the λ candidates of a selection and how sharp each fixed λ was against the
loss it met."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from summary.runs import device_label, lam_switch, load, method_groups


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


def largest_step_scale(row: dict[str, Any]) -> float | None:
    """The largest epoch-mean step scale after the ABSGD switch (``None`` where the run did
    not record it, runs made before the step scale existed, or has no λ switch)."""
    switch = lam_switch(row)
    scales = [
        e["step_scale"]
        for e in row.get("curve") or []
        if switch is not None and e["epoch"] > switch and e.get("step_scale") is not None
    ]
    return max(scales) if scales else None


WARNING_LABELS = {"low_ess": "low ESS", "large_step": "large step"}
"""How the tables name the kinds of ``final.json["warnings"]``."""


def warning_kinds(row: dict[str, Any]) -> list[str] | None:
    """The kinds of warning a run drew, in :data:`WARNING_LABELS`' order (``[]``: none), or
    ``None`` where its line does not say (runs made before the warnings were recorded)."""
    drawn = row.get("warnings")
    if drawn is None:
        return None
    order = list(WARNING_LABELS)  # known kinds first, in this order; others after, by name
    kinds = sorted(
        {w["kind"] for w in drawn}, key=lambda k: (order.index(k) if k in order else len(order), k)
    )
    return [WARNING_LABELS.get(k, k) for k in kinds]


def drop_text(drop: float | None) -> str:
    """A validation drop below the switch epoch in points; ``none (+r)`` when validation never
    fell below it (``r``: its smallest rise)."""
    if drop is None:
        return "–"
    return f"{drop:.1f}" if drop > 0 else f"none (+{abs(drop):.1f})"


def switch_tables(paths: list[str]) -> str:
    """Per ABSGD method: the worst over seeds of the lowest post-switch ESS and of the largest
    post-switch drop of validation balanced accuracy (what a collapse looks like), the largest
    step scale and how many runs drew each warning, where runs recorded them."""
    out = []
    for (grid, setting, device), methods in method_groups(paths, None).items():
        rows_out = []
        for method, rows in methods.items():
            stats = [after_switch(r) for r in rows]
            ess = [e for e, _ in stats if e is not None]
            drops = [d for _, d in stats if d is not None]
            scales = [s for s in map(largest_step_scale, rows) if s is not None]
            kinds = [k for k in map(warning_kinds, rows) if k is not None]
            labels = list(dict.fromkeys([*WARNING_LABELS.values(), *(x for k in kinds for x in k)]))
            if ess or drops:
                drawn = [f"{label} {sum(label in k for k in kinds)}" for label in labels
                         if any(label in k for k in kinds)]  # fmt: skip
                of = f" (of {len(kinds)})" if len(kinds) < len(rows) else ""
                rows_out.append({
                    "method": method,
                    "lowest ESS": f"{min(ess):.3f}" if ess else "–",
                    "largest validation drop (points)": drop_text(max(drops)) if drops else "–",
                    "largest step scale": f"{max(scales):.2f}" if scales else None,
                    "warnings (runs)": (", ".join(drawn) or "none") + of if kinds else None,
                    "runs": str(len(stats)),
                })  # fmt: skip
        if rows_out:
            head = [k for k in rows_out[0] if any(r[k] is not None for r in rows_out)]
            out.append(f"### {grid}: {setting} ({device}), after the switch\n")
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            for r in rows_out:
                out.append("| " + " | ".join(r[k] or "–" for k in head) + " |")
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
        any_scale = any(largest_step_scale(r) is not None for r in candidates)
        any_kinds = any(warning_kinds(r) is not None for r in candidates)
        head = [param, f"{metric} (chose)", "test balanced", "worst class (test)",
                "paper-style top-1", "lowest ESS after switch",
                "largest validation drop"]  # fmt: skip
        head += ["largest step scale after switch"] if any_scale else []
        head += ["warnings"] if any_kinds else []
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
            if any_scale:
                scale = largest_step_scale(r)
                cells.append("–" if scale is None else f"{scale:.2f}")
            if any_kinds:
                kinds = warning_kinds(r)
                cells.append("–" if kinds is None else ", ".join(kinds) or "none")
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
