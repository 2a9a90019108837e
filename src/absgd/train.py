"""The training loop: epochs, validation, checkpoints and the run directory.

:func:`train` runs a :class:`~absgd.config.RunConfig` into a run directory::

    config.yaml       the resolved config
    metrics.jsonl     one line per finished epoch (train loss, LR, λ, validation metrics,
                      ABSGD diagnostics, test metrics when ``train.test_every`` asks)
    checkpoint.pt     everything a resume needs (every ``train.checkpoint_every`` epochs,
                      and on Ctrl-C / SIGTERM at the current step)
    best_model.pt     the model of the best validation epoch (``train.select: best_*``)
    model.pt          the selected model at the end
    final.json        test metrics of the selected model, and what was selected how
    plots/*.png       per-class accuracy against training count, learning curves, ABSGD weights

Model selection uses the validation split only; the test split is evaluated at the end (and,
for curves, every ``train.test_every`` epochs — never for selection). In deterministic mode
on the CPU a resumed run ends with exactly the metrics of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import absgd
from absgd.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from absgd.config import RunConfig, config_from_dict, config_to_dict, dump_yaml, method_name
from absgd.data import BatchLoader
from absgd.experiment import (
    PreparedData,
    build_lam_schedule,
    build_lr_schedule,
    build_model_for,
    build_objective_for,
    build_optimizer,
    prepare_data,
)
from absgd.fileio import atomic_write, write_json, write_text
from absgd.metrics import ClassWeightMeter, ConfusionMeter, EffectiveSampleSizeMeter, to_jsonable
from absgd.weighting import ABWeighting

__all__ = ["Reporter", "RunInterrupted", "evaluate_model", "resolve_device", "train"]


class RunInterrupted(KeyboardInterrupt):
    """Raised after Ctrl-C / SIGTERM once the checkpoint of the current step is written."""


class Reporter:
    """Progress hooks of :func:`train`; the default does nothing (the library is quiet)."""

    def message(self, text: str) -> None:
        """A line for the user (data summary, epoch summary...)."""

    def data_progress(self, what: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of ``what`` are decoded."""

    def epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        """An epoch with ``steps`` steps starts (at ``start_step`` when resuming)."""

    def step(self) -> None:
        """One optimisation step is done."""

    def epoch_end(self, record: dict[str, Any]) -> None:
        """The epoch's ``metrics.jsonl`` record."""


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU; anything else as given (checked to exist)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but no CUDA device is available; use cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"train.device={name} but MPS is not available; use cpu or auto")
    return device


def _seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def _stop_requests() -> Iterator[Callable[[], bool]]:
    """Turn SIGINT / SIGTERM into a flag checked between steps; a second Ctrl-C is immediate."""
    requested = {"flag": False}

    def handler(signum: int, frame: Any) -> None:
        if requested["flag"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested["flag"] = True

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave the handlers alone
        previous.clear()
    try:
        yield lambda: requested["flag"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class _EpochMeters:
    """Training statistics of the current epoch, kept on the device (no per-step sync)."""

    num_classes: int
    device: torch.device
    loss_sum: torch.Tensor = field(init=False)
    samples: torch.Tensor = field(init=False)
    weights: ClassWeightMeter = field(init=False)
    ess: EffectiveSampleSizeMeter = field(init=False)

    def __post_init__(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.samples = torch.zeros((), dtype=torch.int64, device=self.device)
        self.weights = ClassWeightMeter(self.num_classes, relative=True, device=self.device)
        self.ess = EffectiveSampleSizeMeter(device=self.device)

    def update(self, loss: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None) -> None:
        self.loss_sum += loss.detach().double() * y.shape[0]
        self.samples += y.shape[0]
        if weights is not None:
            self.weights.update(weights, y)
            self.ess.update(weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_sum": self.loss_sum,
            "samples": self.samples,
            "weights": self.weights.state_dict(),
            "ess": self.ess.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum = state["loss_sum"].to(self.device)
        self.samples = state["samples"].to(self.device)
        self.weights.load_state_dict(state["weights"])
        self.ess.load_state_dict(state["ess"])

    def summary(self) -> dict[str, Any]:
        n = int(self.samples)
        out: dict[str, Any] = {"train_loss": float(self.loss_sum) / n if n else math.nan}
        ess = self.ess.compute()
        if not math.isnan(ess):
            out["absgd_mean_weight_per_class"] = to_jsonable(self.weights.compute())
            out["absgd_effective_sample_size"] = ess
        return out


def make_loader(
    data: Any,
    batch_size: int,
    *,
    train: bool,
    seed: int,
    device: torch.device,
    aug: Any,
    cfg: RunConfig,
) -> BatchLoader:
    sampler = cfg.train.sampler if train and cfg.train.sampler != "none" else None
    return BatchLoader(
        data,
        batch_size,
        shuffle=train,
        sampler=sampler,
        augment=aug,
        seed=seed,
        device=device,
        num_workers=cfg.train.num_workers,
        pin_memory=device.type == "cuda",
    )


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: BatchLoader,
    num_classes: int,
    train_counts: np.ndarray | None,
    *,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, Any]:
    """Every metric of :func:`absgd.metrics.evaluate` for one pass over ``loader``."""
    was_training = model.training
    model.eval()
    meter = ConfusionMeter(num_classes, device=device)
    for x, y in loader.epoch_batches(0):
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, precision):
            logits = model(x)
        meter.update(logits.float(), y)
    model.train(was_training)
    return meter.compute(train_counts)


def _set_train_mode(model: nn.Module, only_classifier: bool) -> None:
    model.train()
    if only_classifier:
        for module in model.modules():
            module.eval()
        model.classifier.train()  # type: ignore[union-attr]


def _initialise_from(model: nn.Module, source: str, reset_classifier: bool) -> None:
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "model.pt" if (path / "model.pt").is_file() else path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"model.init_from={source}: no model.pt or {CHECKPOINT_NAME} found there"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"model.init_from={source}: cannot read {path} ({err})") from None
    if isinstance(state, dict) and "model" in state and "format" in state:
        state = state["model"]
    if reset_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("classifier.")] + list(unexpected)
        if bad:
            raise ValueError(f"model.init_from={source} does not fit this model: {bad[:5]}")
        model.reset_classifier()  # type: ignore[operator]
    else:
        model.load_state_dict(state)


def _describe_environment(device: torch.device) -> dict[str, Any]:
    return {
        "absgd": absgd.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def _selection_score(record: dict[str, Any], select: str) -> float | None:
    val = record.get("val")
    if not val:
        return None
    key = "balanced_accuracy" if select == "best_balanced_accuracy" else "top1"
    return val.get(key)


def train(
    cfg: RunConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    data: PreparedData | None = None,
    reporter: Reporter | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` and return the final metrics (also in ``final.json``).

    Args:
        cfg: the run configuration.
        out_dir: the run directory (created; must not hold another run unless ``resume``).
        resume: continue the run in ``out_dir`` from its checkpoint (its saved config is used;
            ``cfg`` must equal it).
        data: prepared data to use instead of reading ``cfg.data`` (tests, notebooks).
        reporter: progress hooks (the CLI shows progress bars through them).
        stop_after_steps: behave as if Ctrl-C arrived after this many optimisation steps of
            this call (for tests of the interruption path).

    Raises:
        RunInterrupted: after Ctrl-C / SIGTERM (or ``stop_after_steps``), once the checkpoint
            of the current step is written; ``resume=True`` continues from there.
    """
    out = Path(out_dir).expanduser()
    report = reporter or Reporter()
    checkpoint: dict[str, Any] | None = None
    if resume:
        checkpoint = load_checkpoint(out / CHECKPOINT_NAME)
        saved = config_from_dict(checkpoint["config"])
        if config_to_dict(saved) != config_to_dict(cfg):
            raise ValueError(
                f"the config differs from the one saved in {out}; resume with the saved config "
                "(absgd train --resume DIR) or start a new run directory"
            )
    elif (out / CHECKPOINT_NAME).exists() or (out / "final.json").exists():
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)

    t = cfg.train
    device = resolve_device(t.device)
    if t.precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs a CUDA device; use bf16 or fp32")
    _seed_everything(t.seed, t.deterministic, device)

    if data is None:
        report.message(f"reading data {cfg.data.name!r} ...")
        data = prepare_data(cfg.data, progress=report.data_progress)
    counts = data.train_counts
    report.message(
        f"data: {data.info.get('train_size')} train / {data.info.get('val_size', 0)} val / "
        f"{data.info.get('test_size')} test, {data.num_classes} classes, training counts "
        f"{counts.max()} .. {counts.min()}"
    )
    model = build_model_for(cfg, data)
    if cfg.model.init_from:
        _initialise_from(model, cfg.model.init_from, cfg.model.reset_classifier)
    model.to(device)
    if cfg.model.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.model.train_only_classifier:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("classifier."))
    objective = build_objective_for(cfg.objective, counts).to(device)
    optimizer = build_optimizer(cfg.optim, [p for p in model.parameters() if p.requires_grad])
    scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
    lr_at = build_lr_schedule(cfg.optim, t.epochs)
    lam_at = build_lam_schedule(cfg.objective)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    train_loader = make_loader(
        data.train,
        t.batch_size,
        train=True,
        seed=t.seed,
        device=device,
        aug=data.train_augment,
        cfg=cfg,
    )
    eval_loaders = {
        name: make_loader(
            split,
            t.eval_batch_size,
            train=False,
            seed=0,
            device=device,
            aug=data.eval_augment,
            cfg=cfg,
        )
        for name, split in (("val", data.val), ("test", data.test))
        if split is not None
    }
    meters = _EpochMeters(data.num_classes, device)

    history: list[dict[str, Any]] = []
    best = {"score": -math.inf, "epoch": None}
    start_epoch, start_step, wall_before = 0, 0, 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        objective.load_state_dict(checkpoint["objective"])
        if scaler is not None and checkpoint.get("scaler") is not None:
            scaler.load_state_dict(checkpoint["scaler"])
        train_loader.load_state_dict(checkpoint["loader"])
        history = list(checkpoint["history"])
        best = dict(checkpoint["best"])
        start_epoch, start_step = int(checkpoint["epoch"]), int(checkpoint["step"])
        wall_before = float(checkpoint["wall_seconds"])
        if start_step:
            meters.load_state_dict(checkpoint["meters"])
        restore_rng(checkpoint["rng"])
        report.message(f"resuming at epoch {start_epoch + 1}, step {start_step}")
    else:
        write_text(out / "config.yaml", dump_yaml(cfg))

    started = time.perf_counter()
    steps_this_call = 0

    def elapsed() -> float:
        return wall_before + time.perf_counter() - started

    def save(epoch: int, step: int) -> None:
        save_checkpoint(
            out / CHECKPOINT_NAME,
            {
                "config": config_to_dict(cfg),
                "epoch": epoch,
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "objective": objective.state_dict(),
                "scaler": None if scaler is None else scaler.state_dict(),
                "loader": train_loader.state_dict(),
                "meters": meters.state_dict() if step else None,
                "rng": capture_rng(),
                "history": history,
                "best": best,
                "wall_seconds": elapsed(),
            },
        )

    def set_epoch_values(epoch: int) -> tuple[float, float | None]:
        factor = lr_at(epoch)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        objective.set_epoch(epoch)
        lam = None
        if lam_at is not None and isinstance(objective.weighting, ABWeighting):
            lam = lam_at(epoch)
            objective.weighting.lam = lam
        return base_lrs[0] * factor, lam

    with _stop_requests() as stop_requested:
        for epoch in range(start_epoch, t.epochs):
            lr, lam = set_epoch_values(epoch)
            step0 = start_step if epoch == start_epoch else 0
            if step0 == 0:
                meters = _EpochMeters(data.num_classes, device)
            train_loader.set_epoch(epoch, step0)
            report.epoch_start(epoch, t.epochs, len(train_loader), step0)
            _set_train_mode(model, cfg.model.train_only_classifier)
            epoch_started = time.perf_counter()
            for step, (x, y) in enumerate(train_loader.epoch_batches(epoch, step0), step0):
                if cfg.model.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(device, t.precision):
                    logits = model(x)
                loss = objective(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if cfg.optim.grad_clip is not None:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if cfg.optim.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                    optimizer.step()
                meters.update(loss, y, objective.last_weights)
                report.step()
                steps_this_call += 1
                interrupted = stop_requested() or (
                    stop_after_steps is not None and steps_this_call >= stop_after_steps
                )
                if interrupted:
                    train_loader.set_epoch(epoch, step + 1)
                    save(epoch, step + 1)
                    raise RunInterrupted(
                        f"interrupted at epoch {epoch + 1}, step {step + 1}; the checkpoint in "
                        f"{out} continues with: absgd train --resume {out}"
                    )

            record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "lam": _json_number(lam)}
            record.update(meters.summary())
            record["epoch_seconds"] = time.perf_counter() - epoch_started
            if "val" in eval_loaders:
                record["val"] = _compact(
                    evaluate_model(
                        model,
                        eval_loaders["val"],
                        data.num_classes,
                        counts,
                        device=device,
                        precision=t.precision,
                        channels_last=cfg.model.channels_last,
                    )
                )
            if t.test_every and (epoch + 1) % t.test_every == 0:
                record["test"] = _compact(
                    evaluate_model(
                        model,
                        eval_loaders["test"],
                        data.num_classes,
                        counts,
                        device=device,
                        precision=t.precision,
                        channels_last=cfg.model.channels_last,
                    )
                )
            history.append(record)
            score = _selection_score(record, t.select)
            if t.select != "last" and score is not None and score > best["score"]:
                best = {"score": score, "epoch": epoch + 1}
                _save_model(out / "best_model.pt", model)
            _write_history(out / "metrics.jsonl", history)
            report.epoch_end(record)
            last = epoch + 1 == t.epochs
            if last or (epoch + 1) % t.checkpoint_every == 0:
                train_loader.set_epoch(epoch + 1, 0)
                save(epoch + 1, 0)

    if t.select == "last" or best["epoch"] is None:
        selected_epoch = t.epochs
    else:
        selected_epoch = int(best["epoch"])
        model.load_state_dict(
            torch.load(out / "best_model.pt", map_location=device, weights_only=True)
        )
    _save_model(out / "model.pt", model)
    test = evaluate_model(
        model,
        eval_loaders["test"],
        data.num_classes,
        counts,
        device=device,
        precision=t.precision,
        channels_last=cfg.model.channels_last,
    )
    final = {
        "method": method_name(cfg),
        "dataset": dataset_name(cfg),
        "run_name": cfg.name,
        **{
            k: test[k]
            for k in (
                "top1",
                "top5",
                "balanced_accuracy",
                "macro_f1",
                "many",
                "medium",
                "few",
                "per_class_accuracy",
            )
        },
        "train_class_counts": [int(n) for n in counts],
        "class_names": list(data.class_names),
        "shot_thresholds": test["shot_thresholds"],
        "shot_num_classes": test["shot_num_classes"],
        "confusion_matrix": test["confusion_matrix"],
        "selected_epoch": selected_epoch,
        "selection_split": "val" if t.select != "last" else "none (last epoch)",
        "selection_metric": t.select,
        "val_at_selected_epoch": history[selected_epoch - 1].get("val"),
        "epochs": t.epochs,
        "wall_seconds": elapsed(),
        "data": data.info,
        "environment": _describe_environment(device),
    }
    write_json(out / "final.json", to_jsonable(final))
    try:
        from absgd.plots import plot_run

        plot_run(out, history, final)
    except ImportError as err:
        report.message(f"plots skipped ({err})")
    return final


def _json_number(value: float | None) -> float | str | None:
    """JSON has no infinity: λ = ∞ is written as the string "inf"."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def dataset_name(cfg: RunConfig) -> str:
    d = cfg.data
    name = d.name
    if d.imbalance_ratio is not None:
        name += f"-LT({d.profile}, ratio {d.imbalance_ratio:g})"
    if d.noise_rate > 0:
        name += f"-noise({d.noise_kind} {d.noise_rate:g})"
    return name


def _compact(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per-epoch records keep everything but the confusion matrix."""
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}


def _save_model(path: Path, model: nn.Module) -> None:
    with atomic_write(path) as fh:
        torch.save(model.state_dict(), fh)


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    import json

    lines = [json.dumps(to_jsonable(r), allow_nan=False) for r in history]
    write_text(path, "\n".join(lines) + "\n")
