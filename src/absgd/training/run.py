"""One training run: its parts (model, objective, optimiser, loaders), its position, the
epoch loop, and the files it writes into its run directory.

:func:`absgd.training.train` builds a :class:`TrainingRun` once the processes, the device, the
data and the run directory are ready, then calls :meth:`TrainingRun.fit` and
:meth:`TrainingRun.finish`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from absgd.data import BatchLoader
from absgd.fileio import write_json
from absgd.meta_weight_net import MetaWeightNet
from absgd.metrics import to_jsonable
from absgd.metrics.meters import NaNLogitsError
from absgd.training.branch import kept_checkpoint_name
from absgd.training.build import (
    PreparedData,
    build_lam_schedule,
    build_lr_schedule,
    build_model_for,
    build_objective_for,
    build_optimizer,
)
from absgd.training.checkpoint import (
    CHECKPOINT_NAME,
    MODEL_NAME,
    capture_rng,
    initialise_model,
    restore_rng,
    save_checkpoint,
)
from absgd.training.config import RunConfig, config_to_dict, dataset_name, method_name
from absgd.training.devices import autocast, describe_environment
from absgd.training.distributed import (
    DistContext,
    agree,
    broadcast_state,
    run_on_main,
    shard_for_evaluation,
)
from absgd.training.evaluation import (
    eval_batch_size,
    evaluate_model,
    make_loader,
    use_channels_last,
)
from absgd.training.loggers import build_loggers
from absgd.training.meters import EpochMeters
from absgd.training.reporting import (
    Reporter,
    drawn_warnings,
    large_step_warning,
    low_ess_warning,
)
from absgd.training.run_dir import (
    FINAL_TEST_KEYS,
    compact,
    json_number,
    paper_style,
    save_model,
    write_history,
)
from absgd.training.stopping import (
    RunInterrupted,
    diverged,
    parameters_finite,
    stop_requests,
)
from absgd.weighting import ABWeighting, NonFiniteLossError

__all__ = ["TrainingRun", "set_train_mode"]


def set_train_mode(model: nn.Module, only_classifier: bool) -> None:
    """Training mode, or with ``only_classifier`` every module but the classifier in eval mode."""
    model.train()
    if only_classifier:
        for module in model.modules():
            module.eval()
        model.classifier.train()  # type: ignore[union-attr]


def _cycle(loader: BatchLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``loader`` forever, epoch after epoch (its position is its state)."""
    while True:
        yield from loader


def _selection_score(record: dict[str, Any], select: str) -> float | None:
    val = record.get("val")
    if not val:
        return None
    return val.get(select.removeprefix("best_"))  # e.g. best_top1_train_prior: top1_train_prior


class TrainingRun:
    """One training run: its parts, its position, and the files of its run directory.

    In a multi-process run every rank holds a ``TrainingRun``; they agree on every decision (stop,
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
        if cfg.model.init_from and checkpoint is None:  # a checkpoint brings its own weights
            source = cfg.model.init_from
            run_on_main(
                ctx, lambda: initialise_model(self.model, source, cfg.model.reset_classifier)
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
        self.meters = EpochMeters(data.num_classes, device)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"score": -math.inf, "epoch": None}
        self.epoch, self.step, self.wall_before = 0, 0, 0.0
        self.warned: set[str] = set()  # the kinds of warning given (once per run each)
        self.branched_from: dict[str, Any] | None = None
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
        """Continue from a checkpoint: this run's (a resume) or, with ``"branch_source"``,
        another run's (checked by :mod:`absgd.training.branch` before the run starts), whose
        objective state is taken only when the objective is the same."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        branching = state.get("branch_source") is not None
        self.branched_from = state.get("branch_source") or state.get("branched_from")
        if not branching or state.get("branch_keeps_objective_state"):
            self.objective.load_state_dict(state["objective"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.train_loader.load_state_dict(state["loader"])
        self.history = list(state["history"])
        # what the history says it warned about, and for lines written before warnings were
        # recorded, what their numbers call for
        self.warned = {w["kind"] for r in self.history for w in r.get("warnings", ())}
        self.warned |= {kind for r in self.history for kind, _ in self._warnings(r)}
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
        if not branching:
            self.report.message(f"resuming at epoch {self.epoch + 1}, step {self.step}")
        else:
            assert self.branched_from is not None
            self.report.message(
                f"branching from {self.branched_from['checkpoint']} at epoch {self.epoch + 1} "
                f"(the first {self.epoch} epochs checked to train as this config would)"
            )

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
        state = {
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
            "branched_from": self.branched_from,
            **self._meta_state(),
        }
        if self.step == 0 and self.epoch in self.cfg.train.keep_checkpoints:
            # written first: a crash before checkpoint.pt repeats the epoch, and writes it again
            best = self.out / "best_model.pt"
            kept = dict(state)
            if self.best["epoch"] is not None and best.is_file():
                kept["best_model"] = torch.load(best, map_location="cpu", weights_only=True)
            save_checkpoint(self.out / kept_checkpoint_name(self.epoch), kept)
        save_checkpoint(self.out / CHECKPOINT_NAME, state)

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

    def _last_step_scale(self) -> torch.Tensor | None:
        return None if self.meta_weight_net is not None else self.objective.last_step_scale

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
        with stop_requests() as stop_requested:
            while self.epoch < t.epochs:
                epoch = self.epoch
                lr, lam = self._set_epoch_values(epoch)
                if self.step == 0:
                    self.meters = EpochMeters(self.data.num_classes, self.device)
                self.report.epoch_start(epoch, t.epochs, len(self.train_loader), self.step)
                set_train_mode(self.model, self.cfg.model.train_only_classifier)
                epoch_started = time.perf_counter()
                for x, y in self.train_loader.epoch_batches(epoch, self.step):
                    try:
                        loss = self._step(x, y)
                    except NonFiniteLossError as err:
                        raise diverged(
                            epoch, self.step, "the per-sample losses are NaN or infinite"
                        ) from err
                    self.meters.update(loss, y, self._last_weights(), self._last_step_scale())
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
            raise diverged(epoch, self.step, f"the epoch's training loss is {record['train_loss']}")
        if not parameters_finite(self.model):
            raise diverged(epoch, self.step, "the model's parameters are NaN or infinite")
        try:
            if "val" in self.eval_data:
                record["val"] = compact(self.evaluate("val"))
            if t.test_every and (epoch + 1) % t.test_every == 0:
                record["test"] = compact(self.evaluate("test"))
        except NaNLogitsError as err:  # finite but huge parameters overflow in the forward
            raise diverged(epoch, self.step, f"evaluating the model gave NaN ({err})") from err
        drawn = [(kind, text) for kind, text in self._warnings(record) if kind not in self.warned]
        if drawn:  # in metrics.jsonl, so a diverged or resumed run keeps them
            record["warnings"] = [{"kind": kind, "text": text} for kind, text in drawn]
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
        self._warn(drawn)
        if (
            self.epoch == t.epochs
            or self.epoch % t.checkpoint_every == 0
            or self.epoch in t.keep_checkpoints
        ):
            self.save()

    def _warnings(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        """``(kind, text)`` of each warning an epoch's record calls for."""
        weighting = self.objective.weighting
        if not isinstance(weighting, ABWeighting):
            return []
        lam = record.get("lam")
        lam_value = None if lam is None else float(lam)  # json_number writes ∞ as "inf"
        epoch = int(record["epoch"]) - 1
        schedule = self.objective.class_weighting  # the class weights of that epoch, not now's
        class_weights_on = schedule is not None and schedule(epoch) is not None
        texts = {
            "low_ess": low_ess_warning(
                epoch, record.get("effective_sample_size"), lam_value, weighting.target_ess
            ),
            # about class weights' growth only: without them the scale is the weights' sum
            # (times a rescaling to the mean loss, larger than 1 with λ < 0, by design)
            "large_step": large_step_warning(
                epoch,
                record.get("step_scale"),
                lam_value,
                1.0 / weighting.alpha + weighting.uniform,
            )
            if class_weights_on
            else None,
        }
        return [(kind, text) for kind, text in texts.items() if text is not None]

    def _warn(self, drawn: list[tuple[str, str]]) -> None:
        """Warn about what an epoch drew (once per run and kind), on every rank (the Reporter
        speaks on rank 0 only)."""
        for kind, text in drawn:
            self.warned.add(kind)
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
            save_model(self.out / MODEL_NAME, self.model)
        try:
            test = self.evaluate("test")
        except NaNLogitsError as err:
            raise diverged(
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
            "warnings": drawn_warnings(self.history),  # a resumed run's too
            "wall_seconds": self.elapsed(),
            "processes": self.ctx.world_size,
            "branched_from": self.branched_from,
            "data": self.data.info,
            "environment": describe_environment(self.device),
        }
        if self.ctx.is_main:
            write_json(self.out / "final.json", to_jsonable(final))
            try:
                from absgd.training.plots import plot_run

                plot_run(self.out, self.history, final)
            except ImportError as err:
                self.report.message(f"plots skipped ({err})")
        return final
