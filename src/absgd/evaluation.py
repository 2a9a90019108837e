"""Evaluate the saved model of a finished run on one of its splits (``absgd eval``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from absgd.config import dataset_name, load_config, method_name, with_data_root
from absgd.experiment import build_model_for, prepare_data
from absgd.metrics import to_jsonable
from absgd.models import to_channels_last
from absgd.train import (
    evaluate_model,
    make_loader,
    resolve_device,
    use_channels_last,
)

__all__ = ["evaluate_run"]


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
    for name in ("config.yaml", "model.pt"):
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
    model.load_state_dict(torch.load(run / "model.pt", map_location="cpu", weights_only=True))
    model.to(device)
    channels_last = use_channels_last(cfg, model)
    if channels_last:
        to_channels_last(model)
    loader = make_loader(
        target,
        cfg.train.eval_batch_size,
        train=False,
        seed=0,
        device=device,
        aug=data.eval_augment,
        cfg=cfg,
    )
    metrics = evaluate_model(
        model,
        loader,
        data.num_classes,
        data.train_counts,
        device=device,
        precision=cfg.train.precision,
        channels_last=channels_last,
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
        }
    )
