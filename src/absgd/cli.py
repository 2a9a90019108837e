"""The ``absgd`` command line: ``train``, ``tune``, ``eval``, ``sharpness``, ``compare``,
``demo``, ``configs``.

Exit codes: 0 success, 1 failure (missing data, a run that failed), 2 usage error (bad
arguments or config), 130 interrupted (the checkpoint is written; ``--resume`` continues).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import absgd

TUNE_SCORES = ("balanced_accuracy", "top1", "top1_train_prior")
"""``absgd tune --metric`` choices: :data:`absgd.training.tune.SCORES`, written out so that the
parser does not import the training system."""

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


class UsageError(Exception):
    """A mistake in the command line or the config: exit code 2."""


def _add_overrides(p: argparse.ArgumentParser, text: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``, with help ``text``."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=text
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="absgd",
        description=(
            "ABSGD: attentional-biased SGD for imbalanced and noisy-label classification "
            "(Qi et al., arXiv 2012.06951)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"absgd {absgd.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train from a config file (or resume a run)")
    p.add_argument("--config", help="a YAML config: a path, or a name from `absgd configs`")
    _add_overrides(p, "override a config value, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/<name>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    # Developer aid: behave as if Ctrl-C arrived after N optimisation steps (tests the
    # checkpoint-and-resume path deterministically, also under torchrun).
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)

    p = sub.add_parser(
        "tune",
        help="choose target_ess, λ or any config value on the validation split",
        description=(
            "Train a config once per candidate value (and seed), choose the value with the "
            "best mean validation score, print a table and write OUT/selected.yaml. Run it "
            "again to resume: finished trials are skipped, interrupted ones resume."
        ),
    )
    p.add_argument("--config", required=True, help="a YAML config: a path or a shipped name")
    p.add_argument(
        "--param",
        default="objective.target_ess",
        help="the config key to tune (default: objective.target_ess; e.g. objective.lam)",
    )
    p.add_argument(
        "--values", nargs="+", type=float, required=True, help="candidates, e.g. 0.9 0.7 0.5"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds per candidate")
    _add_overrides(p, "override a config value for every trial (repeatable)")
    p.add_argument(
        "--metric",
        choices=TUNE_SCORES,
        default="balanced_accuracy",
        help="validation metric to select on (default: balanced_accuracy; top1_train_prior: "
        "validation top-1 at the training class counts, where the deployment keeps the "
        "training skew)",
    )
    p.add_argument(
        "--guard",
        nargs=2,
        metavar=("METRIC", "DROP"),
        help="choose only among the values whose validation METRIC (one of "
        f"{', '.join(TUNE_SCORES)}) is at most DROP below the first value's (DROP a fraction in "
        "[0, 1)): "
        "e.g. --values inf 300 100 --guard top1 0.01 takes the best --metric among the λs "
        "that give up at most one point of validation top-1 against plain SGD",
    )
    p.add_argument(
        "--guard-confidence",
        type=float,
        metavar="LEVEL",
        help="with --guard: allow a value only where validation is this confident (one-sided, "
        "in [0.5, 1), e.g. 0.95) that its METRIC lies at most DROP below the first value's, "
        "from the two runs' predictions on the same validation images",
    )
    p.add_argument(
        "--choose-last",
        action="store_true",
        help="with --guard: choose the last listed value the guard allows instead of the best "
        "--metric (list the values from the plainest to the sharpest, e.g. inf 1000 300: the "
        "sharpest λ within the guard's drop, chosen on the cost alone)",
    )
    p.add_argument(
        "--not-worse",
        action="store_true",
        help="with --choose-last: only among the allowed values whose validation --metric is "
        "at least the first value's (a gain check: the sharpest λ within the guard that does "
        "not score below λ = ∞, e.g. on balanced accuracy)",
    )
    p.add_argument("--out", required=True, help="folder of the search (its state: resumable)")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("eval", help="evaluate the model of a finished run")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument(
        "--predictions",
        metavar="FILE",
        help="also write the model's predicted class for every image of the split, with the "
        "labels, to FILE (.npz: labels, predicted, train_counts, model_sha256)",
    )
    p.add_argument(
        "--data-root", metavar="DIR", help="read the data from DIR instead of the run's data.root"
    )
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser(
        "sharpness",
        help="how sharp each λ would be on a run's model: a λ grid on the loss's scale",
        description=(
            "Read RUN_DIR's checkpoint (for a two-stage run: the model at the switch, e.g. a "
            "run of the base stopped there with --set train.epochs=SWITCH), compute every "
            "training sample's loss as ABSGD weighs it, and print, over random batches of the "
            "run's batch size, the effective sample size of ABSGD's weights at each λ and the "
            "λ that reaches each target effective sample size."
        ),
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--targets",
        nargs="+",
        type=float,
        default=[0.9, 0.7, 0.5, 0.3],
        help="target effective sample sizes in (0, 1] (default: 0.9 0.7 0.5 0.3)",
    )
    p.add_argument("--lams", nargs="+", type=float, default=[], help="λ values to check")
    p.add_argument(
        "--epoch",
        type=int,
        default=None,
        help="0-based epoch whose class weights apply (default: the config's λ switch, else "
        "the epoch the checkpoint trains next)",
    )
    p.add_argument(
        "--mode",
        choices=("train", "eval"),
        default="train",
        help="losses as training sees them (augmentation, dropout, batch statistics; default) "
        "or as evaluation",
    )
    p.add_argument("--batches", type=int, default=200, help="random batches (default: 200)")
    p.add_argument(
        "--negative",
        action="store_true",
        help="λ < 0 (label noise: weight on the low losses); default: the sign of the run's λ",
    )
    _add_overrides(
        p,
        "change the run's config first, e.g. --set objective.placement=outside when the run is "
        "the base of an ABSGD config, or --set train.device=cpu (repeatable)",
    )
    p.add_argument(
        "--data-root", metavar="DIR", help="read the data from DIR instead of the run's data.root"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("compare", help="side-by-side table of finished runs")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--markdown", action="store_true", help="a markdown table")

    p = sub.add_parser("demo", help="plain SGD vs ABSGD on long-tailed digits (offline, < 1 min)")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    p.add_argument("--out", help="keep the two run directories here")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("configs", help="list the shipped configs")
    p.add_argument("--show", metavar="NAME", help="print one resolved config")
    p.add_argument("--names", action="store_true", help="only the names, one per line")
    return parser


# -- helpers ----------------------------------------------------------------------------------


def _resolve_config_path(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for candidate in (SHIPPED_CONFIGS / name, SHIPPED_CONFIGS / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    raise UsageError(
        f"config {name!r} is neither a file nor a shipped config; `absgd configs` lists them"
    )


def shipped_configs() -> list[str]:
    """Names of the shipped configs (relative paths without ``.yaml``), sorted."""
    return sorted(
        str(p.relative_to(SHIPPED_CONFIGS).with_suffix(""))
        for p in SHIPPED_CONFIGS.rglob("*.yaml")
        if not any(part.startswith("_") for part in p.relative_to(SHIPPED_CONFIGS).parts)
    )


if TYPE_CHECKING:  # the training system is imported when a command needs it
    from absgd.training.reporting import Reporter as _ReporterBase
else:
    _ReporterBase = object


class _ProgressReporter(_ReporterBase):
    """Progress bars at the command-line edge (tqdm is imported only here)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def message(self, text: str) -> None:
        if not self.quiet:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)

    def data_progress(self, what: str, done: int, total: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.desc != f"decoding {what}":
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, desc=f"decoding {what}", leave=False, file=sys.stderr)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()
            self.bar = None

    def epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        self.bar = tqdm(
            total=steps,
            initial=start_step,
            desc=f"epoch {epoch + 1}/{epochs}",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def epoch_end(self, record: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.quiet:
            return
        parts = [f"epoch {record['epoch']}", f"loss {record['train_loss']:.4f}"]
        parts.append(f"lr {record['lr']:.3g}")
        if record.get("lam") is not None:
            lam = record["lam"]
            parts.append(f"λ {lam:.3g}" if isinstance(lam, float) else f"λ {lam}")
        for split in ("val", "test"):
            if record.get(split):
                m = record[split]
                parts.append(
                    f"{split} top1 {100 * m['top1']:.2f} bal {100 * m['balanced_accuracy']:.2f}"
                )
        parts.append(f"{record['epoch_seconds']:.1f}s")
        self.message(" | ".join(parts))


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _shot(row: dict[str, Any], group: str) -> str:
    """A shot group's accuracy, or which classes it would hold when it holds none (e.g.
    "none < 20": no class has fewer than 20 training images)."""
    value = row.get(group)
    limits = row.get("shot_thresholds") or {}
    if value is not None or not limits:
        return _pct(value)
    many, few = limits.get("many"), limits.get("few")
    rule = {"many": f"> {many}", "medium": f"{few}–{many}", "few": f"< {few}"}[group]
    return f"none {rule}"


def format_table(rows: list[dict[str, Any]], markdown: bool) -> str:
    """A table of final metrics: method, dataset, top-1, balanced, many/medium/few, time."""
    header = ["run", "method", "dataset", "top-1", "balanced", "many", "medium", "few", "time"]
    body = [
        [
            str(r.get("run", "")),
            str(r["method"]),
            str(r["dataset"]),
            _pct(r["top1"]),
            _pct(r["balanced_accuracy"]),
            _shot(r, "many"),
            _shot(r, "medium"),
            _shot(r, "few"),
            f"{r['wall_seconds']:.1f}s",
        ]
        for r in rows
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        + [fmt.format(*row) for row in body]
    )


# -- commands ---------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    from absgd.training.config import ConfigError, config_from_dict, load_config
    from absgd.training.distributed import launched_by_torchrun
    from absgd.training.runner import train

    if args.resume:
        moved = [o for o in args.overrides if o.partition("=")[0].strip() == "data.root"]
        if args.config or len(moved) != len(args.overrides):
            raise UsageError(
                "--resume continues a run with its saved config; drop --config and every --set "
                "but --set data.root=DIR (where the data is now)"
            )
        from absgd.training.checkpoint import load_checkpoint
        from absgd.training.config import with_data_root

        run_dir = Path(args.resume)
        state = load_checkpoint(run_dir)
        cfg = config_from_dict(state["config"])
        del state
        if moved:
            cfg = with_data_root(cfg, moved[-1].partition("=")[2].strip())
    else:
        if not args.config:
            raise UsageError("train needs --config FILE (or --resume RUN_DIR)")
        try:
            cfg = load_config(_resolve_config_path(args.config), args.overrides)
        except ConfigError as err:
            raise UsageError(str(err)) from None
        if launched_by_torchrun() and not args.out:
            raise UsageError(
                "under torchrun every process must write to the same run directory: pass --out"
            )
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-{stamp}"
    reporter = _ProgressReporter(args.quiet)
    final = train(
        cfg,
        run_dir,
        resume=bool(args.resume),
        reporter=reporter,
        stop_after_steps=args.stop_after_steps,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        row = {"run": run_dir.name, **final}
        print(format_table([row], markdown=False))
        print(f"run directory: {run_dir}")
    return EXIT_OK


def _cmd_tune(args: argparse.Namespace) -> int:
    from absgd.training.config import ConfigError
    from absgd.training.tune import check_confidence, check_drop, format_tune_table, tune

    if any(math.isnan(v) for v in args.values):
        raise UsageError(f"--values must be numbers, got {args.values}")
    guard, guard_drop = None, None
    if args.guard is not None:
        guard, drop_text = args.guard
        if guard not in TUNE_SCORES:
            raise UsageError(
                f"--guard METRIC must be one of {', '.join(TUNE_SCORES)}, got {guard!r}"
            )
        try:
            guard_drop = check_drop(float(drop_text), "--guard DROP")
        except ValueError:
            raise UsageError(
                "--guard DROP must be a fraction in [0, 1) (0.01 is one point of accuracy), "
                f"got {drop_text!r}"
            ) from None
    guard_confidence = None
    if args.guard_confidence is not None:
        if guard is None:
            raise UsageError("--guard-confidence needs --guard METRIC DROP")
        try:
            guard_confidence = check_confidence(args.guard_confidence, "--guard-confidence")
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.choose_last and guard is None:
        raise UsageError("--choose-last takes the last value a guard allows; give --guard")
    if args.not_worse and not args.choose_last:
        raise UsageError(
            "--not-worse checks the gain of --choose-last's choice; give --choose-last"
        )
    say = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    try:
        result = tune(
            _resolve_config_path(args.config),
            args.param,
            args.values,
            args.out,
            overrides=args.overrides,
            seeds=args.seeds,
            metric=args.metric,
            guard=guard,
            guard_drop=guard_drop,
            guard_confidence=guard_confidence,
            choose_last=args.choose_last,
            not_worse=args.not_worse,
            progress=say,
            reporter=_ProgressReporter(quiet=True),
        )
    except ConfigError as err:
        raise UsageError(str(err)) from None
    print(format_tune_table(result))
    if result.best is None:
        if result.allowed == ():
            print(
                f"the first value has no validation {guard} (diverged?), so the guard allows no "
                f"candidate; see {Path(args.out) / 'trials.jsonl'}"
            )
        else:
            print(
                "no candidate finished with a validation score; see "
                f"{Path(args.out) / 'trials.jsonl'}"
            )
        return EXIT_FAILURE
    print(f"selected config: {Path(args.out) / 'selected.yaml'}")
    return EXIT_OK


def _cmd_eval(args: argparse.Namespace) -> int:
    from absgd.training.evaluation import evaluate_run, predict_run

    metrics = evaluate_run(
        args.run_dir, split=args.split, quiet=args.quiet, data_root=args.data_root
    )
    if args.predictions:
        predict_run(args.run_dir, split=args.split, data_root=args.data_root).save(args.predictions)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        row = {"run": Path(args.run_dir).name, **metrics}
        print(format_table([row], markdown=False))
    return EXIT_OK


def _cmd_sharpness(args: argparse.Namespace) -> int:
    from absgd.training.config import ConfigError
    from absgd.training.run_dir import json_number
    from absgd.training.sharpness import exponent_inputs, format_sharpness, sharpness

    bad = [v for v in args.lams if v == 0 or not math.isfinite(v)]
    if bad:
        raise UsageError(f"--lams must be non-zero and finite, got {bad}")
    bad = [v for v in args.targets if not 0 < v <= 1]
    if bad:
        raise UsageError(f"--targets must lie in (0, 1], got {bad}")
    if args.batches < 1:
        raise UsageError(f"--batches must be a positive integer, got {args.batches}")
    if args.epoch is not None and args.epoch < 0:
        raise UsageError(f"--epoch must be >= 0 (0-based), got {args.epoch}")
    try:
        inputs = exponent_inputs(
            args.run_dir,
            epoch=args.epoch,
            mode=args.mode,
            data_root=args.data_root,
            overrides=args.overrides,
            sign=-1.0 if args.negative else None,
        )
    except ConfigError as err:
        raise UsageError(str(err)) from None
    report = sharpness(inputs, lams=args.lams, targets=args.targets, batches=args.batches)
    if args.json:
        for row in report["targets"]:
            row.update({k: json_number(row[k]) for k in ("lam", "q10", "q90")})
        print(json.dumps(report, indent=2))
    else:
        print(format_sharpness(report, name=str(args.run_dir)))
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from absgd.training.checkpoint import CHECKPOINT_NAME

    rows = []
    for run in args.run_dirs:
        path = Path(run) / "final.json"
        if not path.is_file():
            # A glob such as runs/*/ also matches runs still training or that failed.
            why = (
                f"unfinished; `absgd train --resume {run}` continues it"
                if (Path(run) / CHECKPOINT_NAME).is_file()
                else "no final.json (not a finished run directory)"
            )
            print(f"absgd compare: skipped {run}: {why}", file=sys.stderr)
            continue
        rows.append({"run": Path(run).name, **json.loads(path.read_text(encoding="utf-8"))})
    if not rows:
        raise UsageError(f"no finished run among {', '.join(args.run_dirs)} (none has final.json)")
    print(format_table(rows, markdown=args.markdown))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from absgd.demo import run_demo

    rows = run_demo(epochs=args.epochs, out=args.out, quiet=args.quiet)
    print(format_table(rows, markdown=False))
    return EXIT_OK


def _cmd_configs(args: argparse.Namespace) -> int:
    from absgd.training.config import ConfigError, dataset_name, dump_yaml, load_config, method_name

    if args.show:
        try:
            print(dump_yaml(load_config(_resolve_config_path(args.show))), end="")
        except ConfigError as err:
            raise UsageError(str(err)) from None
        return EXIT_OK
    if args.names:
        for name in shipped_configs():
            print(name)
        return EXIT_OK
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in shipped_configs():
        cfg = load_config(_resolve_config_path(name))
        line = (
            f"{method_name(cfg)} on {dataset_name(cfg)}, {cfg.model.name}, "
            f"{cfg.train.epochs} epochs"
        )
        groups.setdefault(name.split("/")[0], []).append((name, line))
    for group, entries in groups.items():
        print(f"{group}: {CONFIG_GROUPS.get(group, '')}")
        width = max(len(n) for n, _ in entries)
        for name, line in entries:
            print(f"  {name:<{width}}  {line}")
    return EXIT_OK


CONFIG_GROUPS = {
    "cifar_lt": "CIFAR-10/100-LT, Cao et al.'s 200-epoch protocol (authors/: as the ABSGD "
    "authors run it)",
    "cpu": "settings that finish on a laptop CPU",
    "large_scale": "ImageNet-LT, iNaturalist 2018, Places-LT from list files, two stages",
    "noisy": "CIFAR-10/100 with symmetric or asymmetric label noise",
}


COMMANDS = {
    "train": _cmd_train,
    "tune": _cmd_tune,
    "eval": _cmd_eval,
    "sharpness": _cmd_sharpness,
    "compare": _cmd_compare,
    "demo": _cmd_demo,
    "configs": _cmd_configs,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        print(
            "\nabsgd: error: a command is required (train, tune, eval, sharpness, compare, demo, "
            "configs)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from absgd.training.distributed import launched_by_torchrun

    if launched_by_torchrun():
        return _exit_distributed(_run_command(args))
    return _run_command(args)


def _exit_distributed(code: int) -> int:
    """Leave the process group cleanly, then end the process without interpreter shutdown:
    with gloo, worker threads still alive at shutdown abort the process now and then
    (SIGABRT after a successful run), which torchrun would report as a failure."""
    from absgd.training.distributed import teardown

    if code == EXIT_OK:
        try:
            teardown()
        except Exception as err:
            print(f"absgd: leaving the process group failed: {err}", file=sys.stderr)
            code = EXIT_FAILURE
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_command(args: argparse.Namespace) -> int:
    from absgd.training.stopping import RunInterrupted

    try:
        return COMMANDS[args.command](args)
    except UsageError as err:
        print(f"absgd {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except RunInterrupted as err:
        print(f"absgd: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("absgd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        print(f"absgd {args.command}: error: {err}", file=sys.stderr)
        return EXIT_FAILURE
