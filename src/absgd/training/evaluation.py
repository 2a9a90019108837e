"""Evaluate the saved model of a finished run on one of its splits (``absgd eval``)."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from absgd.data import BatchLoader
from absgd.fileio import atomic_write
from absgd.metrics import ConfusionMeter, to_jsonable
from absgd.metrics.meters import NaNLogitsError
from absgd.models import to_channels_last
from absgd.training.build import build_model_for, prepare_data
from absgd.training.checkpoint import MODEL_NAME
from absgd.training.config import RunConfig, dataset_name, load_config, method_name, with_data_root
from absgd.training.devices import autocast, resolve_device
from absgd.training.distributed import DistContext

__all__ = [
    "SPLITS",
    "Predictions",
    "eval_batch_size",
    "evaluate_model",
    "evaluate_run",
    "make_loader",
    "predict_run",
    "split_predictions",
    "use_channels_last",
]

SPLITS = ("test", "val")


def eval_batch_size(cfg: RunConfig, device: torch.device) -> int:
    """``train.eval_batch_size``, or by default 512 on CUDA and 128 elsewhere."""
    if cfg.train.eval_batch_size is not None:
        return cfg.train.eval_batch_size
    return 512 if device.type == "cuda" else 128


def make_loader(
    data: Any,
    batch_size: int,
    *,
    train: bool,
    seed: int,
    device: torch.device,
    aug: Any,
    cfg: RunConfig,
    rank: int = 0,
    world_size: int = 1,
) -> BatchLoader:
    """The batch loader of a split: shuffled (or resampled) for training, in order otherwise."""
    sampler = cfg.train.sampler if train and cfg.train.sampler != "none" else None
    return BatchLoader(
        data,
        batch_size,
        shuffle=train,
        sampler=sampler,
        augment=aug,
        seed=seed,
        device=device,
        rank=rank,
        world_size=world_size,
        num_workers=cfg.train.num_workers,
        pin_memory=device.type == "cuda",
    )


def _forward(
    model: nn.Module,
    loader: BatchLoader,
    *,
    device: torch.device,
    precision: str,
    channels_last: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One in-order pass over ``loader`` as evaluation runs it (channels-last where asked, the
    run's precision): each batch's inputs as loaded, labels and float logits."""
    for x, y in loader.epoch_batches(0):
        xm = (
            x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
        )
        with autocast(device, precision):
            logits = model(xm)
        yield x, y, logits.float()


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: BatchLoader | None,
    num_classes: int,
    train_counts: np.ndarray | None,
    *,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """Every metric of :func:`absgd.metrics.evaluate` for one pass over ``loader``.

    With a multi-process ``ctx`` each rank passes the loader of its shard (or ``None`` for an
    empty one) and the confusion counts are summed over ranks: every rank gets the metrics of
    the whole split, exactly those of one process.
    """
    was_training = model.training
    model.eval()
    meter = ConfusionMeter(num_classes, device=device)
    if loader is not None:
        batches = _forward(
            model, loader, device=device, precision=precision, channels_last=channels_last
        )
        for _, y, logits in batches:
            meter.update(logits, y)
    model.train(was_training)
    if ctx is not None and ctx.enabled:
        meter.all_reduce()
    return meter.compute(train_counts)


def use_channels_last(cfg: RunConfig, model: nn.Module) -> bool:
    """``model.channels_last``, or by default whether the model has convolutions."""
    if cfg.model.channels_last is not None:
        return cfg.model.channels_last
    return any(p.dim() == 4 for p in model.parameters())


@dataclass(frozen=True)
class _LoadedRun:
    cfg: RunConfig
    model: nn.Module
    loader: BatchLoader
    num_classes: int
    train_counts: np.ndarray
    device: torch.device
    channels_last: bool


def _load_run(run: Path, split: str, data_root: str | None) -> _LoadedRun:
    """The run's config, selected model (``model.pt``) on its device, and the in-order loader
    of ``split``, its data rebuilt from ``config.yaml`` (``data_root`` read instead of the
    run's ``data.root``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for name in ("config.yaml", MODEL_NAME):
        if not (run / name).is_file():
            raise FileNotFoundError(
                f"{run / name} is missing; `absgd eval` needs a finished run directory"
            )
    cfg = load_config(run / "config.yaml")
    if data_root is not None:
        cfg = with_data_root(cfg, data_root)
    device = resolve_device(cfg.train.device)
    data = prepare_data(cfg.data)
    target = data.test if split == "test" else data.val
    if target is None:
        raise ValueError(f"the run {run} has no {split} split")
    model = build_model_for(cfg, data)
    model.load_state_dict(torch.load(run / MODEL_NAME, map_location="cpu", weights_only=True))
    model.to(device)
    channels_last = use_channels_last(cfg, model)
    if channels_last:
        to_channels_last(model)
    loader = make_loader(
        target,
        eval_batch_size(cfg, device),
        train=False,
        seed=0,
        device=device,
        aug=data.eval_augment,
        cfg=cfg,
    )
    return _LoadedRun(
        cfg, model, loader, data.num_classes, data.train_counts, device, channels_last
    )


def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    split: str = "test",
    quiet: bool = True,
    data_root: str | None = None,
) -> dict[str, Any]:
    """Rebuild the data of the run in ``run_dir`` (its ``config.yaml``), load its selected
    model (``model.pt``) and return the metrics of ``split`` (``"test"`` or ``"val"``).
    ``data_root`` reads the data from another place than the run's ``data.root``."""
    run = Path(run_dir).expanduser()
    loaded = _load_run(run, split, data_root)
    cfg = loaded.cfg
    metrics = evaluate_model(
        loaded.model,
        loaded.loader,
        loaded.num_classes,
        loaded.train_counts,
        device=loaded.device,
        precision=cfg.train.precision,
        channels_last=loaded.channels_last,
    )
    final_path = run / "final.json"
    wall = json.loads(final_path.read_text())["wall_seconds"] if final_path.is_file() else 0.0
    return to_jsonable(
        {
            "method": method_name(cfg),
            "dataset": dataset_name(cfg),
            "split": split,
            "wall_seconds": wall,
            **metrics,
            # as final.json names them: what top1_train_prior weighed the classes by
            "train_class_counts": [int(n) for n in loaded.train_counts],
        }
    )


@dataclass(frozen=True)
class Predictions:
    """One model's predicted class for every image of a split, in the split's order, with the
    true labels and the training split's class counts (what top-1 at the training prior
    weighs by). ``model_sha256`` and ``config_sha256`` name the weights and the run config they
    came from, ``inputs_sha256`` the images as the model saw them (two runs with the same one
    were scored on the same images, in the same order)."""

    labels: np.ndarray
    predicted: np.ndarray
    train_counts: np.ndarray
    model_sha256: str
    config_sha256: str
    inputs_sha256: str

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write them as a ``.npz`` file, atomically."""
        with atomic_write(path) as fh:
            np.savez(
                fh,
                labels=self.labels,
                predicted=self.predicted,
                train_counts=self.train_counts,
                model_sha256=np.array(self.model_sha256),
                config_sha256=np.array(self.config_sha256),
                inputs_sha256=np.array(self.inputs_sha256),
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Predictions:
        """Read a file written by :meth:`save` (``KeyError`` for one that lacks a field)."""
        with np.load(path, allow_pickle=False) as z:
            return cls(
                z["labels"].astype(np.int64),
                z["predicted"].astype(np.int64),
                z["train_counts"].astype(np.int64),
                str(z["model_sha256"]),
                str(z["config_sha256"]),
                str(z["inputs_sha256"]),
            )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@torch.no_grad()
def predict_run(
    run_dir: str | os.PathLike[str], *, split: str = "val", data_root: str | None = None
) -> Predictions:
    """The selected model's (``model.pt``) predicted class for every image of ``split``, the
    data rebuilt from the run's ``config.yaml`` as :func:`evaluate_run` rebuilds it (the same
    seeded split, in order). ``absgd eval --predictions`` writes them; the confident guard of
    ``absgd tune`` pairs two runs' validation predictions image by image
    (:func:`absgd.selection.paired_drop`)."""
    run = Path(run_dir).expanduser()
    loaded = _load_run(run, split, data_root)
    model = loaded.model
    model.eval()
    labels: list[torch.Tensor] = []
    predicted: list[torch.Tensor] = []
    inputs = hashlib.sha256()
    batches = _forward(
        model,
        loaded.loader,
        device=loaded.device,
        precision=loaded.cfg.train.precision,
        channels_last=loaded.channels_last,
    )
    for x, y, logits in batches:
        bad = int(torch.isnan(logits).any(1).sum())
        if bad:  # argmax would name a class for a NaN row; the guard would pair it as a guess
            raise NaNLogitsError(
                f"{run / MODEL_NAME} gave NaN logits for {bad} of a batch's {len(y)} {split} "
                "images (a diverged model?); its predictions cannot be scored"
            )
        inputs.update(x.detach().cpu().contiguous().numpy().tobytes())
        labels.append(y.cpu())
        predicted.append(logits.argmax(1).cpu())
    return Predictions(
        torch.cat(labels).numpy().astype(np.int64),
        torch.cat(predicted).numpy().astype(np.int64),
        np.asarray(loaded.train_counts, dtype=np.int64),
        _sha256(run / MODEL_NAME),
        _sha256(run / "config.yaml"),
        inputs.hexdigest(),
    )


def split_predictions(
    run_dir: str | os.PathLike[str], *, split: str = "val", data_root: str | None = None
) -> Predictions:
    """:func:`predict_run`, kept in the run directory (``predictions-<split>.npz``) and read
    from there while ``model.pt`` and ``config.yaml`` are those they came from (made again
    otherwise, or where the file cannot be read)."""
    run = Path(run_dir).expanduser()
    cache = run / f"predictions-{split}.npz"
    if cache.is_file() and (run / MODEL_NAME).is_file() and (run / "config.yaml").is_file():
        try:
            kept = Predictions.load(cache)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            kept = None
        if (
            kept is not None
            and kept.model_sha256 == _sha256(run / MODEL_NAME)
            and kept.config_sha256 == _sha256(run / "config.yaml")
        ):
            return kept
    fresh = predict_run(run, split=split, data_root=data_root)
    fresh.save(cache)
    return fresh
