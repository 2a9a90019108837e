"""Choosing a hyper-parameter on the validation split: the engine of ``absgd tune`` and of the
benchmark grids.

A *trial* is one training run of a config with one candidate value and one seed. Its record
(a JSON line) holds the test metrics of the model selected on validation, the validation
metrics at that epoch, the epoch, whether the run diverged, and the wall time. A trials file
is the state of a search: trials already in it are skipped, and a trial whose run directory
holds a checkpoint resumes from it, so an interrupted search continues where it stopped.

Selection reads the validation split only: the candidate with the best mean validation score
over the seeds it ran with, optionally among those a *guard* allows (:func:`within`: at most a
stated drop below the first candidate's mean on a second validation score; or, with a
confidence, only where validation is that confident of it: :func:`confident_drops` pairs each
candidate's validation predictions with the first candidate's, image by image). The test metrics
are recorded for reporting, never used here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from absgd.fileio import write_json, write_text
from absgd.metrics import prior_accuracy
from absgd.selection import (
    PairedDrop,
    check_confidence,
    check_drop,
    combine_drops,
    last_allowed,
    mean_scores,
    paired_drop,
    select_value,
    within,
    within_bound,
)
from absgd.training.checkpoint import CHECKPOINT_NAME
from absgd.training.config import RunConfig, comparable, config_to_dict, dump_yaml, load_config
from absgd.training.reporting import drawn_warnings

__all__ = [
    "METRICS",
    "TrialLog",
    "TuneResult",
    "check_confidence",
    "check_drop",
    "confident_drops",
    "run_trial",
    "score_class_weights",
    "select_value",
    "tune",
    "value_text",
    "within",
]

METRICS = (
    "top1",
    "top5",
    "balanced_accuracy",
    "macro_f1",
    "many",
    "medium",
    "few",
    "per_class_accuracy",
    "train_class_counts",
    "selected_epoch",
    "shot_num_classes",
    "paper_style",
)
"""Keys of ``final.json`` copied into a trial record (test split, the selected model)."""

SCORES = ("balanced_accuracy", "top1", "top1_train_prior")
"""Validation scores a selection may use: ``top1_train_prior`` is validation top-1 at the
training prior (:func:`absgd.metrics.prior_accuracy` of the validation per-class accuracies at
the training class counts), the score where the deployment keeps the training skew, on any
validation split (a balanced one included)."""


def score_class_weights(metric: str, train_counts: Sequence[float]) -> Sequence[float] | None:
    """How the validation score ``metric`` (one of :data:`SCORES`) weighs each class's accuracy,
    as :func:`absgd.selection.paired_drop` takes it: ``None`` for top-1 (the split's own class
    counts), equal weights for balanced accuracy, the training class counts for top-1 at the
    training prior."""
    if metric == "top1":
        return None
    if metric == "balanced_accuracy":
        return [1.0] * len(train_counts)
    if metric == "top1_train_prior":
        return train_counts
    raise ValueError(f"metric must be one of {SCORES}, got {metric!r}")


def confident_drops(
    runs: dict[float, dict[int, Path | None]], metric: str, *, data_root: str | None = None
) -> dict[float, list[PairedDrop | None]]:
    """Each candidate's drop in validation ``metric`` below the first candidate's, from the
    runs' predictions on the validation images
    (:func:`absgd.training.evaluation.split_predictions`, kept in each run directory, and
    :func:`absgd.selection.paired_drop`): ``runs`` maps each candidate, the reference first,
    to its run directory per seed (``None`` for a run with no model: diverged). Per candidate
    one entry per validation split: the seeds scored on the same images (the same
    ``data.val_seed``) are paired in one drop, their per-image differences averaged, so that an
    image counts once; seeds on other splits give further entries (independent samples, for
    :func:`absgd.selection.combine_drops`); a seed where either run has no model gives
    ``None``. The first candidate's own entry is empty.

    Raises:
        ValueError: a candidate's run and the reference's of one seed scored on different
            images (another split).
    """
    from absgd.training.evaluation import split_predictions

    values = list(runs)
    out: dict[float, list[PairedDrop | None]] = {v: [] for v in values}
    if not values:
        return out
    reference = runs[values[0]]
    for value in values[1:]:
        splits: dict[str, tuple[np.ndarray, Any, list[np.ndarray], list[np.ndarray]]] = {}
        for seed, run_dir in runs[value].items():
            ref_dir = reference.get(seed)
            if run_dir is None or ref_dir is None:
                out[value].append(None)
                continue
            ref = split_predictions(ref_dir, data_root=data_root)
            cand = split_predictions(run_dir, data_root=data_root)
            if ref.inputs_sha256 != cand.inputs_sha256 or not np.array_equal(
                ref.labels, cand.labels
            ):
                raise ValueError(
                    f"{run_dir} and {ref_dir} (seed {seed}) were validated on different "
                    "images; a confident guard pairs runs of one validation split"
                )
            weights = score_class_weights(metric, ref.train_counts.tolist())
            _, _, refs, cands = splits.setdefault(ref.inputs_sha256, (ref.labels, weights, [], []))
            refs.append(ref.predicted)
            cands.append(cand.predicted)
        for labels, weights, refs, cands in splits.values():
            out[value].append(paired_drop(labels, np.stack(refs), np.stack(cands), weights))
    return out


def value_text(value: float) -> str:
    """A candidate value as YAML reads it back (``.inf`` for infinity)."""
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


def run_trial(cfg: RunConfig, run_dir: Path, *, reporter: Any = None) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (resuming a checkpoint found there) and return its record.

    A run that diverges (:class:`absgd.training.TrainingDiverged`) is a result, recorded with
    ``metrics: null`` and the message under ``diverged``.
    """
    from absgd.training.runner import train
    from absgd.training.stopping import TrainingDiverged

    started = time.perf_counter()
    final: dict[str, Any] | None = None
    diverged: str | None = None
    final_path = run_dir / "final.json"
    try:
        if final_path.is_file():  # finished, but its record was not written
            final = json.loads(final_path.read_text(encoding="utf-8"))
        else:
            resume = (run_dir / CHECKPOINT_NAME).is_file()
            final = train(cfg, run_dir, resume=resume, reporter=reporter)
    except TrainingDiverged as err:
        diverged = str(err)
    o = cfg.objective
    history = _history(run_dir / "metrics.jsonl")
    record: dict[str, Any] = {
        "metrics": None if final is None else {k: final.get(k) for k in METRICS},
        "val": None if final is None else final.get("val_at_selected_epoch"),
        "switch_epoch": o.lam_switch if o.weighting == "absgd" else None,
        "curve": _curve(history),
        "run_wall_seconds": time.perf_counter() - started,
        "train_wall_seconds": None if final is None else final.get("wall_seconds"),
        "environment": None if final is None else final.get("environment"),
        "branched_from": None if final is None else final.get("branched_from"),
        # a diverged run has no final.json; its metrics.jsonl keeps what it warned about
        "warnings": final.get("warnings") if final is not None else drawn_warnings(history),
    }
    if diverged is not None:
        record["diverged"] = diverged
    return record


def _history(path: Path) -> list[dict[str, Any]]:
    """A run's per-epoch records (``metrics.jsonl``; none if it has not ended an epoch)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _curve(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per epoch: λ in force, effective sample size (and step scale, where the run recorded
    it), training loss, validation balanced /
    top-1 / worst-class accuracy (what shows a collapse after a switch) and, on the epochs
    that evaluated it (``train.test_every``), test top-1 and balanced accuracy: the curve of
    a report (e.g. a clean test set falling as the noisy labels are memorised), never read
    for selection."""
    curve = []
    for r in history:
        val = r.get("val") or {}
        test = r.get("test") or {}
        per_class = val.get("per_class_accuracy")
        scale = {"step_scale": r["step_scale"]} if "step_scale" in r else {}
        curve.append(
            {
                "epoch": r.get("epoch"),
                "lam": r.get("lam"),
                "ess": r.get("effective_sample_size"),
                **scale,
                "train_loss": r.get("train_loss"),
                "val_balanced_accuracy": val.get("balanced_accuracy"),
                "val_top1": val.get("top1"),
                "val_worst_class": min(per_class) if per_class else None,
                "test_top1": test.get("top1"),
                "test_balanced_accuracy": test.get("balanced_accuracy"),
            }
        )
    return curve


def top1_at_counts(per_class: list[float | None] | None, counts: list[int] | None) -> float | None:
    """Top-1 at the class prior ``counts`` from a record's per-class accuracies (``None`` for
    an absent class): :func:`absgd.metrics.prior_accuracy`, or ``None`` where either list is
    missing or no class with a count has an accuracy."""
    if not counts or not per_class:
        return None
    if len(counts) != len(per_class):
        raise ValueError(
            f"{len(counts)} class counts against {len(per_class)} per-class accuracies: "
            "a record of another data set"
        )
    if sum(n for n, a in zip(counts, per_class, strict=True) if a is not None) <= 0:
        return None
    return prior_accuracy([math.nan if a is None else a for a in per_class], counts)


def val_score(record: dict[str, Any], metric: str) -> float | None:
    """The validation score ``metric`` (one of :data:`SCORES`) of a trial, or ``None`` (no
    validation split, or diverged). ``top1_train_prior`` is computed from the validation
    per-class accuracies and the trial's training class counts (so records written before it
    existed score too); ``None`` where no class with training images has a validation accuracy.
    It is read at the epoch the run selected (``train.select``: the last, or the best on its own
    validation metric)."""
    val = record.get("val") or {}
    if metric == "top1_train_prior":
        counts = (record.get("metrics") or {}).get("train_class_counts")
        return top1_at_counts(val.get("per_class_accuracy"), counts)
    if metric not in SCORES:
        raise ValueError(f"metric must be one of {SCORES}, got {metric!r}")
    value = val.get(metric)
    return None if value is None else float(value)


class TrialLog:
    """An append-only JSON-lines file of trial records, keyed by some of their fields."""

    def __init__(self, path: Path, key_fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.key_fields = tuple(key_fields)

    def key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row.get(k) for k in self.key_fields)

    def rows(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every record (of ``kind``), in the order written."""
        if not self.path.is_file():
            return []
        with self.path.open("rb") as fh, _locked(fh.fileno(), exclusive=False):
            text = fh.read().decode("utf-8")
        out = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                # A line cut short by a crash is the only way a line can be broken here.
                raise ValueError(
                    f"{self.path}, line {number}, is not JSON (cut short?); remove that line "
                    "to continue"
                ) from None
            if kind is None or row.get("kind") == kind:
                out.append(row)
        return out

    def runs(self) -> dict[tuple[Any, ...], dict[str, Any]]:
        return {self.key(r): r for r in self.rows("run")}

    def append(self, row: dict[str, Any]) -> None:
        """Add one line, whole: several processes may append to the same file (the parallel
        grids do), so the line goes out under an exclusive lock, at the end of the file."""
        data = (json.dumps(plain_json(row), allow_nan=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            with _locked(fd, exclusive=True):
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


@contextlib.contextmanager
def _locked(fd: int, exclusive: bool) -> Iterator[None]:
    """An advisory ``flock`` on ``fd`` where the platform has one (POSIX), else nothing."""
    try:
        import fcntl
    except ImportError:  # Windows: appends of one process at a time only
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def plain_json(value: Any) -> Any:
    """``value`` as strict JSON takes it: tuples as lists, ±infinity as ``"inf"``/``"-inf"``
    (a config may hold λ = ∞), NaN as ``None``."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


@dataclass(frozen=True)
class TuneResult:
    """What ``absgd tune`` found: the chosen value, the mean validation score of each candidate
    and every trial record; with a guard, its metric, drop, each candidate's mean guard score
    and the candidates it allowed."""

    param: str
    metric: str
    best: float | None
    means: dict[float, float | None]
    trials: list[dict[str, Any]]
    config: RunConfig | None
    """The config with the chosen value (``None`` if every candidate failed)."""
    guard: str | None = None
    guard_drop: float | None = None
    guard_means: dict[float, float | None] | None = None
    allowed: tuple[float, ...] | None = None
    guard_confidence: float | None = None
    guard_drops: dict[float, PairedDrop | None] | None = None
    """With a confident guard: each candidate's validation drop below the first, over its
    seeds (:func:`absgd.selection.combine_drops`; ``None`` where a run has none)."""


def _slug(param: str, value: float, seed: int) -> str:
    text = f"{param.split('.')[-1]}={value_text(value)}-s{seed}"
    return "".join(ch if ch.isalnum() or ch in "=.-_" else "_" for ch in text)


def tune(
    config: str | Path,
    param: str,
    values: Sequence[float],
    out_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    seeds: Sequence[int] = (0,),
    metric: str = "balanced_accuracy",
    guard: str | None = None,
    guard_drop: float | None = None,
    guard_confidence: float | None = None,
    choose_last: bool = False,
    not_worse: bool = False,
    progress: Callable[[str], None] | None = None,
    reporter: Any = None,
) -> TuneResult:
    """Train ``config`` once per candidate ``value`` of ``param`` and seed, into ``out_dir``,
    and choose the value with the best mean validation ``metric``; with ``guard`` (one of
    :data:`SCORES`), only among the values whose mean validation ``guard`` is at most
    ``guard_drop`` below the first value's (:func:`within`; list the plain setting first, e.g.
    ``values=[inf, 300, 100]``, ``metric="balanced_accuracy"``, ``guard="top1"``,
    ``guard_drop=0.01``: the best balanced accuracy that gives up at most one point of
    validation top-1). With ``guard_confidence`` (e.g. 0.95) the guard allows a value only
    where the upper one-sided confidence bound of its drop, paired image by image with the first
    value's run of the same seed, is at most ``guard_drop`` (:func:`confident_drops`,
    :func:`absgd.selection.within_bound`): a drop validation cannot tell from its noise is not
    taken for none. With ``choose_last`` the choice is the last listed value the guard allows
    (:func:`absgd.selection.last_allowed`; list the values from the plainest to the sharpest,
    e.g. ``[inf, 1000, 300]``) instead of the best ``metric``, which is then only reported.
    With ``not_worse`` as well, only among the allowed values whose mean validation ``metric``
    is at least the first value's (:func:`absgd.selection.not_below_first`): the sharpest λ
    within the guard that does not score below λ = ∞ on ``metric`` (e.g. balanced accuracy).

    ``out_dir`` receives ``trials.jsonl`` (one line per trial; the search's state), one run
    directory per trial, ``selection.json`` and ``selected.yaml`` (the config with the chosen
    value, ready for ``absgd train --config``; removed, if an earlier search left one, when
    nothing is chosen). Running it again with the same arguments
    skips finished trials and resumes interrupted ones.

    Raises:
        ValueError: no candidates, a metric or guard not in :data:`SCORES`, a guard without
            its drop (or a drop without a guard, or one not in [0, 1)), a confidence without a
            guard or not in [0.5, 1), ``choose_last`` without a guard, ``not_worse`` without
            ``choose_last``, or a config without a validation split (``data.val_source:
            none``).
    """
    from absgd.training.config import ConfigError

    if not values:
        raise ValueError("tune needs at least one candidate value")
    if metric not in SCORES:
        raise ValueError(f"metric must be one of {SCORES}, got {metric!r}")
    if (guard is None) != (guard_drop is None):
        raise ValueError(
            f"a guard needs both its metric and its drop, got guard={guard!r}, "
            f"guard_drop={guard_drop!r}"
        )
    if guard is not None and guard not in SCORES:
        raise ValueError(f"guard must be one of {SCORES}, got {guard!r}")
    if guard_drop is not None:
        guard_drop = check_drop(guard_drop)  # fails before any training
    if guard_confidence is not None:
        if guard is None:
            raise ValueError(
                f"a guard's confidence needs a guard, got guard_confidence={guard_confidence!r} "
                "and no guard"
            )
        guard_confidence = check_confidence(guard_confidence)
    if choose_last and guard is None:
        raise ValueError("choose_last takes the last value a guard allows; give a guard")
    if not_worse and not choose_last:
        raise ValueError(
            "not_worse checks the gain of choose_last's choice; give choose_last (and a guard)"
        )
    if not seeds:
        raise ValueError("tune needs at least one seed")
    out = Path(out_dir).expanduser()
    base = [*overrides]
    configs: dict[tuple[float, int], RunConfig] = {}
    for value in values:
        for seed in seeds:
            try:
                cfg = load_config(
                    config, [*base, f"{param}={value_text(value)}", f"train.seed={seed}"]
                )
            except ConfigError as err:
                raise ConfigError(f"{param}={value_text(value)}: {err}") from None
            if cfg.data.val_source == "none":
                raise ValueError(
                    "tune selects on the validation split, but the config has "
                    "data.val_source=none; use split or leftover"
                )
            configs[(value, seed)] = cfg
    log = TrialLog(out / "trials.jsonl", ("param", "value", "seed"))
    done = log.runs()
    trials: list[dict[str, Any]] = []
    for (value, seed), cfg in configs.items():
        key = (param, value, seed)
        if key in done:
            if comparable(done[key].get("config") or {}) != comparable(
                plain_json(config_to_dict(cfg))
            ):
                raise ValueError(
                    f"{log.path} holds a trial {param}={value_text(value)}, seed {seed} of "
                    "another config (other --config or --set); use another --out for this "
                    "search"
                )
            trials.append(done[key])
            continue
        if progress:
            progress(f"{param}={value_text(value)} seed {seed} ...")
        record = run_trial(cfg, out / _slug(param, value, seed), reporter=reporter)
        row = {
            "kind": "run",
            "param": param,
            "value": value,
            "seed": seed,
            **record,
            "config": config_to_dict(cfg),
        }
        log.append(row)
        trials.append(row)
    scores: dict[float, list[float | None]] = {v: [] for v in values}
    for row in trials:
        scores[row["value"]].append(val_score(row, metric))
    allowed: list[float] | None = None
    guard_means: dict[float, float | None] | None = None
    guard_drops: dict[float, PairedDrop | None] | None = None
    if guard is not None and guard_drop is not None:
        guarded: dict[float, list[float | None]] = {v: [] for v in values}
        for row in trials:
            guarded[row["value"]].append(val_score(row, guard))
        guard_means = mean_scores(guarded)
        if guard_confidence is None:
            allowed = within(guarded, guard_drop)
        else:
            by_value: dict[float, dict[int, Path | None]] = {v: {} for v in values}
            for row in trials:
                run = out / _slug(param, row["value"], row["seed"])
                by_value[row["value"]][row["seed"]] = None if row.get("diverged") else run
            drops = confident_drops(by_value, guard)
            allowed = within_bound(drops, guard_drop, guard_confidence)
            if guard_means.get(values[0]) is None:  # no bound without the reference's score
                allowed = []
            guard_drops = {
                v: None
                if not d or any(t is None for t in d)
                else combine_drops([t for t in d if t is not None])
                for v, d in drops.items()
            }
    best, means = select_value(scores, among=allowed)
    if choose_last and allowed is not None:
        best = last_allowed(scores, allowed, not_worse=not_worse)
    chosen = None
    if best is not None:
        chosen = configs[(best, seeds[0])]
        seedless = load_config(config, [*base, f"{param}={value_text(best)}"])
        write_text(out / "selected.yaml", dump_yaml(seedless))
    else:  # an earlier search's choice in this folder is not this one's
        (out / "selected.yaml").unlink(missing_ok=True)
    selection: dict[str, Any] = {
        "param": param,
        "metric": f"val {metric}",
        "rule": (
            f"the last value the guard allows whose val {metric} is at least the first's"
            if not_worse
            else "the last value the guard allows"
            if choose_last
            else f"the best val {metric}"
        ),
        "seeds": list(seeds),
        "best": plain_json(best),
        "means": {value_text(v): m for v, m in means.items()},
    }
    if guard is not None and guard_means is not None and allowed is not None:
        selection["guard"] = {
            "metric": f"val {guard}",
            "drop": guard_drop,
            "reference": value_text(values[0]),
            "means": {value_text(v): m for v, m in guard_means.items()},
            "allowed": [value_text(v) for v in allowed],
        }
        if guard_confidence is not None and guard_drops is not None:
            selection["guard"]["confidence"] = guard_confidence
            selection["guard"]["paired"] = {
                value_text(v): None
                if d is None
                else {"drop": d.drop, "se": d.se, "upper": d.upper(guard_confidence)}
                for v, d in guard_drops.items()
                if v != values[0]
            }
    write_json(out / "selection.json", selection)
    return TuneResult(
        param,
        metric,
        best,
        means,
        trials,
        chosen,
        guard=guard,
        guard_drop=guard_drop,
        guard_means=guard_means,
        allowed=None if allowed is None else tuple(allowed),
        guard_confidence=guard_confidence,
        guard_drops=guard_drops,
    )


def format_tune_table(result: TuneResult) -> str:
    """One line per candidate: mean validation score (and guard score, with a guard), its
    trials' selected epochs, and notes: the choice, a candidate the guard ruled out, a
    selected epoch before the ABSGD switch (the number is then the plain-SGD model)."""
    guarded = result.guard is not None and result.guard_means is not None
    confident = result.guard_confidence is not None and result.guard_drops is not None
    confidence = result.guard_confidence or 0.95
    level = f"{100 * confidence:g} %"
    guard_head = f"val {result.guard:<18} " if guarded else ""
    if confident:
        guard_head += f"{'drop (' + level + ' bound)':<22} "
    lines = [f"{result.param:>24}  val {result.metric:<18} {guard_head}epochs (selected)  note"]
    by_value: dict[float, list[dict[str, Any]]] = {}
    for row in result.trials:
        by_value.setdefault(row["value"], []).append(row)
    for value, mean in result.means.items():
        rows = by_value.get(value, [])
        epochs = [(r.get("metrics") or {}).get("selected_epoch") for r in rows]
        notes = []
        if any(r.get("diverged") for r in rows):
            notes.append("diverged")
        switch = next((r.get("switch_epoch") for r in rows if r.get("switch_epoch")), None)
        if switch is not None and any(e is not None and e <= switch for e in epochs):
            notes.append(f"selected before the switch at {switch:g}")
        guard_cell = ""
        if guarded and result.guard_means is not None:
            g = result.guard_means.get(value)
            guard_cell = f"{'-' if g is None else f'{100 * g:.2f}':<22} "
            d = None
            if confident and result.guard_drops is not None:
                d = result.guard_drops.get(value)
                bound = (
                    "-" if d is None else f"{100 * d.drop:+.2f} ({100 * d.upper(confidence):+.2f})"
                )
                guard_cell += f"{'' if value == next(iter(result.means)) else bound:<22} "
            reference = next(iter(result.guard_means.values()), None)
            if result.allowed is not None and value not in result.allowed:
                if reference is None:
                    why = f"the first value has no val {result.guard}"
                elif g is None:
                    why = f"no val {result.guard}"
                elif confident:
                    drop = 100 * (result.guard_drop or 0.0)
                    why = (
                        f"the {level} bound of its val {result.guard} drop is above {drop:g} points"
                        if d is not None
                        else f"no paired val {result.guard}"
                    )
                else:
                    drop = 100 * (result.guard_drop or 0.0)
                    why = f"more than {drop:g} points of val {result.guard} below the first"
                notes.insert(0, f"ruled out: {why}")
        if value == result.best:
            notes.insert(0, "<- chosen")
        score = "-" if mean is None else f"{100 * mean:.2f}"
        shown = ",".join("-" if e is None else str(e) for e in epochs)
        lines.append(
            f"{value_text(value):>24}  {score:<22} {guard_cell}{shown:<17}  {'; '.join(notes)}"
        )
    if "top1_train_prior" in (result.metric, result.guard):
        note = prior_images_note(result.trials)
        if note:
            lines.append(note)
    return "\n".join(lines)


def prior_images_note(trials: Sequence[dict[str, Any]]) -> str | None:
    """What the validation split's top-1 at the training prior rests on: its images and how
    many drawn at the training prior they are worth (``top1_train_prior_images``, recorded by
    runs since it existed); ``None`` where no trial recorded it."""
    vals = [t.get("val") or {} for t in trials]
    key = "top1_train_prior_images"
    k = sorted(float(v[key]) for v in vals if v.get(key))
    if not k:
        return None
    n = sorted({int(v["num_samples"]) for v in vals if v.get("num_samples")})
    images = "" if not n else f"{n[0]} " if len(n) == 1 else f"{n[0]}-{n[-1]} "
    worth = f"{k[0]:.0f}" if round(k[0]) == round(k[-1]) else f"{k[0]:.0f}-{k[-1]:.0f}"
    return (
        f"val top1_train_prior: the {images}validation images are worth about {worth} drawn "
        "at the training prior (absgd.metrics.prior_effective_size; a stratified split: all)"
    )
