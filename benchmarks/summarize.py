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
``--train-prior`` adds to the paired table top-1 at the training prior: the per-class test
accuracies weighted by the training set's class counts, the accuracy on a test set as skewed
as the training set (balanced accuracy weighs the classes equally; a method that moves accuracy
from the head classes to the tail can gain there and lose here).
``--per-class`` adds, for each pair, a table by class: both methods' mean accuracy, the
paired difference with its interval (95 % unless ``--confidence``) and in how many seeds the
method was higher.
``--after-switch`` adds, per ABSGD method, the lowest effective sample size after the switch
and the largest fall of validation balanced accuracy below the switch epoch (worst seed; "none
(+r)" when it never fell below it, r its smallest rise), and where runs recorded them the largest
step scale and how many runs drew each warning ("(of n)" when only n of the runs recorded them).
``--candidates`` adds, per ABSGD method, every λ (or target) candidate on the seed that chose
among them: the validation score that chose, and the test numbers, which only report (with the
largest step scale and the warnings each drew, where recorded).
``--lam-scale`` adds one table over all files: every fixed-λ candidate on that seed with the
training loss at the switch, λ divided by it, and the effective sample size after the switch
(first epoch, lowest, last), to compare how sharp a λ was across losses and schedules.
``--choose NAME "A | B | C" METRIC`` adds the method NAME to every table that has the candidate
methods A, B, C: on each seed, the run of the candidate with the highest validation METRIC
(``balanced_accuracy``, ``top1`` or ``top1_train_prior``; ties to the first listed), what
``absgd tune`` over them would keep on that seed. It pairs like any method (``--pair BASE
NAME``), which tests a selection rule on test numbers it did not choose on; a table shows each
seed's scores and choice. ``--guard NAME METRIC DROP`` limits that choice to the candidates
whose validation METRIC is at most DROP (a fraction: 0.01 is one point) below the first
candidate's, what ``absgd tune --guard`` does (e.g. the best balanced accuracy among the λs that
give up at most one point of validation top-1 against λ = ∞, listed first).
``--guard-confidence NAME LEVEL`` makes that guard confident: a candidate is allowed only where
the upper one-sided LEVEL bound of its validation drop, paired image by image with the first
candidate's run of the same seed, is at most DROP (``absgd tune --guard-confidence``); the
predictions come from the kept runs in the ``--runs`` folders (``grid.py --keep-runs``), made
once and kept beside each run's model.
METRIC ``last`` (with a guard) takes the last listed candidate the guard allows instead of
the best score (``absgd tune --choose-last``: list the plainest first and the sharpest last);
``last:SCORE`` the last of those whose validation SCORE is at least the first candidate's
(``absgd tune --choose-last --not-worse --metric SCORE``).
``--seeds S [S ...]`` reads only those seeds' runs in every table, choice and pair (e.g. the
held-out seeds of a question stated after earlier seeds were read); ``--settings NAME [NAME
...]`` only those settings' runs and selections (a grid file holding several settings).
``--curve K`` adds, where runs evaluated the test split every epoch, the mean test top-1 every
K epochs, its fall from each run's best test epoch to its last (how much of what the model
once knew about the clean test set it lost, e.g. by memorising noisy labels), and the test
top-1 at the epoch of best validation balanced accuracy (what early stopping would keep).
Test numbers only report; nothing here selects on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from summary import (
    Choice,
    candidate_tables,
    choice_tables,
    curve_tables,
    lam_scale_table,
    method_groups,
    pair_tables,
    parse_choice,
    per_class_tables,
    switch_tables,
    tables,
)


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
        "--choose",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "CANDIDATES", "METRIC"),
        help="add the method NAME: per seed, the run of the candidate method (CANDIDATES "
        "separated by '|') with the best validation METRIC (balanced_accuracy, top1, "
        "top1_train_prior; or last, with a --guard: the last listed candidate it allows; or "
        "last:SCORE: the last of those whose validation SCORE is at least the first's), ties to "
        "the first listed (repeatable)",
    )
    p.add_argument(
        "--guard",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "METRIC", "DROP"),
        help="the --choose NAME chooses only among the candidates whose validation METRIC is "
        "at most DROP (a fraction: 0.01 is one point) below the first candidate's (repeatable)",
    )
    p.add_argument(
        "--guard-confidence",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "LEVEL"),
        help="the --guard of the --choose NAME allows a candidate only where the upper "
        "one-sided LEVEL bound (e.g. 0.95) of its validation drop, paired image by image with "
        "the first candidate's run, is at most DROP; needs --runs (repeatable)",
    )
    p.add_argument(
        "--runs",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders of kept runs (grid.py --keep-runs) where --guard-confidence finds each "
        "run's model (the first folder holding it)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="S",
        help="read only the runs of these seeds (e.g. a question's held-out seeds); every "
        "table, choice and pair then sees those runs alone (--candidates and --lam-scale need "
        "the seed that chose λ among them); a method without some of them is named on stderr",
    )
    p.add_argument(
        "--settings",
        nargs="+",
        metavar="NAME",
        help="read only the runs and selections of these settings (e.g. 'exp, ratio 10'); "
        "a setting with no line in the files is an error",
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
        "--train-prior",
        action="store_true",
        help="with --pair: also pair top-1 at the training prior (per-class accuracies "
        "weighted by the training class counts)",
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
    guards: dict[str, tuple[str, str]] = {}
    for name, metric, drop in args.guard:
        if name in guards:
            p.error(f"--guard {name!r} given twice; one guard per choice")
        guards[name] = (metric, drop)
    unknown = set(guards) - {c[0] for c in args.choose}
    if unknown:
        p.error(f"--guard {sorted(unknown)[0]!r}: no --choose of that name")
    levels: dict[str, float] = {}
    for name, level in args.guard_confidence:
        if name in levels:
            p.error(f"--guard-confidence {name!r} given twice; one level per guard")
        if name not in guards:
            p.error(f"--guard-confidence {name!r}: no --guard of that name")
        try:
            levels[name] = float(level)
        except ValueError:
            p.error(
                f"--guard-confidence {name!r}: LEVEL must be a number such as 0.95, got {level!r}"
            )
    try:
        choices = [
            parse_choice(n, cands, m, guards.get(n), levels.get(n), tuple(args.runs))
            for n, cands, m in args.choose
        ]
    except ValueError as err:
        p.error(str(err))
    if not 0 < args.confidence < 1:
        p.error(f"--confidence must lie strictly between 0 and 1, got {args.confidence}")
    for flag, on in (("--per-class", args.per_class), ("--train-prior", args.train_prior)):
        if on and not args.pair:
            p.error(f"{flag} tabulates the pairs given with --pair; give at least one --pair")
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files
        if args.seeds is not None or args.settings is not None:
            files, seen = only_runs(args.files, tmp, args.seeds, args.settings)
            absent = sorted(set(args.settings or ()) - {setting for _, setting, _ in seen})
            if absent:
                p.error(f"--settings: no run of setting(s) {absent} in the files")
        if args.seeds is not None:
            missing = sorted(set(args.seeds) - set().union(*seen.values()))
            if missing:
                p.error(f"--seeds: no run of seed(s) {missing} in the files")
            for (grid, setting, method), has in seen.items():
                lacks = sorted(set(args.seeds) - has)
                if lacks:
                    print(
                        f"--seeds: {grid}, {setting}, {method!r} has no run of seed(s) {lacks}",
                        file=sys.stderr,
                    )
        _print_tables(args, files, shots, choices)
    return 0


def only_runs(
    paths: list[str],
    folder: str,
    seeds: list[int] | None = None,
    settings: list[str] | None = None,
) -> tuple[list[str], dict[tuple[str, str, str], set[int]]]:
    """Copies of ``paths`` in ``folder`` (same names, one subfolder each) without the run
    lines of other seeds and the lines of other settings (a selection line kept if its
    setting is), in the same order: what every table reads under ``--seeds`` and
    ``--settings``; and the seeds kept of each (grid, setting, method)."""
    out: list[str] = []
    seen: dict[tuple[str, str, str], set[int]] = {}
    for k, path in enumerate(paths):
        kept = []
        for line in Path(path).read_text(encoding="utf-8").splitlines(keepends=True):
            row = json.loads(line) if line.strip() else {}
            if settings is not None and row and row.get("setting") not in settings:
                continue
            if row.get("kind") == "run":
                if seeds is not None and row.get("seed") not in seeds:
                    continue
                seen.setdefault((row["grid"], row["setting"], row["method"]), set()).add(
                    row["seed"]
                )
            kept.append(line)
        copy = Path(folder) / str(k) / Path(path).name
        copy.parent.mkdir()
        copy.write_text("".join(kept), encoding="utf-8")
        out.append(str(copy))
    return out, seen


def _print_tables(
    args: argparse.Namespace,
    files: list[str],
    shots: tuple[int, int] | None,
    choices: list[Choice],
) -> None:
    print(tables(files, shots, choices))
    if choices:
        print(choice_tables(method_groups(files, shots, choices), choices))
    if args.pair:
        pairs = [tuple(p) for p in args.pair]
        print(pair_tables(files, pairs, shots, args.confidence, args.train_prior, choices))
    if args.per_class:
        pairs = [tuple(p) for p in args.pair]
        print(per_class_tables(files, pairs, args.confidence, choices))
    if args.after_switch:
        print(switch_tables(files))
    if args.candidates:
        print(candidate_tables(files))
    if args.lam_scale:
        print(lam_scale_table(files))
    if args.curve is not None:
        print(curve_tables(files, args.curve))


if __name__ == "__main__":
    raise SystemExit(main())
