"""Run an accuracy grid (``benchmarks/grids.py``) and append one JSON line per run.

    python benchmarks/grid.py fmnist_lt --data-root ../shared/data/fashion-mnist \\
        --out benchmarks/results/fmnist_lt.jsonl
    python benchmarks/summarize.py benchmarks/results/fmnist_lt.jsonl

Each line holds the grid, setting, method, seed and λ, the fully resolved config, the git
commit, library versions, the machine, the test metrics of the model selected on the
validation split, the validation metrics at that epoch, and the wall time; a run that
diverged has no metrics and a ``diverged`` message (a diverged λ candidate is never chosen).
For ABSGD methods the λ candidates run with seed 0 first; the one with the best validation
balanced accuracy (top-1 for the noisy grids) is recorded in a ``lam_selection`` line and used
for the other seeds. The file is the grid's state: runs already in it are skipped, so an
interrupted grid continues where it stopped.

Several processes may share one file, to run a grid's runs side by side on one GPU:
``--lams`` runs only those λ candidates of seed 0 (and records the selection once every
candidate has a line), ``--only-seeds`` runs only those seeds of the chosen λ (or of a
method without λ). A process that finds a λ not yet chosen, with candidates it does not run
still missing, says so, goes on to the next method, and exits with status 3 (seeds left
undone) unless it is a ``--lams`` process. With ``--wait SECONDS`` it looks again every
few seconds instead, for up to that long, so that the processes of a wave (a GPU's) can all
start together: seeds waiting for a λ choice, branches for their base's checkpoint.

A method with ``branch_from`` (``grids.Method``) continues each seed's run of that base method
from the checkpoint it kept where the method's second stage starts (its λ switch or
DRW's; ``train.branch_from``): its runs need
``--keep-runs`` and the base's run of the same seed in that folder (or in ``--base-runs``),
made by this grid (which then keeps the checkpoint). A run whose base has not kept it yet is
left for later, and the process exits with status 3 (or, with ``--wait``, looks again later).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grids import GRIDS, Grid, Method

import absgd
from absgd.cli import SHIPPED_CONFIGS
from absgd.training.branch import kept_checkpoint_name
from absgd.training.checkpoint import CHECKPOINT_NAME
from absgd.training.config import RunConfig, config_to_dict, load_config
from absgd.training.devices import cpu_description
from absgd.training.tune import TrialLog, run_trial, select_value, val_score, value_text

REPO = Path(__file__).resolve().parents[1]
WAIT_POLL_SECONDS = 5.0
"""How often a process with ``--wait`` looks again for what it waits for."""
WAITING_MARK = "[waiting]"
"""Ends each line that says what the process waits for: while it is its output's last line,
the process trains nothing (``gpu_wave.py`` reads it)."""


def _git_commit() -> str | None:
    """HEAD (with ``+dirty`` for uncommitted changes), or ``$ABSGD_GIT_COMMIT`` for a copy of
    the tree without its ``.git`` (e.g. on a remote machine)."""
    if os.environ.get("ABSGD_GIT_COMMIT"):
        return os.environ["ABSGD_GIT_COMMIT"]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    return None


def _environment(run_env: dict[str, Any] | None = None) -> dict[str, Any]:
    env = {
        "absgd": absgd.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpus": torch.get_num_threads(),
        **cpu_description(),
        "git_commit": _git_commit(),
    }
    if run_env:  # the training device as the run saw it (e.g. the GPU's name)
        env["device"] = run_env.get("device")
        env["device_name"] = run_env.get("device_name")
    return env


def _key(setting: str, method: str, seed: int, lam: float | None) -> tuple:
    return (setting, method, seed, None if lam is None else float(lam))


def _log(path: Path) -> TrialLog:
    return TrialLog(path, ("setting", "method", "seed", "lam"))


def _load(path: Path) -> tuple[dict[tuple, dict], dict[tuple, float]]:
    log = _log(path)
    runs = {_key(*log.key(r)): r for r in log.rows("run")}
    chosen = {(r["setting"], r["method"]): r["lam"] for r in log.rows("lam_selection")}
    return runs, chosen


def _run_dir(
    keep_dir: Path,
    grid_name: str,
    grid: Grid,
    setting: str,
    method: str,
    lam: float | None,
    seed: int,
) -> Path:
    """Where ``--keep-runs`` keeps a run's directory."""
    return keep_dir / grid.run_name(grid_name, setting, method, lam, seed)


def _method_config(
    grid: Grid, setting: str, method: str, extra: list[str], lam: float | None = None
) -> RunConfig:
    """``method``'s config in ``setting`` (with its first candidate when ``lam`` is None)."""
    spec = grid.methods[method]
    overrides = [*grid.common, *grid.settings[setting], *spec.overrides, *extra]
    if lam is None and spec.lams:
        lam = spec.lams[0]
    if lam is not None:
        overrides.append(f"{spec.param}={value_text(lam)}")
    return load_config(SHIPPED_CONFIGS / f"{grid.config}.yaml", overrides)


def _branch_epoch(cfg: RunConfig, method: str) -> int:
    """The epoch a branched method continues its base from: the start of its second stage,
    the earlier of its λ switch (ABSGD) and its class weights' switch (DRW)."""
    o = cfg.objective
    stages = (
        o.lam_switch if o.weighting == "absgd" else None,
        o.class_weighting_options.get("switch") if o.class_weighting == "drw" else None,
    )
    switches = [float(s) for s in stages if s is not None and math.isfinite(s)]
    if not switches:
        raise SystemExit(
            f"{method}: a method that branches needs a second stage (objective.lam_switch, "
            "or objective.class_weighting=drw with its switch)"
        )
    switch = min(switches)
    if math.ceil(switch) < 1:
        raise SystemExit(f"{method}: branches at its switch ({switch:g}), which must be >= 1")
    return math.ceil(switch)


def _kept_epochs(grid: Grid, method: str, setting: str, extra: list[str]) -> list[int]:
    """The epochs at which ``method``'s runs keep a checkpoint for the methods that branch
    from it."""
    return sorted(
        {
            _branch_epoch(_method_config(grid, setting, name, extra), name)
            for name, spec in grid.methods.items()
            if spec.branch_from == method
        }
    )


def branch_point(
    grid_name: str, grid: Grid, setting: str, method: str, seed: int, extra: list[str], keep: Path
) -> Path:
    """The kept checkpoint of the base run that ``method``'s run of ``seed`` branches from."""
    base = grid.methods[method].branch_from
    assert base is not None
    epoch = _branch_epoch(_method_config(grid, setting, method, extra), method)
    source = _run_dir(keep, grid_name, grid, setting, base, None, seed)
    return source / kept_checkpoint_name(epoch)


def run_one(
    grid_name: str,
    grid: Grid,
    setting: str,
    method: str,
    seed: int,
    lam: float | None,
    extra: list[str],
    keep_dir: Path | None = None,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Train one run and return its grid line; its directory is kept under ``keep_dir``, and a
    branched method continues its base's run under ``base_dir`` (default ``keep_dir``)."""
    spec: Method = grid.methods[method]
    overrides = [
        *grid.common,
        *grid.settings[setting],
        *spec.overrides,
        *extra,
        f"train.seed={seed}",
        f"name={grid_name}-{setting}-{method}-s{seed}",
    ]
    if lam is not None:
        overrides.append(f"{spec.param}={value_text(lam)}")
    kept = _kept_epochs(grid, method, setting, extra)
    if kept:
        overrides.append(f"train.keep_checkpoints=[{', '.join(map(str, kept))}]")
    if spec.branch_from is not None:
        if keep_dir is None:
            raise SystemExit(f"{method} branches from {spec.branch_from}'s runs: pass --keep-runs")
        point = branch_point(grid_name, grid, setting, method, seed, extra, base_dir or keep_dir)
        overrides.append(f"train.branch_from={point}")
    cfg = load_config(SHIPPED_CONFIGS / f"{grid.config}.yaml", overrides)
    if keep_dir is not None:
        record = run_trial(cfg, _run_dir(keep_dir, grid_name, grid, setting, method, lam, seed))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            record = run_trial(cfg, Path(tmp) / "run")
    row: dict[str, Any] = {
        "kind": "run",
        "grid": grid_name,
        "setting": setting,
        "method": method,
        "seed": seed,
        "lam": lam,
        **({} if lam is None else {"param": spec.param}),
        **record,
        "config": config_to_dict(cfg),
        "environment": _environment(record["environment"]),
    }
    return row


def _select(
    grid_name: str,
    setting: str,
    method: str,
    spec: Method,
    seed: int,
    runs: dict[tuple, dict],
    metric: str,
    out: Path,
) -> float:
    """Choose λ on the validation score of the candidates' runs and record the choice."""
    scores = {c: val_score(runs[_key(setting, method, seed, c)], metric) for c in spec.lams}
    best, _ = select_value({c: [v] for c, v in scores.items()})
    if len(spec.lams) > 1 and best is None:
        raise SystemExit(
            f"{method}: no λ candidate of {spec.lams} has a validation score "
            "(every run diverged, or data.val_source=none)"
        )
    lam = spec.lams[0] if best is None else best
    _log(out).append(
        {
            "kind": "lam_selection",
            "grid": grid_name,
            "setting": setting,
            "method": method,
            "lam": lam,
            "param": spec.param,
            "metric": f"val {metric}",
            "scores": {str(c): v for c, v in scores.items()},
            "seed": seed,
        }
    )
    return lam


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grid", choices=sorted(GRIDS))
    p.add_argument("--out", required=True, help="the JSON-lines file (appended to)")
    p.add_argument("--data-root", help="sets data.root for every run")
    p.add_argument("--seeds", type=int, nargs="+", help="override the grid's seeds")
    p.add_argument("--settings", nargs="+", help="only these settings")
    p.add_argument("--methods", nargs="+", help="only these methods")
    p.add_argument(
        "--lams",
        type=float,
        nargs="+",
        help="run only these λ candidates (with the first seed) and no other seed: one process "
        "per candidate, sharing --out",
    )
    p.add_argument(
        "--only-seeds",
        type=int,
        nargs="+",
        help="run only these of the seeds (the first seed still chooses λ): one process per "
        "seed, sharing --out",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="extra config override for every run (repeatable)",
    )
    p.add_argument(
        "--base-runs",
        type=Path,
        help="where the runs of the methods that others branch from are (default: --keep-runs; "
        "another process's --keep-runs, as in a GPU wave)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="instead of exiting with status 3 (a λ not chosen yet, a base's checkpoint not "
        "kept yet), look again every few seconds for up to SECONDS (other processes making "
        "them)",
    )
    p.add_argument(
        "--keep-runs",
        type=Path,
        help="keep each run's directory (metrics.jsonl, final.json, plots, weights) under this "
        "folder (default: a temporary folder, removed after the run)",
    )
    args = p.parse_args(argv)
    grid = GRIDS[args.grid]
    out = Path(args.out)
    extra = list(args.overrides)
    if args.data_root:
        extra.append(f"data.root={args.data_root}")
    seeds = tuple(args.seeds) if args.seeds else grid.seeds
    settings = args.settings or list(grid.settings)
    methods = args.methods or list(grid.methods)
    unknown = (set(settings) - set(grid.settings)) | (set(methods) - set(grid.methods))
    if unknown:
        p.error(f"unknown settings/methods for {args.grid}: {sorted(unknown)}")
    for name in methods:
        base = grid.methods[name].branch_from
        if base is not None and (base not in grid.methods or grid.methods[base].lams):
            p.error(f"{name} branches from {base!r}, which must be a method without candidates")
        if base is not None and args.keep_runs is None:
            p.error(f"{name} branches from {base}'s runs: pass --keep-runs")
    select_metric = "top1" if "select=best_top1" in " ".join(grid.common) else "balanced_accuracy"

    if args.lams:
        candidates = {c for m in methods for c in grid.methods[m].lams}
        stray = sorted(set(args.lams) - candidates)
        if stray:
            p.error(
                f"--lams {stray}: no method of {methods} has it; their candidates: "
                f"{sorted(candidates)}"
            )
    if args.only_seeds and set(args.only_seeds) - set(seeds):
        p.error(f"--only-seeds {args.only_seeds}: the seeds are {list(seeds)}")
    run_seeds = [s for s in seeds if not args.only_seeds or s in args.only_seeds]
    if args.lams and seeds[0] not in run_seeds:
        p.error(f"--lams runs with the first seed ({seeds[0]}), which --only-seeds leaves out")
    base_runs = args.base_runs or args.keep_runs
    if args.wait < 0 or not math.isfinite(args.wait):
        p.error(f"--wait must be a number of seconds >= 0, got {args.wait}")
    waiting = False  # a λ not chosen or a base's checkpoint not kept: runs left undone, exit 3
    said: set[tuple] = set()  # what a waiting process has said since it last trained
    notes: dict[str, None] = {}  # what a process says as it exits (in order, once each)

    def say(key: tuple, text: str) -> None:
        """Print what the process waits for (``key``: what), once until it trains again,
        marked for gpu_wave.py."""
        if key not in said:
            said.add(key)
            print(f"{text} {WAITING_MARK}", flush=True)

    def run(setting: str, method: str, seed: int, lam: float | None) -> None:
        nonlocal waiting
        what = method if lam is None else f"{method} {grid.methods[method].param}={lam}"
        base = grid.methods[method].branch_from
        if base is not None and args.keep_runs is not None and base_runs is not None:
            point = branch_point(args.grid, grid, setting, method, seed, extra, base_runs)
            mine = _run_dir(args.keep_runs, args.grid, grid, setting, method, lam, seed)
            # an interrupted branch resumes from its own checkpoint, without the source
            if not point.is_file() and not (mine / CHECKPOINT_NAME).is_file():
                # its base's run of this seed has not kept it yet (another process, or later)
                say(
                    ("checkpoint", setting, method, seed, lam),
                    f"[{setting}] {what} seed {seed}: waits for {point} (run {base} seed "
                    f"{seed} into --base-runs, default --keep-runs, first; a run made before it "
                    "kept checkpoints must run again into a new --out)",
                )
                waiting = True
                return
        said.clear()  # it trains: what it waits for later is said again
        print(f"[{setting}] {what} seed {seed} ...", flush=True)
        row = run_one(args.grid, grid, setting, method, seed, lam, extra, args.keep_runs, base_runs)
        _log(out).append(row)

    def one_pass() -> None:
        nonlocal waiting
        for setting in settings:
            for method in methods:
                spec = grid.methods[method]
                lam: float | None = None
                if args.lams and not spec.lams:
                    continue  # a candidates-only process runs no seed of a method without λ
                if spec.lams:
                    if seeds[0] in run_seeds:
                        for candidate in spec.lams:
                            if args.lams and candidate not in args.lams:
                                continue
                            if _key(setting, method, seeds[0], candidate) not in _load(out)[0]:
                                run(setting, method, seeds[0], candidate)
                    runs, chosen = _load(out)  # other processes may have added lines
                    if (setting, method) not in chosen:
                        missing = [
                            c for c in spec.lams if _key(setting, method, seeds[0], c) not in runs
                        ]
                        if missing:
                            text = (
                                f"[{setting}] {method}: λ not chosen yet, the candidates "
                                f"{missing} have no line; they run in another process"
                            )
                            if args.lams:  # a candidates-only process leaves it to others
                                notes[text] = None  # said as it exits
                                continue
                            say(("λ", setting, method), text)
                            waiting = True
                            continue
                        # Two candidate processes finishing together may both get here and
                        # write the same choice twice; the lines agree and readers keep the
                        # last one.
                        chosen[(setting, method)] = _select(
                            args.grid, setting, method, spec, seeds[0], runs, select_metric, out
                        )
                    if args.lams:
                        continue  # a candidates-only process
                    lam = chosen[(setting, method)]
                for seed in run_seeds:
                    if _key(setting, method, seed, lam) not in _load(out)[0]:
                        run(setting, method, seed, lam)

    deadline = time.monotonic() + args.wait
    while True:
        waiting = False
        started = time.monotonic()
        one_pass()
        # a pass that began before the deadline and trained past it gets one more look
        if not waiting or started >= deadline:
            for text in notes:
                print(text, flush=True)
            return 3 if waiting else 0
        time.sleep(min(WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


if __name__ == "__main__":
    raise SystemExit(main())
