r"""How sharp each λ would be on a trained model (``absgd sharpness``).

ABSGD (Qi et al., "Attentional-Biased Stochastic Gradient Descent", TMLR 2023, arXiv
2012.06951) weighs the samples of a batch by ``w_i ∝ exp(v_i / λ)``, where ``v_i`` is the
per-sample loss (times the class weight when it sits inside the exponent). How concentrated
those weights are depends on λ *and* on the losses the model produces, so the same λ is sharp
on one loss function or schedule and nearly uniform on another. This module reads a run
directory's checkpoint (for a two-stage run: the model at the switch, e.g. a run of the base
stopped there), computes ``v`` for every training sample as training sees it, and reports, over
random batches of the run's batch size,

- for each λ: the mean normalised effective sample size ``ESS = (Σ w)² / (B · Σ w²)`` (1:
  uniform, plain SGD; ``1/B``: one sample carries the batch), and the step scale a fixed λ
  would give the objective once its moving average has settled (weights summing to ``1/α``,
  plus ``u`` with ``weighting_options.uniform``): ``(1/α + u) · (Σ w c / Σ w) / n`` with ``c``
  the class weights and ``n`` the run's normalisation (``mean c`` of the batch, ``Σ w c / Σ w``
  for ``weighted``, 1 for none); 1 is the base's step (see
  :attr:`absgd.Objective.last_step_scale`). A rescaled objective (the target-ESS form,
  ``rescale: true``) is not modelled;
- for each target ESS: the λ that reaches it in a batch (:func:`absgd.temperature.solve_lam`),
  as the median and the 10–90 % range over the batches: a λ grid on the scale of the loss.

The moving average ``s_t`` only scales the weights, so the ESS does not depend on it. The
weights are the pure ``exp(v/λ)``: ``weighting_options.uniform`` and ``max_weight``, which
flatten a run's weights, are not applied, and batches are drawn uniformly (a run's
class-aware sampler is not).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from absgd.temperature import solve_lam, validate_target_ess
from absgd.training.build import (
    PreparedData,
    build_model_for,
    build_objective_for,
    prepare_data,
)
from absgd.training.checkpoint import load_checkpoint
from absgd.training.config import RunConfig, load_config, with_data_root
from absgd.training.devices import resolve_device
from absgd.training.evaluation import make_loader
from absgd.training.run import set_train_mode

__all__ = [
    "ExponentInputs",
    "batch_ess",
    "batch_step_scale",
    "exponent_inputs",
    "format_sharpness",
    "random_batches",
    "seeded_from_run",
    "sharpness",
    "solved_lams",
    "training_batches",
]

MODES = ("train", "eval")


@dataclass(frozen=True)
class ExponentInputs:
    """The exponent inputs ``v`` of every training sample under one model."""

    values: Tensor
    """``v_i`` (float32), in the order of the training split's batches."""
    misclassified: Tensor
    """Whether the model's top-1 prediction was wrong, per sample (bool)."""
    batch_size: int
    """The run's training batch size."""
    epoch: int
    """The 0-based epoch whose class weights apply."""
    checkpoint_epoch: int
    """The epochs the checkpoint's model had trained."""
    sign: float
    """``sign(λ)``: -1 for label noise (λ < 0), +1 otherwise."""
    class_weights: Tensor | None = None
    """``c_i`` of every sample (float32, the order of ``values``), ``None`` without class
    weights."""
    normalize: bool | str = True
    """The run's ``objective.normalize_class_weights``."""
    alpha: float = 1.0
    """The run's ABSGD α: its weights sum to about ``1/α`` (+ ``uniform``)."""
    uniform: float = 0.0
    """The run's ABSGD ``uniform`` option (added to every weight's ``B·p``)."""


def random_batches(n: int, batch_size: int, batches: int, seed: int = 0) -> Tensor:
    """``(batches, batch_size)`` sample indices: each row a batch drawn without replacement."""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch size {batch_size} must be between 1 and the {n} samples")
    if batches < 1:
        raise ValueError(f"batches must be a positive integer, got {batches}")
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=gen)[:batch_size] for _ in range(batches)])


def _batch_weights(values: Tensor, lam: float, rows: Tensor) -> Tensor:
    """``exp(v / λ)`` of each batch ``values[row]`` up to a factor per batch, float64,
    shape ``(len(rows), B)``."""
    if lam == 0 or math.isnan(lam):
        raise ValueError(f"λ must be non-zero, got {lam}")
    z = values.double()[rows] / lam
    return torch.exp(z - z.max(dim=1, keepdim=True).values)


def batch_ess(values: Tensor, lam: float, rows: Tensor) -> Tensor:
    """ESS of ``w ∝ exp(v / λ)`` in each batch ``values[row]``, in float64, shape
    ``(len(rows),)``."""
    w = _batch_weights(values, lam, rows)
    return w.sum(dim=1) ** 2 / (rows.shape[1] * (w * w).sum(dim=1))


def batch_step_scale(
    values: Tensor,
    lam: float,
    rows: Tensor,
    class_weights: Tensor | None = None,
    normalize: bool | str = True,
    alpha: float = 1.0,
    uniform: float = 0.0,
) -> Tensor:
    """The step scale of the weights ``exp(v / λ)`` summing to ``1/α``, plus ``u/B`` each
    (``uniform``), in each batch ``values[row]`` (float64, shape ``(len(rows),)``):
    ``((1/α) · Σ w c / Σ w + u · mean c) / n``, ``n`` = the batch mean of ``c``
    (``normalize=True``) or 1 (``False``); ``1/α + u`` without class weights or with
    ``"weighted"``."""
    w = _batch_weights(values, lam, rows)
    total = torch.full((rows.shape[0],), 1.0 / alpha + uniform, dtype=torch.float64)
    if class_weights is None or normalize == "weighted":
        return total
    c = class_weights.double()[rows]
    scale = (w * c).sum(dim=1) / (alpha * w.sum(dim=1)) + uniform * c.mean(dim=1)
    return scale / c.mean(dim=1) if normalize is True else scale


def solved_lams(values: Tensor, target: float, rows: Tensor, sign: float = 1.0) -> Tensor:
    """``|λ|`` that gives each batch ``values[row]`` the normalised ESS ``target`` (``inf``
    for a batch of equal values)."""
    target = validate_target_ess(target)
    return torch.stack([solve_lam(values[row], target, sign=sign) for row in rows])


def _run_config(run_dir: Path, data_root: str | None, overrides: list[str]) -> RunConfig:
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir} does not exist: give a run directory")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: give a run directory")
    cfg = load_config(run_dir / "config.yaml", overrides)
    return cfg if data_root is None else with_data_root(cfg, data_root)


def training_batches(
    cfg: RunConfig, data: PreparedData, model: nn.Module, mode: str, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """Float32 logits and labels of every training sample once (shuffled batches of the run's
    size in ``"train"`` mode, with the model in training mode as the loop sets it; in order,
    256 at a time, in ``"eval"`` mode); call under ``torch.no_grad()``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    train = mode == "train"
    if train:
        set_train_mode(model, cfg.model.train_only_classifier)
    else:
        model.eval()
    loader = make_loader(
        data.train,
        cfg.train.batch_size if train else 256,
        train=train,
        seed=cfg.train.seed,
        device=device,
        aug=data.train_augment if train else data.eval_augment,
        cfg=replace(cfg, train=replace(cfg.train, sampler="none")),  # each sample once
    )
    for x, y in loader.epoch_batches(0):
        yield model(x).float(), y


@contextlib.contextmanager
def seeded_from_run(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global generators (and ``device``'s, on CUDA) with ``seed`` on a fork: what
    draws from them inside (building a model, dropout, augmentation) repeats exactly, and the
    caller's generators are as they were afterwards."""
    forked: list[int] = []
    if device.type == "cuda":
        forked = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def exponent_inputs(
    run_dir: str | Path,
    *,
    epoch: int | None = None,
    mode: str = "train",
    data_root: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    sign: float | None = None,
) -> ExponentInputs:
    """``v`` for every training sample under the model of ``run_dir``'s checkpoint.

    ``epoch`` (0-based) picks the class weights (DRW switches them on at an epoch); by default
    the config's λ switch, else the epoch the checkpoint would train next. ``mode="train"``
    computes the losses as training sees them (augmentation, dropout, batch statistics of
    shuffled batches of the run's size, no update; dropout and augmentation seeded from the
    run's seed, so a call repeats exactly); ``"eval"`` with the evaluation transform and
    running statistics. Losses in float32. ``overrides`` (``key=value``) change the run's
    config first, e.g. the placement of an ABSGD config when the run is its base;
    ``sign`` is λ's sign (default: the config's λ, else +1).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    run = Path(run_dir).expanduser()
    cfg = _run_config(run, data_root, list(overrides))
    state = load_checkpoint(run)
    checkpoint_epoch = int(state.get("epoch", 0))
    o = cfg.objective
    if epoch is None:
        switch = o.lam_switch
        usable = switch is not None and math.isfinite(switch) and switch >= 0
        # the first epoch that trains with λ: epoch e does once e >= lam_switch
        epoch = math.ceil(switch) if usable and switch is not None else checkpoint_epoch
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 (0-based), got {epoch}")
    device = resolve_device(cfg.train.device)
    with seeded_from_run(cfg.train.seed, device):
        values, wrong, class_weights = _exponent_values(cfg, state, epoch, mode, device)
    if sign is None:
        sign = -1.0 if o.lam is not None and o.lam < 0 else 1.0
    v = torch.cat(values)
    bad = int((~torch.isfinite(v)).sum())
    if bad:
        raise ValueError(
            f"{bad} of {v.numel()} training samples have a non-finite loss under this model; "
            "its weights have no effective sample size"
        )
    if cfg.train.batch_size > v.numel():
        raise ValueError(
            f"train.batch_size ({cfg.train.batch_size}) exceeds the {v.numel()} training samples"
        )
    return ExponentInputs(
        v,
        torch.cat(wrong),
        cfg.train.batch_size,
        epoch,
        checkpoint_epoch,
        1.0 if sign > 0 else -1.0,
        torch.cat(class_weights) if class_weights else None,
        o.normalize_class_weights,
        float(o.weighting_options.get("alpha", 1.0)),
        float(o.weighting_options.get("uniform", 0.0)),
    )


def _exponent_values(
    cfg: RunConfig, state: dict[str, Any], epoch: int, mode: str, device: torch.device
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Per batch: ``v``, whether the top-1 prediction was wrong, and the class weights (none
    without class weights); under ``no_grad``."""
    data = prepare_data(cfg.data)
    model = build_model_for(cfg, data)
    model.load_state_dict(state["model"])
    model.to(device)
    objective = build_objective_for(cfg.objective, data.train_counts).to(device)
    objective.set_epoch(epoch)
    values, wrong, weights = [], [], []
    for logits, y in training_batches(cfg, data, model, mode, device):
        v = objective.loss(logits, y).float()
        if objective.class_weight is not None:
            c = objective.class_weight.to(v.device)[y.long()]
            weights.append(c.cpu())
            if objective.placement == "inside":
                v = c * v
        values.append(v.cpu())
        wrong.append((logits.argmax(dim=1) != y).cpu())
    return values, wrong, weights


def sharpness(
    inputs: ExponentInputs,
    *,
    lams: list[float] | tuple[float, ...] = (),
    targets: list[float] | tuple[float, ...] = (0.9, 0.7, 0.5, 0.3),
    batches: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """The report of the module docstring as a JSON-ready dict."""
    bad = [lam for lam in lams if lam == 0 or not math.isfinite(lam)]
    if bad:
        raise ValueError(f"λ values must be non-zero and finite, got {bad}")
    for target in targets:
        validate_target_ess(target)
    v = inputs.values
    rows = random_batches(v.numel(), inputs.batch_size, batches, seed)
    quantiles = np.quantile(v.numpy(), [0.5, 0.9, 0.99]).tolist()
    report: dict[str, Any] = {
        "samples": v.numel(),
        "batch_size": inputs.batch_size,
        "batches": batches,
        "epoch": inputs.epoch,
        "checkpoint_epoch": inputs.checkpoint_epoch,
        "sign": inputs.sign,
        "normalize_class_weights": inputs.normalize,
        "alpha": inputs.alpha,
        "uniform": inputs.uniform,
        "misclassified": float(inputs.misclassified.double().mean()),
        "mean": float(v.double().mean()),
        "median": quantiles[0],
        "q90": quantiles[1],
        "q99": quantiles[2],
        "lams": [],
        "targets": [],
    }
    for lam in lams:
        ess = batch_ess(v, lam, rows)
        low, high = torch.quantile(ess, torch.tensor([0.1, 0.9], dtype=ess.dtype)).tolist()
        scale = batch_step_scale(
            v, lam, rows, inputs.class_weights, inputs.normalize, inputs.alpha, inputs.uniform
        )
        report["lams"].append(
            {
                "lam": lam,
                "ess": float(ess.mean()),
                "q10": low,
                "q90": high,
                "step_scale": float(scale.mean()),
            }
        )
    for target in targets:
        solved = solved_lams(v, target, rows, inputs.sign).double()
        probs = torch.tensor([0.1, 0.5, 0.9], dtype=solved.dtype)
        low, mid, high = torch.quantile(solved, probs, interpolation="nearest").tolist()
        # below 1/B no λ reaches the target: solve_lam clamps to its sharpest grid point
        report["targets"].append(
            {
                "target_ess": target,
                "lam": inputs.sign * mid,
                "q10": inputs.sign * low,
                "q90": inputs.sign * high,
                "reachable": target >= 1.0 / inputs.batch_size,
            }
        )
    return report


def format_sharpness(report: dict[str, Any], name: str = "") -> str:
    """Plain-text tables of :func:`sharpness`'s report."""
    lines = [
        f"{name}: the model after {report['checkpoint_epoch']} epochs, the class weights of "
        f"0-based epoch {report['epoch']}, {report['samples']} training samples, "
        f"{report['batches']} random batches of {report['batch_size']}"
        + ("; λ < 0: the weights favour low losses" if report["sign"] < 0 else ""),
        f"loss as ABSGD weighs it: mean {report['mean']:.3f}, median {report['median']:.3f}, "
        f"90 % {report['q90']:.3f}, 99 % {report['q99']:.3f}; "
        f"{100 * report['misclassified']:.1f} % misclassified",
    ]
    if report["lams"]:
        lines += [
            "",
            f"{'λ':>10}  {'ESS':>6}  {'ESS 10–90 % of batches':>23}  {'step ×':>7}",
        ]
        for row in report["lams"]:
            span = f"{row['q10']:.3f}–{row['q90']:.3f}"
            lines.append(
                f"{row['lam']:>10.4g}  {row['ess']:>6.3f}  {span:>23}  {row['step_scale']:>7.3g}"
            )
        uniform = f" + u (u = {report['uniform']:g})" if report["uniform"] else ""
        lines.append(
            f"step ×: a fixed λ's step over the base's once its weights sum to 1/α{uniform} "
            f"(α = {report['alpha']:g}, normalize_class_weights: "
            f"{report['normalize_class_weights']}; a rescaled objective is not modelled)"
        )
    if report["targets"]:
        lines += ["", f"{'target ESS':>10}  {'λ':>9}  {'λ 10–90 % of batches':>23}"]
        for row in report["targets"]:
            span = f"{row['q10']:.3g} – {row['q90']:.3g}"
            note = "" if row["reachable"] else "  (below 1/B: not reachable)"
            lines.append(f"{row['target_ess']:>10.3g}  {row['lam']:>9.4g}  {span:>23}{note}")
    return "\n".join(lines)
