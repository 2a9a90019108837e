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
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
from absgd.config import config_to_dict, load_config
from absgd.train import TrainingDiverged, train

REPO = Path(__file__).resolve().parents[1]
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
)


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
        "git_commit": _git_commit(),
    }
    if run_env:  # the training device as the run saw it (e.g. the GPU's name)
        env["device"] = run_env.get("device")
        env["device_name"] = run_env.get("device_name")
    return env


def _key(setting: str, method: str, seed: int, lam: float | None) -> tuple:
    return (setting, method, seed, None if lam is None else float(lam))


def _load(path: Path) -> tuple[dict[tuple, dict], dict[tuple, float]]:
    runs: dict[tuple, dict] = {}
    chosen: dict[tuple, float] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row["kind"] == "run":
                runs[_key(row["setting"], row["method"], row["seed"], row["lam"])] = row
            elif row["kind"] == "lam_selection":
                chosen[(row["setting"], row["method"])] = row["lam"]
    return runs, chosen


def _append(path: Path, row: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, allow_nan=False) + "\n")
        fh.flush()


def _lam_text(lam: float) -> str:
    return ".inf" if math.isinf(lam) else repr(lam)


def run_one(
    grid_name: str,
    grid: Grid,
    setting: str,
    method: str,
    seed: int,
    lam: float | None,
    extra: list[str],
    keep_dir: Path | None = None,
) -> dict[str, Any]:
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
        overrides.append(f"{spec.param}={_lam_text(lam)}")
    cfg = load_config(SHIPPED_CONFIGS / f"{grid.config}.yaml", overrides)
    started = time.perf_counter()
    final: dict[str, Any] | None = None
    diverged: str | None = None
    try:
        if keep_dir is not None:
            lam_part = "" if lam is None else f"-{spec.param.split('.')[-1]}{_lam_text(lam)}"
            slug = "".join(
                ch if ch.isalnum() else "_" for ch in f"{grid_name}-{setting}-{method}{lam_part}"
            )
            final = train(cfg, keep_dir / f"{slug}-s{seed}")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                final = train(cfg, Path(tmp) / "run")
    except TrainingDiverged as err:  # a result of the method, recorded as such
        diverged = str(err)
    row: dict[str, Any] = {
        "kind": "run",
        "grid": grid_name,
        "setting": setting,
        "method": method,
        "seed": seed,
        "lam": lam,
        **({} if lam is None else {"param": spec.param}),
        "metrics": None if final is None else {k: final.get(k) for k in METRICS},
        "val": None if final is None else final.get("val_at_selected_epoch"),
        "run_wall_seconds": time.perf_counter() - started,
        "train_wall_seconds": None if final is None else final["wall_seconds"],
        "config": config_to_dict(cfg),
        "environment": _environment(None if final is None else final.get("environment")),
    }
    if diverged is not None:
        row["diverged"] = diverged
    return row


def _score(row: dict[str, Any], metric: str) -> float | None:
    """The validation score of a run, or ``None`` when it had no validation split."""
    value = (row.get("val") or {}).get(metric)
    return None if value is None else float(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grid", choices=sorted(GRIDS))
    p.add_argument("--out", required=True, help="the JSON-lines file (appended to)")
    p.add_argument("--data-root", help="sets data.root for every run")
    p.add_argument("--seeds", type=int, nargs="+", help="override the grid's seeds")
    p.add_argument("--settings", nargs="+", help="only these settings")
    p.add_argument("--methods", nargs="+", help="only these methods")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="extra config override for every run (repeatable)",
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
    select_metric = "top1" if "select=best_top1" in " ".join(grid.common) else "balanced_accuracy"

    for setting in settings:
        for method in methods:
            spec = grid.methods[method]
            runs, chosen = _load(out)
            lam: float | None = None
            if spec.lams:
                for candidate in spec.lams:
                    key = _key(setting, method, seeds[0], candidate)
                    if key not in runs:
                        print(f"[{setting}] {method} λ={candidate} seed {seeds[0]} ...", flush=True)
                        row = run_one(
                            args.grid,
                            grid,
                            setting,
                            method,
                            seeds[0],
                            candidate,
                            extra,
                            args.keep_runs,
                        )
                        _append(out, row)
                        runs[key] = row
                if (setting, method) not in chosen:
                    scores = {
                        c: _score(runs[_key(setting, method, seeds[0], c)], select_metric)
                        for c in spec.lams
                    }
                    scored = [c for c in spec.lams if scores[c] is not None]
                    if len(spec.lams) > 1 and not scored:
                        raise SystemExit(
                            f"{method}: no λ candidate of {spec.lams} has a validation score "
                            "(every run diverged, or data.val_source=none)"
                        )
                    best = max(scored, key=lambda c: scores[c]) if scored else spec.lams[0]
                    _append(
                        out,
                        {
                            "kind": "lam_selection",
                            "grid": args.grid,
                            "setting": setting,
                            "method": method,
                            "lam": best,
                            "param": spec.param,
                            "metric": f"val {select_metric}",
                            "scores": {str(c): s for c, s in scores.items()},
                            "seed": seeds[0],
                        },
                    )
                    chosen[(setting, method)] = best
                lam = chosen[(setting, method)]
            for seed in seeds:
                if _key(setting, method, seed, lam) in runs:
                    continue
                print(f"[{setting}] {method} seed {seed} ...", flush=True)
                _append(
                    out,
                    run_one(args.grid, grid, setting, method, seed, lam, extra, args.keep_runs),
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
