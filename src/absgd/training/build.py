"""From a :class:`~absgd.training.config.RunConfig` to the parts of a run: data, model,
objective, optimiser.

Data preparation, in this order: read the source; make the training split long-tailed
(:func:`absgd.data.long_tail_counts` and :func:`absgd.data.select_long_tailed`, the standard
procedure); corrupt training labels; carve the validation split; compute the normalisation
statistics on the training split. The test split is never touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from absgd.data import (
    ArrayDataset,
    BatchAugment,
    channel_stats,
    corrupt_labels,
    long_tail_counts,
    select_long_tailed,
    train_val_split,
)
from absgd.data.sources import LazySplits, load_source
from absgd.models import build_model
from absgd.objective import Objective, build_objective
from absgd.optim import ABSGD, ABAdam
from absgd.schedules import Constant, Schedule, WarmupCosineLR, WarmupStepLR, two_stage
from absgd.training.config import DataConfig, ObjectiveConfig, OptimConfig, RunConfig

__all__ = [
    "PreparedData",
    "build_lam_schedule",
    "build_lr_schedule",
    "build_model_for",
    "build_objective_for",
    "build_optimizer",
    "prepare_data",
]


@dataclass(frozen=True)
class PreparedData:
    """The splits of a run and what the rest of the run needs to know about them."""

    train: ArrayDataset | Any
    val: ArrayDataset | Any | None
    test: ArrayDataset | Any
    class_names: tuple[str, ...]
    train_counts: np.ndarray
    input_shape: tuple[int, ...]
    """``(C, H, W)`` for images, ``(D,)`` for feature vectors."""
    train_augment: BatchAugment | None
    eval_augment: BatchAugment | None
    info: dict[str, Any]
    """Facts for the run log: noise flips, validation sizes, images moved to validation..."""
    meta: ArrayDataset | None = None
    """Balanced meta set for Meta-Weight-Net (``data.meta_per_class``), else ``None``."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


def _leftover_validation(
    pool: ArrayDataset, kept: np.ndarray, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """A balanced validation split of ``per_class`` images per class, taken from the images
    the long-tailed selection left out; a class with too few of those gives up selected
    (training) images. Returns ``(train indices, val indices, images taken from training)``."""
    rng = np.random.RandomState(seed)
    is_kept = np.zeros(len(pool), dtype=bool)
    is_kept[kept] = True
    train, val, moved = list(kept), [], {}
    for c in range(pool.num_classes):
        spare = np.flatnonzero((pool.y == c) & ~is_kept)
        rng.shuffle(spare)
        take = spare[:per_class].tolist()
        if len(take) < per_class:
            own = [i for i in kept if pool.y[i] == c]
            need = per_class - len(take)
            if need >= len(own):
                raise ValueError(
                    f"class {pool.class_names[c]!r} has only {len(own)} training images and "
                    f"{len(spare)} left-over ones, too few for val_per_class={per_class}"
                )
            chosen = rng.permutation(len(own))[:need]
            taken = {own[j] for j in chosen}
            take += sorted(taken)
            train = [i for i in train if i not in taken]
            moved[pool.class_names[c]] = need
        val += take
    return np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64), moved


def _prepare_arrays(cfg: DataConfig, splits: Any) -> PreparedData:
    train: ArrayDataset = splits.train
    test: ArrayDataset = splits.test
    val: ArrayDataset | None = splits.val
    info: dict[str, Any] = {"source_train_size": len(train)}
    kept = np.arange(len(train))
    pool = train
    if cfg.imbalance_ratio is not None:
        counts = long_tail_counts(
            int(train.class_counts().min()), train.num_classes, cfg.imbalance_ratio, cfg.profile
        )
        kept = select_long_tailed(train.y, counts, cfg.lt_seed)
        train = pool.subset(kept)
    if cfg.noise_rate > 0:
        mapping, groups = cfg.noise_mapping, None
        if cfg.noise_kind == "asymmetric" and mapping == "groups":
            if train.class_groups is None:
                raise ValueError(
                    f"data.noise_mapping=groups needs superclasses, which {cfg.name!r} lacks"
                )
            mapping, groups = None, train.class_groups
        noisy, flipped = corrupt_labels(
            train.y,
            cfg.noise_rate,
            cfg.noise_kind,
            train.num_classes,
            cfg.noise_seed,
            mapping=mapping if cfg.noise_kind == "asymmetric" else None,
            groups=groups,
        )
        train = train.with_labels(noisy)
        info["noisy_labels"] = int(flipped.sum())
    if cfg.val_source == "split" and val is None:
        if cfg.val_fraction is None and cfg.val_per_class is None:
            raise ValueError(
                f"data {cfg.name!r} has no validation split of its own: set "
                "data.val_fraction or data.val_per_class, or data.val_source=none"
            )
        train, val = train_val_split(
            train,
            val_fraction=cfg.val_fraction,
            val_per_class=cfg.val_per_class,
            seed=cfg.val_seed,
        )
    elif cfg.val_source == "leftover":
        assert cfg.val_per_class is not None
        train_idx, val_idx, moved = _leftover_validation(
            pool, kept, cfg.val_per_class, cfg.val_seed
        )
        train, val = pool.subset(train_idx), pool.subset(val_idx)
        info["val_images_taken_from_training"] = moved
    elif cfg.val_source == "none":
        val = None
    meta = None
    if cfg.meta_per_class is not None:
        train, meta = train_val_split(
            train, val_per_class=cfg.meta_per_class, seed=cfg.val_seed + 1
        )
        info["meta_size"] = len(meta)
    info["train_size"] = len(train)
    info["val_size"] = 0 if val is None else len(val)
    info["test_size"] = len(test)

    shape: tuple[int, ...]
    train_aug: BatchAugment | None
    eval_aug: BatchAugment | None
    if train.x.ndim == 4:  # uint8 images (N, H, W, C)
        shape = (train.x.shape[3], train.x.shape[1], train.x.shape[2])
        mean = std = None
        if cfg.normalize == "dataset":
            mean, std = channel_stats(train.x)
            std = tuple(max(s, 1e-3) for s in std)
        padding = cfg.padding if cfg.augment in ("crop_flip", "crop") else 0
        train_aug = BatchAugment(padding, cfg.augment in ("crop_flip", "flip"), mean, std)
        eval_aug = train_aug.for_eval()
    elif train.x.ndim == 2:  # feature vectors: standardise with training statistics
        shape = (train.x.shape[1],)
        if cfg.normalize == "dataset":
            mu = train.x.mean(0, dtype=np.float64)
            sd = np.maximum(train.x.std(0, dtype=np.float64), 1e-6)

            def standardise(ds: ArrayDataset | None) -> ArrayDataset | None:
                if ds is None:
                    return None
                x = ((ds.x - mu) / sd).astype(np.float32)
                return ArrayDataset(x, ds.y, ds.class_names, ds.class_groups, ds.group_names)

            train, val, test, meta = (standardise(d) for d in (train, val, test, meta))  # type: ignore[assignment]
        train_aug = eval_aug = None
    else:
        raise ValueError(
            f"data {cfg.name!r} has samples of shape {train.x.shape[1:]}; expected images "
            "(H, W, C) or feature vectors (D,)"
        )
    return PreparedData(
        train=train,
        val=val,
        test=test,
        class_names=train.class_names,
        train_counts=train.class_counts(),
        input_shape=tuple(int(s) for s in shape),
        train_augment=train_aug,
        eval_augment=eval_aug,
        info=info,
        meta=meta,
    )


def _prepare_lazy(cfg: DataConfig, splits: LazySplits) -> PreparedData:
    if (
        cfg.imbalance_ratio is not None
        or cfg.noise_rate > 0
        or cfg.val_source == "leftover"
        or cfg.meta_per_class is not None
    ):
        raise ValueError(
            "list-file datasets are used as listed: data.imbalance_ratio, data.noise_rate, "
            "data.meta_per_class and data.val_source=leftover apply to in-memory data only"
        )
    sample, _ = splits.train[0]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics
    flip = cfg.augment != "none"
    train_aug = BatchAugment(
        0,
        flip,
        mean if cfg.normalize == "dataset" else None,
        std if cfg.normalize == "dataset" else None,
    )
    return PreparedData(
        train=splits.train,
        val=splits.val if cfg.val_source != "none" else None,
        test=splits.test,
        class_names=splits.class_names,
        train_counts=np.asarray(splits.train.class_counts()),
        input_shape=tuple(int(s) for s in np.asarray(sample).shape[-3:]),
        train_augment=train_aug,
        eval_augment=train_aug.for_eval(),
        info={"train_size": len(splits.train), "test_size": len(splits.test)},
    )


def prepare_data(
    cfg: DataConfig, progress: Callable[[str, int, int], None] | None = None
) -> PreparedData:
    """Read and shape the data of a run (see the module docstring for the order).

    ``progress(what, done, total)`` reports long decoding (image archives).
    """
    splits = load_source(cfg.name, cfg.root, progress=progress, **cfg.options)
    if isinstance(splits, LazySplits):
        return _prepare_lazy(cfg, splits)
    return _prepare_arrays(cfg, splits)


def build_model_for(cfg: RunConfig, data: PreparedData) -> nn.Module:
    """The model of ``cfg`` sized for ``data`` (channels, input size or feature count)."""
    options = dict(cfg.model.options)
    if data.is_image and cfg.model.name != "mlp":
        options.setdefault("in_channels", data.input_shape[0])
        if cfg.model.name in ("small_cnn", "cnn8"):
            options.setdefault("input_size", tuple(data.input_shape[1:]))
    else:
        options.setdefault("in_features", int(np.prod(data.input_shape)))
    return build_model(cfg.model.name, data.num_classes, **options)


def build_objective_for(cfg: ObjectiveConfig, train_counts: np.ndarray | None) -> Objective:
    """The objective of ``cfg``; λ starts at ∞ when a two-stage switch is configured."""
    options = dict(cfg.weighting_options)
    weighting = cfg.weighting
    if weighting == "meta_weight_net":  # its weights come from MetaWeightNet, not the objective
        weighting, options = "none", {}
    if cfg.weighting == "absgd":
        lam = absgd_lam(cfg)
        options["lam"] = math.inf if cfg.lam_switch is not None else lam
        if cfg.target_ess is not None:
            options["target_ess"] = cfg.target_ess
    counts = None if train_counts is None else [int(n) for n in train_counts]
    return build_objective(
        cfg.loss,
        class_counts=counts,
        class_weighting=cfg.class_weighting,
        weighting=weighting,
        placement=cfg.placement,
        normalize_class_weights=cfg.normalize_class_weights,
        loss_options=cfg.loss_options,
        class_weighting_options=cfg.class_weighting_options,
        weighting_options=options,
    )


def absgd_lam(cfg: ObjectiveConfig) -> float:
    """The λ an ABSGD objective runs at after its switch (with ``target_ess``: its sign)."""
    if cfg.lam is None:
        if cfg.target_ess is None:
            raise ValueError("objective.lam or objective.target_ess is required with absgd")
        return 1.0
    return cfg.lam


def build_lam_schedule(cfg: ObjectiveConfig) -> Schedule | None:
    """Epoch → λ for ABSGD runs (``None`` without ABSGD)."""
    if cfg.weighting != "absgd":
        return None
    lam = absgd_lam(cfg)
    if cfg.lam_switch is not None:
        return two_stage(lam, cfg.lam_switch)
    return Constant(lam)


def build_lr_schedule(cfg: OptimConfig, epochs: int) -> Schedule:
    """Epoch → learning-rate multiplier."""
    if cfg.schedule == "cosine":
        return WarmupCosineLR(total=epochs, warmup=cfg.warmup_epochs, final=cfg.final_factor)
    if cfg.schedule == "constant":
        return WarmupStepLR(warmup=cfg.warmup_epochs)
    return WarmupStepLR(warmup=cfg.warmup_epochs, milestones=cfg.milestones, factors=cfg.factors)


def build_optimizer(cfg: OptimConfig, params: Any) -> torch.optim.Optimizer:
    """``ABSGD`` (momentum SGD) or ``ABAdam`` over ``params``."""
    if cfg.name == "adam":
        return ABAdam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return ABSGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
    )
