"""A selection rule evaluated as a method: per seed, the candidate method whose run has the best
validation score (``summarize --choose``), what ``absgd tune`` over those candidates would keep
on that seed's run. Its rows pair with a base like any method's, so a rule (e.g. λ chosen on
validation top-1 at the training prior, λ = ∞ among the candidates) is tested on held-out
test numbers without choosing on them. A guard (``summarize --guard NAME METRIC DROP``, what
``absgd tune --guard`` does) limits the choice to the candidates whose validation METRIC is at
most DROP below the first candidate's (e.g. the base, λ = ∞, listed first); with
``--guard-confidence NAME LEVEL`` only where validation is that confident of it, from the kept
runs' predictions on the same validation images (``--runs``: the ``grid.py --keep-runs``
folders), what ``absgd tune --guard-confidence`` does. METRIC ``last`` takes the last listed
candidate the guard allows (``absgd tune --choose-last``: the sharpest λ within the guard);
``last:SCORE`` the last one whose validation SCORE is also at least the first candidate's
(``absgd tune --choose-last --not-worse --metric SCORE``: a gain check)."""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from absgd.selection import PairedDrop, last_allowed
from absgd.training.tune import (
    SCORES,
    check_confidence,
    check_drop,
    confident_drops,
    select_value,
    val_score,
    within,
    within_bound,
)

LAST = "last"
"""The --choose METRIC that takes the last listed candidate the guard allows; ``last:SCORE``
the last of those whose validation SCORE is at least the first candidate's."""


def _gain_score(metric: str) -> str | None:
    """The SCORE of a ``last:SCORE`` metric, else ``None``."""
    return metric.split(":", 1)[1] if metric.startswith(f"{LAST}:") else None


@dataclass(frozen=True)
class Choice:
    """The method ``name``: per seed, the run of whichever of ``candidates`` (methods of one
    table) has the highest validation ``metric`` (ties: the first listed); with a ``guard``
    (a score of :data:`SCORES`), among those whose validation ``guard`` is at most
    ``guard_drop`` (a fraction) below the first candidate's; with ``guard_confidence``, whose
    upper one-sided bound on that drop, paired image by image with the first candidate's run
    (found in the folders ``runs``), is at most ``guard_drop``."""

    name: str
    candidates: tuple[str, ...]
    metric: str
    guard: str | None = None
    guard_drop: float | None = None
    guard_confidence: float | None = None
    runs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.candidates) < 2 or len(set(self.candidates)) != len(self.candidates):
            raise ValueError(
                f"--choose {self.name!r} needs two or more different candidate methods "
                f"separated by '|', got {list(self.candidates)}"
            )
        if self.name in self.candidates:
            raise ValueError(f"--choose {self.name!r}: the name is one of its own candidates")
        gain = _gain_score(self.metric)
        if self.metric not in (*SCORES, LAST) and gain not in SCORES:
            raise ValueError(
                f"--choose {self.name!r}: metric must be one of {(*SCORES, LAST)} or "
                f"'{LAST}:SCORE' with SCORE one of {SCORES}, got {self.metric!r}"
            )
        if (self.metric == LAST or gain is not None) and self.guard is None:
            raise ValueError(
                f"--choose {self.name!r}: {LAST!r} takes the last candidate a guard allows; "
                f"give --guard {self.name!r}"
            )
        if (self.guard is None) != (self.guard_drop is None):
            raise ValueError(f"--choose {self.name!r}: a guard needs its metric and its drop")
        if self.guard is not None and self.guard not in SCORES:
            raise ValueError(
                f"--guard {self.name!r}: metric must be one of {SCORES}, got {self.guard!r}"
            )
        if self.guard_drop is not None:
            check_drop(self.guard_drop, f"--guard {self.name!r}: DROP")
        if self.guard_confidence is not None:
            if self.guard is None:
                raise ValueError(f"--guard-confidence {self.name!r}: needs --guard {self.name!r}")
            check_confidence(self.guard_confidence, f"--guard-confidence {self.name!r}: LEVEL")
            if not self.runs:
                raise ValueError(
                    f"--guard-confidence {self.name!r}: pass --runs, the folders of the kept "
                    "runs (grid.py --keep-runs), to pair their validation predictions"
                )


def _points(drop: float | None) -> str:
    """A guard's drop (a fraction) in points: ``1 point``, ``0.5 points``."""
    value = 100 * (drop or 0.0)
    return f"{value:g} point" + ("" if value == 1 else "s")


def parse_choice(
    name: str,
    candidates: str,
    metric: str,
    guard: tuple[str, str] | None = None,
    confidence: float | None = None,
    runs: tuple[str, ...] = (),
) -> Choice:
    """``--choose NAME "A | B | C" METRIC`` as a :class:`Choice`, with the ``(METRIC, DROP)``
    of its ``--guard NAME METRIC DROP``, if any, and the LEVEL of its ``--guard-confidence``
    with the ``--runs`` folders."""
    names = tuple(c.strip() for c in candidates.split("|") if c.strip())
    if guard is None:
        if confidence is not None:
            raise ValueError(f"--guard-confidence {name!r}: needs --guard {name!r}")
        return Choice(name, names, metric)
    try:
        drop = check_drop(float(guard[1]))
    except ValueError:
        raise ValueError(
            f"--guard {name!r}: DROP must be a fraction in [0, 1) (0.01 is one point of "
            f"accuracy), got {guard[1]!r}"
        ) from None
    return Choice(name, names, metric, guard[0], drop, confidence, tuple(runs))


def kept_run(row: dict[str, Any], folders: tuple[str, ...]) -> Path:
    """The directory ``grid.py --keep-runs`` kept for the run of ``row``, in the first of
    ``folders`` that has it; ``SystemExit`` naming it where none has."""
    from grids import GRIDS

    grid = GRIDS.get(row["grid"])
    if grid is None or row["method"] not in grid.methods:
        raise SystemExit(f"{row['grid']}: {row['method']!r} is not a method of a known grid")
    name = grid.run_name(row["grid"], row["setting"], row["method"], row.get("lam"), row["seed"])
    for folder in folders:
        if (Path(folder) / name / "model.pt").is_file():
            return Path(folder) / name
    raise SystemExit(
        f"--runs: no folder of {list(folders)} holds the run {name} (its model.pt; a run that "
        "diverged keeps none)"
    )


def _confident(
    runs: dict[str, dict[str, Any]], choice: Choice
) -> tuple[list[float], dict[str, PairedDrop | None]]:
    """The candidates (by index) the confident guard allows on one seed, and each one's drop
    below the first (``None`` for the first, and for a run that diverged)."""
    first = runs[choice.candidates[0]]
    seed = first["seed"]
    assert choice.guard is not None and choice.guard_drop is not None
    if first.get("metrics") is None or val_score(first, choice.guard) is None:
        return [], {}  # no bound without the reference's score, as the mean guard
    dirs: dict[float, dict[int, Path | None]] = {
        float(i): {seed: None if runs[c].get("metrics") is None else kept_run(runs[c], choice.runs)}
        for i, c in enumerate(choice.candidates)
    }
    drops = confident_drops(dirs, choice.guard)
    allowed = within_bound(drops, choice.guard_drop, choice.guard_confidence or 0.95)
    paired = {
        c: None if i == 0 or not drops[float(i)] else drops[float(i)][0]
        for i, c in enumerate(choice.candidates)
    }
    return allowed, paired


def _scores(
    runs: dict[str, dict[str, Any]], candidates: tuple[str, ...], metric: str
) -> dict[str, float | None]:
    """Each candidate run's validation ``metric``; ``None`` for a run that diverged."""
    return {
        c: None if runs[c].get("metrics") is None else val_score(runs[c], metric)
        for c in candidates
    }


def _indexed(
    scores: dict[str, float | None], candidates: tuple[str, ...]
) -> dict[float, list[float | None]]:
    """``scores`` keyed by each candidate's place in the list, as :func:`select_value` and
    :func:`within` take them (the first listed first)."""
    return {float(i): [scores[c]] for i, c in enumerate(candidates)}


def chosen_runs(methods: dict[str, list[dict[str, Any]]], choice: Choice) -> list[dict[str, Any]]:
    """The rows of ``choice`` in one table: for every seed on which each candidate has a run, a
    copy of the winning run renamed to the choice's name, with ``_chosen_from`` (its method) and
    ``_choice_scores`` (every candidate's score, ``None`` for a run that diverged or has no
    validation score: it cannot win, as in ``absgd tune``) and, with a guard,
    ``_guard_scores`` and ``_allowed`` (the candidates it allowed). A seed where no candidate
    can be chosen is left out, said on stderr. Empty when a candidate is absent from the
    table."""
    if any(c not in methods for c in choice.candidates):
        return []
    by_seed: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for cand in choice.candidates:
        for row in methods[cand]:
            if row["seed"] in by_seed and cand in by_seed[row["seed"]]:
                raise SystemExit(
                    f"--choose {choice.name!r}: {cand} has two runs of seed {row['seed']} in "
                    f"this table ({row['_file']}); give the files of one of them"
                )
            by_seed[row["seed"]][cand] = row
    out = []
    for seed in sorted(by_seed):
        runs = by_seed[seed]
        if len(runs) < len(choice.candidates):
            continue
        gain = _gain_score(choice.metric)
        last = choice.metric == LAST or gain is not None
        shown = gain or (choice.guard if choice.metric == LAST else choice.metric)
        assert shown is not None  # a guard is required with LAST
        scores = _scores(runs, choice.candidates, shown)
        # select_value keys by candidate value; an index keeps the listed order for ties
        among: list[float] | None = None
        guard_scores: dict[str, float | None] = {}
        paired: dict[str, PairedDrop | None] = {}
        if choice.guard is not None and choice.guard_drop is not None:
            guard_scores = _scores(runs, choice.candidates, choice.guard)
            if choice.guard_confidence is None:
                among = within(_indexed(guard_scores, choice.candidates), choice.guard_drop)
            else:
                among, paired = _confident(runs, choice)
        best, _ = select_value(_indexed(scores, choice.candidates), among=among)
        if last and among is not None:
            best = last_allowed(
                _indexed(scores, choice.candidates), among, not_worse=gain is not None
            )
        if best is None:
            why = (
                f"the first candidate has no validation {choice.guard}"
                if among == []
                else f"no candidate has a validation {shown}"
            )
            print(f"--choose {choice.name!r}: seed {seed} left out: {why}", file=sys.stderr)
            continue
        winner = choice.candidates[int(best)]
        guarded = (
            {}
            if among is None
            else {
                "_guard_scores": guard_scores,
                "_paired_drops": paired,
                "_allowed": [choice.candidates[int(i)] for i in among],
                "_guard_text": f", {choice.guard} within {_points(choice.guard_drop)}"
                + (
                    ""
                    if choice.guard_confidence is None
                    else f" at {100 * choice.guard_confidence:g} % confidence"
                ),
            }
        )
        out.append(
            {
                **runs[winner],
                **guarded,
                "method": choice.name,
                "_chosen_from": winner,
                "_choice_scores": scores,
                "_choice_metric": (
                    choice.metric
                    if not last
                    else "last listed"
                    if gain is None
                    else f"last listed with {gain} at least the first's"
                ),
                "_chose": False,
                "_tuned": False,
                "_candidate": False,
            }
        )
    return out


def choice_tables(
    groups: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]], choices: list[Choice]
) -> str:
    """Per table and choice: each seed's validation score of every candidate and the one
    chosen, then how often each candidate was chosen."""
    out = []
    for (grid, setting, device), methods in groups.items():
        for choice in choices:
            rows = methods.get(choice.name)
            if not rows:
                continue
            guard = ""
            if choice.guard is not None and choice.guard_drop is not None:
                guard = (
                    f" among the candidates whose validation {choice.guard} (in brackets) is at "
                    f"most {_points(choice.guard_drop)} below the first's (✗: ruled out)"
                )
                if choice.guard_confidence is not None:
                    level = f"{100 * choice.guard_confidence:g} %"
                    guard = (
                        f" among the candidates whose validation {choice.guard} (in brackets, "
                        f"then its paired drop below the first's ± its standard error and the "
                        f"upper {level} bound) is at most {_points(choice.guard_drop)} below the "
                        f"first's at {level} confidence (✗: ruled out)"
                    )
            gain = _gain_score(choice.metric)
            how = (
                "the last listed candidate"
                if choice.metric == LAST
                else f"the last listed candidate whose validation {gain} (shown) is at least the "
                "first's"
                if gain is not None
                else f"chosen per seed on validation {choice.metric}"
            )
            out.append(f"### {grid}: {setting} ({device}), {choice.name}: {how}{guard}\n")
            head = ["seed", *choice.candidates, "chosen"]
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            for row in rows:
                cells = [str(row["seed"])]
                for cand in choice.candidates:
                    score = row["_choice_scores"][cand]
                    text = "–" if score is None else f"{100 * score:.2f}"
                    if "_guard_scores" in row:
                        g = row["_guard_scores"][cand]
                        d = row["_paired_drops"].get(cand)
                        if d is not None:
                            bound = d.upper(choice.guard_confidence or 0.95)
                            text += (
                                f" ({'–' if g is None else f'{100 * g:.2f}'}; "
                                f"{100 * d.drop:+.2f} ± {100 * d.se:.2f}, ≤ {100 * bound:+.2f})"
                            )
                        else:
                            text += " (–)" if g is None else f" ({100 * g:.2f})"
                        if cand not in row["_allowed"]:
                            text += " ✗"
                    cells.append(f"**{text}**" if cand == row["_chosen_from"] else text)
                cells.append(row["_chosen_from"])
                out.append("| " + " | ".join(cells) + " |")
            counts = {c: sum(r["_chosen_from"] == c for r in rows) for c in choice.candidates}
            out.append("")
            out.append(
                "Chosen: " + ", ".join(f"{c} {n} of {len(rows)}" for c, n in counts.items()) + "."
            )
            out.append("")
    return "\n".join(out)
