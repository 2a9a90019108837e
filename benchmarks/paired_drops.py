"""Is validation's estimate of a method's cost within its noise of the test set's?

For kept runs of a grid (``grid.py --keep-runs``), per seed and method: the drop of the method's
score below the base's on the validation split and on the test split, each paired image by
image (:func:`absgd.selection.paired_drop`) with its standard error, and their gap in units of
the two errors together, ``z = (val − test) / √(se_val² + se_test²)``. If the two splits were
draws from one population, ``z`` would be about standard normal; many ``|z| > 2`` say that the
gap is more than the noise of the two samples (the splits differ, or the errors are too small).

Both splits are scored at the training prior by default (``top1_train_prior``: the per-class
accuracies weighted by the training class counts), the quantity a guard on a stratified
validation split estimates and the test verdicts read. Predictions are made once from each
run's ``model.pt`` and kept beside it (``predictions-val.npz``, ``predictions-test.npz``). A run
the grid's results file (``--results``) records as diverged has no model: it is listed as such
and left out of the statistics.

    python benchmarks/paired_drops.py cifar10_lt_repro_cpu_authors_stratval \\
        --base LDAM-DRW --methods "ABSGD + LDAM-DRW, λ = 1000, base step, branched" \\
        --seeds 10 11 12 13 14 --runs RUNS --results benchmarks/results/GRID.jsonl
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from grids import GRIDS
from summary.choose import kept_run
from summary.runs import load

from absgd.selection import PairedDrop, paired_drop
from absgd.training.evaluation import split_predictions
from absgd.training.tune import SCORES, score_class_weights


def _drop(base: Path, run: Path, split: str, metric: str, data_root: str | None) -> PairedDrop:
    ref = split_predictions(base, split=split, data_root=data_root)
    cand = split_predictions(run, split=split, data_root=data_root)
    if ref.inputs_sha256 != cand.inputs_sha256:
        raise SystemExit(f"{run} and {base} were scored on different {split} images")
    weights = score_class_weights(metric, ref.train_counts.tolist())
    return paired_drop(ref.labels, ref.predicted, cand.predicted, weights)


def diverged_runs(paths: list[str], grid: str, setting: str) -> set[tuple[str, int]]:
    """``(method, seed)`` of every run of ``grid``'s ``setting`` that the results files record
    as diverged (a line with ``diverged``; ``grid.py`` keeps no model for it)."""
    runs, _ = load(paths)
    return {
        (row["method"], int(row["seed"]))
        for row in runs
        if (row.get("grid"), row.get("setting")) == (grid, setting) and row.get("diverged")
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("grid", choices=sorted(GRIDS))
    p.add_argument("--setting", help="the grid's setting (default: its only one)")
    p.add_argument("--base", required=True, help="the method the others are paired with")
    p.add_argument("--methods", nargs="+", required=True, help="methods paired with --base")
    p.add_argument("--seeds", nargs="+", type=int, required=True)
    p.add_argument("--runs", nargs="+", required=True, metavar="DIR", help="kept-run folders")
    p.add_argument("--metric", choices=SCORES, default="top1_train_prior")
    p.add_argument("--data-root", metavar="DIR", help="read the data from DIR")
    p.add_argument(
        "--results",
        nargs="+",
        default=[],
        metavar="FILE",
        help="the grid's results (JSON lines): runs they record as diverged are listed as such",
    )
    args = p.parse_args(argv)
    grid = GRIDS[args.grid]
    if args.setting is None:
        if len(grid.settings) != 1:
            p.error(f"--setting: one of {list(grid.settings)}")
        args.setting = next(iter(grid.settings))
    for method in [args.base, *args.methods]:
        if method not in grid.methods:
            p.error(f"{method!r} is not a method of {args.grid}: {list(grid.methods)}")
        if grid.methods[method].lams:
            p.error(f"{method!r} chooses λ among candidates; give fixed methods")
    print(
        f"### {args.grid}: {args.setting}, {args.metric} drop below {args.base} "
        "(points; ± standard error of the split's sample)\n"
    )
    print("| method | seed | validation | test | val − test | z |")
    print("|---|---|---|---|---|---|")
    zs: dict[str, list[float]] = {m: [] for m in args.methods}
    diverged = diverged_runs(args.results, args.grid, args.setting)
    left_out: dict[str, int] = {m: 0 for m in args.methods}
    for method in args.methods:
        for seed in args.seeds:
            gone = [m for m in (args.base, method) if (m, seed) in diverged]
            if gone:
                left_out[method] += 1
                print(f"| {method} | {seed} | {' and '.join(gone)} diverged | – | – | – |")
                continue
            row = {"grid": args.grid, "setting": args.setting, "lam": None, "seed": seed}
            base = kept_run({**row, "method": args.base}, tuple(args.runs))
            run = kept_run({**row, "method": method}, tuple(args.runs))
            val = _drop(base, run, "val", args.metric, args.data_root)
            test = _drop(base, run, "test", args.metric, args.data_root)
            spread = math.hypot(val.se, test.se)
            z = (val.drop - test.drop) / spread if spread > 0 else math.nan
            zs[method].append(z)
            print(
                f"| {method} | {seed} | {100 * val.drop:+.2f} ± {100 * val.se:.2f} | "
                f"{100 * test.drop:+.2f} ± {100 * test.se:.2f} | "
                f"{100 * (val.drop - test.drop):+.2f} | {z:+.2f} |"
            )
    print()
    for method, values in zs.items():
        ok = [z for z in values if not math.isnan(z)]
        if not ok:
            continue
        rms = math.sqrt(sum(z * z for z in ok) / len(ok))
        beyond = sum(abs(z) > 1.96 for z in ok)
        note = f" ({left_out[method]} diverged, left out)" if left_out[method] else ""
        print(
            f"{method}: {len(ok)} seeds{note}, root mean square z {rms:.2f} (about 1 if the gaps "
            f"are the two samples' noise), |z| > 1.96 on {beyond} (about {0.05 * len(ok):.1f} "
            "expected)"
        )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
