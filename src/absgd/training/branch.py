r"""Branching a run off another run's checkpoint (``train.branch_from``).

A two-stage method (DRW, ABSGD with ``objective.lam_switch``) trains exactly as its base until
the switch, so every candidate of a λ grid repeats the base's first stage. A branch skips
that: it continues a checkpoint kept at an epoch boundary (``train.keep_checkpoints``) under
another config, taking the source's model, optimiser, data-loader position, random-number
generators, epoch history and best-so-far model, and only the objective from its own config
(its ABSGD state starts afresh, as a two-stage run's does at the switch: λ = ∞ clears it). A
Meta-Weight-Net run neither branches nor is branched from.

A branch is only the run its config describes if that config would have trained the same
first ``E`` epochs (``E`` = the epochs the checkpoint finished), and if the state it does not
take would have been fresh there. So before it starts it checks:

- every config value but the objective, the name and method and the bookkeeping
  (``train.branch_from``, ``keep_checkpoints``, ``checkpoint_every``, ``log``,
  ``train.epochs``, ``data.root``, ``eval_batch_size``) equals the source's, and the learning
  rate of every epoch ``e < E`` does too (so a source stopped at the switch with
  ``train.epochs = E`` works on a step schedule);
- the two objectives agree on every epoch ``e < E``: with each at epoch ``e`` (class weights,
  λ) and fresh state, on a few batches of training labels with random logits, the batch
  objective of one equals the other's within ``RTOL`` (two objectives that weight the same
  per-sample losses differently give different values), and their gradients with respect to
  the logits agree too (a rescaled objective can match the value with other weights);
- with an objective other than the source's, both are plain SGD at epoch ``E - 1`` (λ = ∞:
  ABSGD's state is cleared), so a fresh state is the one a whole run would have; with the
  source's own objective its state continues.

The branched run's first ``E`` lines of ``metrics.jsonl`` are the source's, and its
``wall_seconds`` include the source's time up to the checkpoint.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from absgd.fileio import atomic_write
from absgd.training.build import (
    PreparedData,
    build_lam_schedule,
    build_lr_schedule,
    build_objective_for,
)
from absgd.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from absgd.training.config import RunConfig, comparable, config_from_dict, config_to_dict
from absgd.weighting import ABWeighting

__all__ = [
    "BranchError",
    "branch_point",
    "check_objectives_agree",
    "kept_checkpoint_name",
    "write_best_model",
]

RTOL = 1e-5
"""Relative tolerance of the objectives' agreement (float32 sums in another order differ by
about 1e-7; a different weighting by far more)."""
CHECK_BATCHES = 3
"""Training batches the objectives are compared on."""

# what may differ between a branch and its source without changing the first E epochs
_TRAIN_MAY_DIFFER = ("branch_from", "epochs")  # beside comparable()'s bookkeeping


class BranchError(ValueError):
    """A checkpoint that this config cannot branch from (says which value differs)."""


def kept_checkpoint_name(epoch: int) -> str:
    """The file ``train.keep_checkpoints`` writes after ``epoch`` epochs."""
    return f"checkpoint-epoch{epoch}.pt"


def _source_path(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"train.branch_from={source}: no checkpoint there (give a checkpoint file, e.g. "
            f"{kept_checkpoint_name(16)} that train.keep_checkpoints wrote, or a run directory)"
        )
    return path


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {b!r} here, {a!r} in the source"]


def _without_objective(cfg: RunConfig) -> dict[str, Any]:
    out = comparable(config_to_dict(cfg))
    for key in ("name", "method", "objective"):
        out.pop(key, None)
    for key in _TRAIN_MAY_DIFFER:
        out["train"].pop(key, None)
    return out


def branch_point(cfg: RunConfig) -> dict[str, Any]:
    """The checkpoint of ``cfg.train.branch_from``, checked against ``cfg`` (all but the
    objectives, see :func:`check_objectives_agree`), with its best-so-far model attached as
    ``"best_model"`` when ``cfg`` selects on validation."""
    source = cfg.train.branch_from
    if source is None:
        raise ValueError("cfg.train.branch_from is not set")
    path = _source_path(source)
    state = load_checkpoint(path)
    epoch, step = int(state["epoch"]), int(state["step"])
    where = f"train.branch_from={source}"
    if step:
        raise BranchError(
            f"{where}: that checkpoint stopped inside epoch {epoch + 1} (step {step}); branch "
            "from one written at the end of an epoch (train.keep_checkpoints)"
        )
    if epoch >= cfg.train.epochs:
        raise BranchError(
            f"{where}: the checkpoint finished {epoch} epochs, not fewer than this run's "
            f"train.epochs={cfg.train.epochs}: nothing would be left to train"
        )
    saved = config_from_dict(state["config"])
    if saved.objective.weighting == "meta_weight_net":
        raise BranchError(
            f"{where}: the source trained with Meta-Weight-Net, whose meta-network this run "
            "would not have: no config but the source's own describes those epochs"
        )
    differ = _differences(_without_objective(saved), _without_objective(cfg))
    if differ:
        raise BranchError(
            f"{where}: this config would not have trained the source's first {epoch} epochs; "
            f"only the objective and bookkeeping may differ, but: {'; '.join(differ[:5])}"
        )
    here = build_lr_schedule(cfg.optim, cfg.train.epochs)
    there = build_lr_schedule(saved.optim, saved.train.epochs)
    for e in range(epoch):
        if not math.isclose(here(e), there(e), rel_tol=1e-12):
            raise BranchError(
                f"{where}: the learning rate of 0-based epoch {e} differs ({here(e):g} here, "
                f"{there(e):g} in the source; train.epochs {cfg.train.epochs} against "
                f"{saved.train.epochs} changes the schedule)"
            )
    same_objective = config_to_dict(saved)["objective"] == config_to_dict(cfg)["objective"]
    if not same_objective:
        for name, c in (("the source's", saved), ("this config's", cfg)):
            lam_at = build_lam_schedule(c.objective)
            if lam_at is not None and not math.isinf(lam_at(epoch - 1)):
                raise BranchError(
                    f"{where}: {name} ABSGD weights are on before the checkpoint's epoch "
                    f"{epoch} (λ = {lam_at(epoch - 1):g} at 0-based epoch {epoch - 1}); "
                    "a branch with another objective starts ABSGD afresh, as a two-stage "
                    "run does at its switch, so both must be plain SGD until then (branch "
                    "at or before the switch, objective.lam_switch)"
                )
    if cfg.train.select != "last" and state["best"].get("epoch") is not None:
        state["best_model"] = _best_model(state, path, where)
    state["branch_source"] = {"checkpoint": str(path.resolve()), "epoch": epoch}
    # the same objective continues its state (the moving average s); another starts afresh
    state["branch_keeps_objective_state"] = same_objective
    return state


def write_best_model(out: Path, state: dict[str, Any]) -> None:
    """The source's best-so-far model, if :func:`branch_point` attached one, as the branch's
    ``best_model.pt`` (its selection reaches back before the branch point)."""
    if state.get("best_model") is not None:
        with atomic_write(out / "best_model.pt") as fh:
            torch.save(state["best_model"], fh)


def _best_model(state: dict[str, Any], path: Path, where: str) -> dict[str, torch.Tensor]:
    if state.get("best_model") is not None:
        return dict(state["best_model"])
    # a run directory's best_model.pt may be newer than its checkpoint: only when the best
    # epoch is the checkpoint's own and the weights agree is it the model of that epoch
    beside = path.parent / "best_model.pt"
    if state["best"]["epoch"] == state["epoch"] and beside.is_file():
        best = torch.load(beside, map_location="cpu", weights_only=True)
        model = state["model"]
        if best.keys() == model.keys() and all(torch.equal(best[k], model[k]) for k in best):
            return dict(best)
    raise BranchError(
        f"{where}: the source's best validation epoch ({state['best']['epoch']}) is part of "
        "this run's selection but the checkpoint does not hold its model; branch from a "
        "checkpoint that train.keep_checkpoints wrote (it holds that model)"
    )


def check_objectives_agree(
    source: RunConfig,
    cfg: RunConfig,
    data: PreparedData,
    epochs: int,
    device: torch.device,
) -> None:
    """Raise :class:`BranchError` unless ``cfg``'s objective and ``source``'s give the same
    batch objective at every 0-based epoch below ``epochs``.

    Both are compared as functions of the logits: on a few batches of training labels (drawn
    with a fixed seed) with random logits of spread 3, so the per-sample losses differ within
    each batch and a different weighting of them shows (a trained model's near-zero losses
    would hide it)."""
    gen = torch.Generator().manual_seed(0)
    counts = torch.as_tensor(np.asarray(data.train_counts), dtype=torch.long)
    labels = torch.repeat_interleave(torch.arange(len(counts)), counts)
    batches = []
    for _ in range(CHECK_BATCHES):
        rows = torch.randint(0, len(labels), (cfg.train.batch_size,), generator=gen)
        logits = 3.0 * torch.randn(len(rows), data.num_classes, generator=gen)
        batches.append((logits.to(device), labels[rows].to(device)))
    objectives = [
        (
            build_objective_for(c.objective, data.train_counts).to(device),
            build_lam_schedule(c.objective),
        )
        for c in (source, cfg)
    ]
    for e in range(epochs):
        results = []
        for objective, lam_at in objectives:
            batch_results = []
            for logits, y in batches:
                fresh = copy.deepcopy(objective)
                fresh.set_epoch(e)
                if lam_at is not None and isinstance(fresh.weighting, ABWeighting):
                    fresh.weighting.lam = lam_at(e)
                x = logits.clone().requires_grad_(True)
                with torch.enable_grad():
                    value = fresh(x, y)
                    (grad,) = torch.autograd.grad(value, x)
                batch_results.append((float(value.detach()), grad))
            results.append(batch_results)
        for b, ((there, g_there), (here, g_here)) in enumerate(zip(*results, strict=True)):
            scale = float(g_there.abs().max()) * RTOL + 1e-12
            same = math.isclose(here, there, rel_tol=RTOL, abs_tol=1e-12) and torch.allclose(
                g_here, g_there, rtol=RTOL, atol=scale
            )
            if not same:
                raise BranchError(
                    f"train.branch_from={cfg.train.branch_from}: this config's objective is not "
                    f"the source's at 0-based epoch {e} (batch {b}: {here:.7g} here, "
                    f"{there:.7g} in the source, or their gradients differ), so the branch would "
                    "not be the run its config describes: before the checkpoint's epoch it must "
                    "weigh the samples and classes as the source did"
                )
