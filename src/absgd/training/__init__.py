"""The training system around the method: configs, runs, checkpoints, evaluation, tuning.

Everything above this package (:mod:`absgd.weighting`, :mod:`absgd.optim`,
:mod:`absgd.losses`, :mod:`absgd.schedules`, :mod:`absgd.metrics`, :mod:`absgd.data`,
:mod:`absgd.models`) is the library and never imports from here; this package turns a config
into a trained, evaluated run directory. One concept per module:

    config        RunConfig: frozen dataclasses <-> YAML, overrides, validation
    build         from a config to the parts of a run: data, model, objective, optimiser
    runner        train(): processes, device, run directory, data, then one TrainingRun
    run           TrainingRun: the epoch loop, validation, selection, final.json
    meters        the training statistics of an epoch (loss, class weights, ESS)
    reporting     progress hooks (Reporter) and the low-ESS warning
    stopping      Ctrl-C / SIGTERM between steps, divergence
    checkpoint    atomic save / load of everything a resume needs; model.init_from
    branch        a run continued from another run's kept checkpoint (train.branch_from)
    run_dir       the files of a run directory
    evaluation    loaders and metrics of a model on a split (``absgd eval``)
    tune          choosing a value on the validation split (``absgd tune``, the grids)
    sharpness     how sharp each λ would be on a run's model (``absgd sharpness``)
    devices       device, seeding, mixed precision, the environment record
    distributed   torch.distributed set-up, sharding, agreement between ranks
    loggers       CSV / TensorBoard epoch logs
    plots         the figures of a finished run

Example::

    from absgd.training import load_config, train

    cfg = load_config("my.yaml", ["train.epochs=10"])
    final = train(cfg, "runs/my-run")  # what final.json holds
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from absgd.training.build import PreparedData, prepare_data
    from absgd.training.config import RunConfig, load_config
    from absgd.training.reporting import LARGE_STEP, LOW_ESS, Reporter
    from absgd.training.run_dir import paper_style
    from absgd.training.runner import train
    from absgd.training.stopping import RunInterrupted, TrainingDiverged

# Imported on first use, so that `absgd --help` or `absgd configs` does not load the models,
# the data pipeline and the loop.
_HOMES = {
    "LARGE_STEP": "reporting",
    "LOW_ESS": "reporting",
    "PreparedData": "build",
    "Reporter": "reporting",
    "RunConfig": "config",
    "RunInterrupted": "stopping",
    "TrainingDiverged": "stopping",
    "load_config": "config",
    "paper_style": "run_dir",
    "prepare_data": "build",
    "train": "runner",
}
__all__ = [
    "LARGE_STEP",
    "LOW_ESS",
    "PreparedData",
    "Reporter",
    "RunConfig",
    "RunInterrupted",
    "TrainingDiverged",
    "load_config",
    "paper_style",
    "prepare_data",
    "train",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'absgd.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"absgd.training.{home}"), name)
    globals()[name] = value
    return value
