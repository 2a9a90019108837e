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
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from absgd.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    capture_rng,
    restore_rng,
    save_checkpoint,
)
from absgd.config import (
    RunConfig,
    config_to_dict,
    dataset_name,
    method_name,
    switch_never_reached,
    with_data_root,
)
from absgd.data import BatchLoader
from absgd.devices import autocast, describe_environment, resolve_device, seed_everything
from absgd.distributed import (
    DistContext,
    agree,
    broadcast_state,
    run_on_main,
    shard_for_evaluation,
)
from absgd.distributed import setup as setup_distributed
from absgd.evaluation import eval_batch_size, evaluate_model, make_loader, use_channels_last
from absgd.experiment import (
    PreparedData,
    build_lam_schedule,
    build_lr_schedule,
    build_model_for,
    build_objective_for,
    build_optimizer,
    prepare_data,
)
from absgd.fileio import write_json
from absgd.loggers import build_loggers
from absgd.meta_weight_net import MetaWeightNet
from absgd.metrics import ClassWeightMeter, EffectiveSampleSizeMeter, to_jsonable
from absgd.metrics.meters import NaNLogitsError
from absgd.run_dir import (
    FINAL_TEST_KEYS,
    check_run_dir,
    compact,
    create_run_dir,
    json_number,
    paper_style,
    read_final,
    save_model,
    write_history,
)
from absgd.weighting import ABWeighting, NonFiniteLossError

__all__ = [
    "Reporter",
    "RunInterrupted",
    "TrainingDiverged",
    "evaluate_model",
    "make_loader",
    "paper_style",
    "resolve_device",
    "train",
]


class RunInterrupted(KeyboardInterrupt):
    """Raised after Ctrl-C / SIGTERM once the checkpoint of the current step is written."""


class TrainingDiverged(RuntimeError):
    """The training loss, the model's parameters or its outputs became NaN or infinite. The run
    directory keeps the checkpoint of the last finished epoch (written before the divergence)."""


LOW_ESS = 0.3
"""An epoch whose mean effective sample size ``(Σp)²/(BΣp²)`` of ABSGD's weights falls below
this draws a warning (once per run): most of each batch's weight then rests on a few samples.
Runs whose weights concentrated like that collapsed in the benchmarks (ESS 0.01–0.39 with
LDAM-DRW, docs/results.md, sections 6–7). It flags concentrated weights, not a step that is
too large: unrescaled target-ESS runs collapsed at 0.57–0.65."""


def low_ess_warning(
    epoch: int, ess: float | None, lam: float | None, target_ess: float | None = None
) -> str | None:
    """The warning for an epoch (0-based) of ABSGD with λ ``lam`` (solved for ``target_ess``
    if given) whose mean effective sample size was ``ess``, or ``None`` if there is nothing to
    warn about (λ infinite: plain SGD)."""
    if ess is None or lam is None or not math.isfinite(lam) or not ess < LOW_ESS:
        return None
    advice = (
        f"A larger objective.target_ess (now {target_ess:g}) keeps it up"
        if target_ess is not None
        else "A larger |λ| (objective.lam), or objective.target_ess (e.g. 0.9), keeps it up"
    )
    return (
        f"epoch {epoch + 1}: the effective sample size of ABSGD's weights was {ess:.3f}, "
        f"below {LOW_ESS}: λ = {lam:.3g} puts most of each batch's weight on a few samples, "
        f"the regime where runs collapsed in the benchmarks. {advice}"
    )


def _diverged(epoch: int, step: int, what: str) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged in epoch {epoch + 1} (step {step}): {what}. Lower optim.lr, use "
        "a larger |λ| (objective.lam) or clip gradients (optim.grad_clip)"
    )


def _parameters_finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (one host synchronisation)."""
    flags = [p.detach().isfinite().all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


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

    def all_reduce(self, ctx: DistContext) -> None:
        """Sum the statistics over every rank (a collective; a no-op in one process)."""
        if not ctx.enabled:
            return
        totals = torch.stack([self.loss_sum, self.samples.double()])
        dist.all_reduce(totals)
        self.loss_sum, self.samples = totals[0], totals[1].long()
        self.weights.all_reduce()
        self.ess.all_reduce()

    def summary(self) -> dict[str, Any]:
        n = int(self.samples)
        out: dict[str, Any] = {"train_loss": float(self.loss_sum) / n if n else math.nan}
        ess = self.ess.compute()
        if not math.isnan(ess):
            out["mean_weight_per_class"] = to_jsonable(self.weights.compute())
            out["effective_sample_size"] = ess
        return out


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


def _cycle(loader: BatchLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``loader`` forever, epoch after epoch (its position is its state)."""
    while True:
        yield from loader


def _selection_score(record: dict[str, Any], select: str) -> float | None:
    val = record.get("val")
    if not val:
        return None
    key = "balanced_accuracy" if select == "best_balanced_accuracy" else "top1"
    return val.get(key)


class _Run:
    """One training run: its parts, its position, and the files of its run directory.

    In a multi-process run every rank holds a ``_Run``; they agree on every decision (stop,
    selection) through collectives, and rank 0 alone writes files.
    """

    def __init__(
        self,
        cfg: RunConfig,
        out: Path,
        ctx: DistContext,
        device: torch.device,
        report: Reporter,
        data: PreparedData,
        checkpoint: dict[str, Any] | None,
    ) -> None:
        self.cfg, self.out, self.ctx, self.device, self.report = cfg, out, ctx, device, report
        self.data = data
        t = cfg.train
        self.model = build_model_for(cfg, data)
        if cfg.model.init_from:
            source = cfg.model.init_from
            run_on_main(
                ctx, lambda: _initialise_from(self.model, source, cfg.model.reset_classifier)
            )
            broadcast_state(self.model, ctx)
        if t.sync_batchnorm and ctx.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(device)
        self.channels_last = use_channels_last(cfg, self.model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if cfg.model.train_only_classifier:
            for name, p in self.model.named_parameters():
                p.requires_grad_(name.startswith("classifier."))
        self.objective = build_objective_for(cfg.objective, data.train_counts).to(device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(cfg.optim, trainable)
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        self.lr_at = build_lr_schedule(cfg.optim, t.epochs)
        self.lam_at = build_lam_schedule(cfg.objective)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]

        local_batch = t.batch_size
        if ctx.enabled and not t.batch_per_rank:
            local_batch = t.batch_size // ctx.world_size
        self.train_loader = make_loader(
            data.train,
            local_batch,
            train=True,
            seed=t.seed,
            device=device,
            aug=data.train_augment,
            cfg=cfg,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        self.eval_data = {
            name: shard_for_evaluation(split, ctx)
            for name, split in (("val", data.val), ("test", data.test))
            if split is not None
        }
        self.meta_weight_net: MetaWeightNet | None = None
        if cfg.objective.weighting == "meta_weight_net":
            if ctx.enabled:
                raise ValueError("Meta-Weight-Net runs in one process only (not under torchrun)")
            if data.meta is None:
                raise ValueError("Meta-Weight-Net needs a meta set: set data.meta_per_class")
            self.meta_weight_net = MetaWeightNet(
                self.model, self.objective.loss, self.optimizer, **cfg.objective.weighting_options
            )
            self.meta_loader = make_loader(
                data.meta,
                min(local_batch, len(data.meta)),
                train=True,
                seed=t.seed + 1,
                device=device,
                aug=data.train_augment,
                cfg=cfg,
            )
            self.meta_batches = _cycle(self.meta_loader)
        self.meters = _EpochMeters(data.num_classes, device)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"score": -math.inf, "epoch": None}
        self.epoch, self.step, self.wall_before = 0, 0, 0.0
        self.warned_low_ess = False
        if checkpoint is not None:
            self._restore(checkpoint)
        self.network: nn.Module = self.model
        if ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=ids)
        if t.compile:
            self.network = torch.compile(self.network)  # type: ignore[assignment]
        self.loggers = build_loggers(t.log, out, self.epoch) if ctx.is_main else []
        self.started = time.perf_counter()

    # -- state ---------------------------------------------------------------------------------
    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.objective.load_state_dict(state["objective"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.train_loader.load_state_dict(state["loader"])
        self.history = list(state["history"])
        self.warned_low_ess = any(self._low_ess_text(r) is not None for r in self.history)
        self.best = dict(state["best"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.wall_before = float(state["wall_seconds"])
        if self.meta_weight_net is not None:
            self.meta_weight_net.load_state_dict(state["meta_weight_net"])
            self.meta_loader.load_state_dict(state["meta_loader"])
            self.meta_batches = _cycle(self.meta_loader)
        if self.step and self.ctx.is_main:  # the saved statistics are already summed over ranks
            self.meters.load_state_dict(state["meters"])
        restore_rng(state["rng"])
        self.report.message(f"resuming at epoch {self.epoch + 1}, step {self.step}")

    def elapsed(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    def save(self) -> None:
        """Checkpoint the current position (every rank calls it; rank 0 writes)."""
        meters = None
        if self.step:
            self.meters.all_reduce(self.ctx)
            meters = self.meters.state_dict()
        if not self.ctx.is_main:
            return
        self.train_loader.set_epoch(self.epoch, self.step)
        save_checkpoint(
            self.out / CHECKPOINT_NAME,
            {
                "config": config_to_dict(self.cfg),
                "epoch": self.epoch,
                "step": self.step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "objective": self.objective.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict(),
                "loader": self.train_loader.state_dict(),
                "meters": meters,
                "rng": capture_rng(),
                "history": self.history,
                "best": self.best,
                "wall_seconds": self.elapsed(),
                **self._meta_state(),
            },
        )

    def _meta_state(self) -> dict[str, Any]:
        if self.meta_weight_net is None:
            return {}
        return {
            "meta_weight_net": self.meta_weight_net.state_dict(),
            "meta_loader": self.meta_loader.state_dict(),
        }

    # -- training ------------------------------------------------------------------------------
    def _set_epoch_values(self, epoch: int) -> tuple[float, float | None]:
        factor = self.lr_at(epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        self.objective.set_epoch(epoch)
        lam = None
        if self.lam_at is not None and isinstance(self.objective.weighting, ABWeighting):
            lam = self.lam_at(epoch)
            self.objective.weighting.lam = lam
        return self.base_lrs[0] * factor, lam

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.meta_weight_net is not None:
            x_meta, y_meta = next(self.meta_batches)
            if self.channels_last:
                x_meta = x_meta.contiguous(memory_format=torch.channels_last)
            return self.meta_weight_net.step(x, y, x_meta, y_meta)
        with autocast(self.device, cfg.train.precision):
            logits = self.network(x)
        loss = self.objective(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        clip = cfg.optim.grad_clip
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
        return loss

    def _last_weights(self) -> torch.Tensor | None:
        if self.meta_weight_net is not None:
            return self.meta_weight_net.last_weights
        return self.objective.last_weights

    def evaluate(self, split: str) -> dict[str, Any]:
        """Metrics of ``split`` over all of it (each rank evaluates its shard)."""
        t = self.cfg.train
        data = self.eval_data[split]
        loader = None
        if len(data):
            loader = make_loader(
                data,
                eval_batch_size(self.cfg, self.device),
                train=False,
                seed=0,
                device=self.device,
                aug=self.data.eval_augment,
                cfg=self.cfg,
            )
        return evaluate_model(
            self.model,
            loader,
            self.data.num_classes,
            self.data.train_counts,
            device=self.device,
            precision=t.precision,
            channels_last=self.channels_last,
            ctx=self.ctx,
        )

    def fit(self, stop_after_steps: int | None) -> None:
        t = self.cfg.train
        steps_this_call = 0
        with _stop_requests() as stop_requested:
            while self.epoch < t.epochs:
                epoch = self.epoch
                lr, lam = self._set_epoch_values(epoch)
                if self.step == 0:
                    self.meters = _EpochMeters(self.data.num_classes, self.device)
                self.report.epoch_start(epoch, t.epochs, len(self.train_loader), self.step)
                _set_train_mode(self.model, self.cfg.model.train_only_classifier)
                epoch_started = time.perf_counter()
                for x, y in self.train_loader.epoch_batches(epoch, self.step):
                    try:
                        loss = self._step(x, y)
                    except NonFiniteLossError as err:
                        raise _diverged(
                            epoch, self.step, "the per-sample losses are NaN or infinite"
                        ) from err
                    self.meters.update(loss, y, self._last_weights())
                    self.step += 1
                    steps_this_call += 1
                    self.report.step()
                    stop = stop_requested() or (
                        stop_after_steps is not None and steps_this_call >= stop_after_steps
                    )
                    if agree(stop, self.ctx, self.device):
                        self.save()
                        raise RunInterrupted(
                            f"interrupted at epoch {epoch + 1}, step {self.step}; the checkpoint "
                            f"in {self.out} continues with: absgd train --resume {self.out}"
                        )
                self._end_epoch(epoch, lr, lam, time.perf_counter() - epoch_started)

    def _end_epoch(self, epoch: int, lr: float, lam: float | None, seconds: float) -> None:
        t = self.cfg.train
        self.meters.all_reduce(self.ctx)
        weighting = self.objective.weighting
        if lam is not None and isinstance(weighting, ABWeighting) and weighting.target_ess:
            lam = weighting.lam  # the λ solved from the target, in force after the last batch
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "lam": json_number(lam)}
        record.update(self.meters.summary())
        record["epoch_seconds"] = seconds
        # Checked before anything is evaluated or saved: a diverged epoch leaves no trace but
        # this error (every rank sees the same all-reduced loss and the same parameters).
        trained = int(self.meters.samples) > 0  # an epoch without batches has no loss (NaN)
        if trained and not math.isfinite(record.get("train_loss", 0.0)):
            raise _diverged(
                epoch, self.step, f"the epoch's training loss is {record['train_loss']}"
            )
        if not _parameters_finite(self.model):
            raise _diverged(epoch, self.step, "the model's parameters are NaN or infinite")
        try:
            if "val" in self.eval_data:
                record["val"] = compact(self.evaluate("val"))
            if t.test_every and (epoch + 1) % t.test_every == 0:
                record["test"] = compact(self.evaluate("test"))
        except NaNLogitsError as err:  # finite but huge parameters overflow in the forward
            raise _diverged(epoch, self.step, f"evaluating the model gave NaN ({err})") from err
        self.history.append(record)
        score = _selection_score(record, t.select)
        improved = t.select != "last" and score is not None and score > self.best["score"]
        if improved:
            self.best = {"score": score, "epoch": epoch + 1}
        self.epoch, self.step = epoch + 1, 0
        if self.ctx.is_main:
            if improved:
                save_model(self.out / "best_model.pt", self.model)
            write_history(self.out / "metrics.jsonl", self.history)
            for logger in self.loggers:
                logger.log(self.history)
        self.report.epoch_end(record)
        self._warn_low_ess(record)
        if self.epoch == t.epochs or self.epoch % t.checkpoint_every == 0:
            self.save()

    def _low_ess_text(self, record: dict[str, Any]) -> str | None:
        weighting = self.objective.weighting
        if not isinstance(weighting, ABWeighting):
            return None
        lam = record.get("lam")
        return low_ess_warning(
            int(record["epoch"]) - 1,
            record.get("effective_sample_size"),
            None if lam is None else float(lam),  # json_number writes ∞ as "inf"
            weighting.target_ess,
        )

    def _warn_low_ess(self, record: dict[str, Any]) -> None:
        """Warn once per run, on every rank (the Reporter speaks on rank 0 only)."""
        if self.warned_low_ess:
            return
        text = self._low_ess_text(record)
        if text is None:
            return
        self.warned_low_ess = True
        warnings.warn(text, UserWarning, stacklevel=2)
        self.report.message(f"warning: {text}")

    # -- the end -------------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        t = self.cfg.train
        if t.select == "last" or self.best["epoch"] is None:
            selected_epoch = t.epochs
        else:
            selected_epoch = int(self.best["epoch"])
            if self.ctx.is_main:
                best = torch.load(
                    self.out / "best_model.pt", map_location=self.device, weights_only=True
                )
                self.model.load_state_dict(best)
            broadcast_state(self.model, self.ctx)
        if self.ctx.is_main:
            save_model(self.out / "model.pt", self.model)
        try:
            test = self.evaluate("test")
        except NaNLogitsError as err:
            raise _diverged(
                t.epochs - 1, self.step, f"the selected model gives NaN ({err})"
            ) from err
        o = self.cfg.objective
        before_switch = (
            o.weighting == "absgd" and o.lam_switch is not None and selected_epoch <= o.lam_switch
        )
        if before_switch:
            self.report.message(
                f"note: validation selected epoch {selected_epoch}, before ABSGD's switch at "
                f"epoch {o.lam_switch:g}: the selected model was trained by plain SGD"
            )
        final = {
            "method": method_name(self.cfg),
            "dataset": dataset_name(self.cfg),
            "run_name": self.cfg.name,
            **{k: test[k] for k in FINAL_TEST_KEYS},
            "train_class_counts": [int(n) for n in self.data.train_counts],
            "class_names": list(self.data.class_names),
            "selected_epoch": selected_epoch,
            "selection_split": "val" if t.select != "last" else "none (last epoch)",
            "selection_metric": t.select,
            "selected_before_switch": before_switch,
            "val_at_selected_epoch": self.history[selected_epoch - 1].get("val"),
            "epochs": t.epochs,
            "paper_style": paper_style(self.history),
            "wall_seconds": self.elapsed(),
            "processes": self.ctx.world_size,
            "data": self.data.info,
            "environment": describe_environment(self.device),
        }
        if self.ctx.is_main:
            write_json(self.out / "final.json", to_jsonable(final))
            try:
                from absgd.plots import plot_run

                plot_run(self.out, self.history, final)
            except ImportError as err:
                self.report.message(f"plots skipped ({err})")
        return final


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

    Under ``torchrun`` (``WORLD_SIZE > 1``) every process calls this: it joins the process
    group, trains its shard of every global batch with DistributedDataParallel, and rank 0
    alone writes the run directory; the result equals one process with the same global batch.

    Args:
        cfg: the run configuration.
        out_dir: the run directory (created; must not hold another run unless ``resume``).
        resume: continue the run in ``out_dir`` from its checkpoint (its saved config is used;
            ``cfg`` must equal it). The number of processes may differ from the saved run's.
        data: prepared data to use instead of reading ``cfg.data`` (tests, notebooks).
        reporter: progress hooks (the CLI shows progress bars through them; rank 0 only).
        stop_after_steps: behave as if Ctrl-C arrived after this many optimisation steps of
            this call (for tests of the interruption path).

    Raises:
        RunInterrupted: after Ctrl-C / SIGTERM (or ``stop_after_steps``), once the checkpoint
            of the current step is written; ``resume=True`` continues from there.
    """
    cfg = with_data_root(cfg)  # saved absolute: the run directory works from anywhere
    t = cfg.train
    ctx, device_name = setup_distributed(t.device, t.dist_timeout_s)
    if ctx.enabled and not t.batch_per_rank and t.batch_size % ctx.world_size:
        raise ValueError(
            f"train.batch_size={t.batch_size} is the global batch and must be divisible by the "
            f"{ctx.world_size} processes; change it or set train.batch_per_rank=true"
        )
    device = resolve_device(device_name)
    if t.precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs a CUDA device; use bf16 or fp32")
    if t.sync_batchnorm and ctx.enabled and device.type != "cuda":
        raise ValueError("train.sync_batchnorm needs CUDA devices (torch supports it on GPUs only)")
    report = reporter if reporter is not None and ctx.is_main else Reporter()
    if switch_never_reached(cfg):
        text = (
            f"objective.lam_switch={cfg.objective.lam_switch:g} is not before "
            f"train.epochs={t.epochs}: ABSGD never switches on and this run is plain SGD"
        )
        warnings.warn(text, UserWarning, stacklevel=2)
        report.message(f"warning: {text}")
    out = Path(out_dir).expanduser()
    checkpoint = run_on_main(ctx, lambda: check_run_dir(out, cfg, resume))
    if checkpoint is not None and int(checkpoint["epoch"]) >= t.epochs:
        finished = run_on_main(ctx, lambda: read_final(out))
        if finished is not None:  # nothing left to train: report the run as it ended
            report.message(f"{out} is a finished run; its final.json is left as it is")
            return finished
    seed_everything(t.seed, t.deterministic, device)
    if data is None:
        report.message(f"reading data {cfg.data.name!r} ...")
        data = prepare_data(cfg.data, progress=report.data_progress)
    if checkpoint is None:
        run_on_main(ctx, lambda: create_run_dir(out, cfg))
    counts = data.train_counts
    processes = f"; {ctx.world_size} processes" if ctx.enabled else ""
    report.message(
        f"data: {data.info.get('train_size')} train / {data.info.get('val_size', 0)} val / "
        f"{data.info.get('test_size')} test, {data.num_classes} classes, training counts "
        f"{counts.max()} .. {counts.min()}{processes}"
    )
    run: _Run | None = None
    try:
        run = _Run(cfg, out, ctx, device, report, data, checkpoint)
        run.fit(stop_after_steps)
        return run.finish()
    except RuntimeError as err:
        if not ctx.enabled:
            raise
        # Collectives fail at once when a peer's connection drops and after
        # train.dist_timeout_s when a peer hangs; either way say where to look.
        raise RuntimeError(
            f"process {ctx.rank} of {ctx.world_size} stopped: {err}\nIf another process failed "
            "or stopped responding, its own output has the cause; the last checkpoint in "
            f"{out} resumes the run (absgd train --resume {out})"
        ) from None
    finally:
        for logger in run.loggers if run is not None else ():
            logger.close()
