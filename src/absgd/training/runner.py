"""The entry point of the training system: :func:`train` runs a
:class:`~absgd.training.config.RunConfig` into a run directory::

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

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from absgd.training.branch import branch_point, check_objectives_agree, write_best_model
from absgd.training.build import PreparedData, prepare_data
from absgd.training.config import (
    RunConfig,
    config_from_dict,
    switch_never_reached,
    with_data_root,
)
from absgd.training.devices import resolve_device, seed_everything
from absgd.training.distributed import run_on_main
from absgd.training.distributed import setup as setup_distributed
from absgd.training.reporting import Reporter
from absgd.training.run import TrainingRun
from absgd.training.run_dir import check_run_dir, create_run_dir, read_final

__all__ = ["train"]


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
            A new run with ``train.branch_from`` starts from that checkpoint instead
            (:mod:`absgd.training.branch`).
        data: prepared data to use instead of reading ``cfg.data`` (tests, notebooks).
        reporter: progress hooks (the CLI shows progress bars through them; rank 0 only).
        stop_after_steps: behave as if Ctrl-C arrived after this many optimisation steps of
            this call (for tests of the interruption path).

    Raises:
        RunInterrupted: after Ctrl-C / SIGTERM (or ``stop_after_steps``), once the checkpoint
            of the current step is written; ``resume=True`` continues from there.
    """
    cfg = with_data_root(cfg)  # saved absolute: the run directory works from anywhere
    if cfg.train.branch_from is not None and not resume:
        source = str(Path(cfg.train.branch_from).expanduser().resolve())
        cfg = replace(cfg, train=replace(cfg.train, branch_from=source))
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
        branch: dict[str, Any] | None = None
        if t.branch_from is not None:  # refused before anything is written
            branch = run_on_main(ctx, lambda: branch_point(cfg))
            assert branch is not None
            source_cfg = config_from_dict(branch["config"])
            check_objectives_agree(source_cfg, cfg, data, int(branch["epoch"]), device)
        run_on_main(ctx, lambda: create_run_dir(out, cfg))
        if branch is not None:
            run_on_main(ctx, lambda: write_best_model(out, branch))
        checkpoint = branch
    counts = data.train_counts
    processes = f"; {ctx.world_size} processes" if ctx.enabled else ""
    report.message(
        f"data: {data.info.get('train_size')} train / {data.info.get('val_size', 0)} val / "
        f"{data.info.get('test_size')} test, {data.num_classes} classes, training counts "
        f"{counts.max()} .. {counts.min()}{processes}"
    )
    run: TrainingRun | None = None
    try:
        run = TrainingRun(cfg, out, ctx, device, report, data, checkpoint)
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
