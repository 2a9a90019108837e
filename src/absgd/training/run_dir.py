"""The files of a run directory: the checks before a run starts or resumes, ``config.yaml``,
``metrics.jsonl``, the saved models, and the paper-style summary that ``final.json`` carries.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from absgd.fileio import atomic_write, write_text
from absgd.metrics import to_jsonable
from absgd.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from absgd.training.config import RunConfig, config_from_dict, config_to_dict, dump_yaml, same_run

__all__ = [
    "FINAL_TEST_KEYS",
    "check_run_dir",
    "compact",
    "create_run_dir",
    "json_number",
    "paper_style",
    "read_final",
    "save_model",
    "write_history",
]


FINAL_TEST_KEYS = (
    "top1",
    "top5",
    "balanced_accuracy",
    "macro_f1",
    "many",
    "medium",
    "few",
    "per_class_accuracy",
    "shot_thresholds",
    "shot_num_classes",
    "confusion_matrix",
)


def check_run_dir(out: Path, cfg: RunConfig, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (``None`` for a new run), after the directory checks."""
    if resume:
        checkpoint = load_checkpoint(out / CHECKPOINT_NAME)
        saved = config_from_dict(checkpoint["config"])
        if not same_run(saved, cfg):
            raise ValueError(
                f"the config differs from the one saved in {out}; resume with the saved config "
                "(absgd train --resume DIR, where only --set data.root=... may change) or start "
                "a new run directory"
            )
        if saved.data.root != cfg.data.root:  # the data moved: the run now reads it there
            checkpoint["config"] = config_to_dict(cfg)
            write_text(out / "config.yaml", dump_yaml(cfg))
        return checkpoint
    if (out / CHECKPOINT_NAME).exists() or (out / "final.json").exists():
        raise FileExistsError(
            f"{out} already holds a run; pass --resume to continue it or choose another --out"
        )
    return None


def create_run_dir(out: Path, cfg: RunConfig) -> None:
    """The run directory and its ``config.yaml``, written once the data has loaded (a start
    that fails on its data leaves no folder behind)."""
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", dump_yaml(cfg))


def paper_style(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best test accuracy over the epochs whose test split was evaluated
    (``train.test_every``), as the ABSGD and LDAM-DRW papers report it.

    Optimistic by construction (the test split picks the epoch), so it is reported beside the
    validation-selected number for comparison with published tables, and never used to
    select anything. ``None`` when no epoch was tested.
    """
    tested = [r for r in history if r.get("test")]
    if not tested:
        return None
    best = max(tested, key=lambda r: r["test"]["top1"])
    best_balanced = max(tested, key=lambda r: r["test"]["balanced_accuracy"])
    return {
        "best_test_top1": best["test"]["top1"],
        "best_test_epoch": best["epoch"],
        "best_test_balanced_accuracy": best_balanced["test"]["balanced_accuracy"],
        "best_test_balanced_accuracy_epoch": best_balanced["epoch"],
        "tested_epochs": len(tested),
    }


def read_final(out: Path) -> dict[str, Any] | None:
    """The run's ``final.json``, or ``None`` if it was not written (killed after the last
    checkpoint)."""
    path = out / "final.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def json_number(value: float | None) -> float | str | None:
    """JSON has no infinity: λ = ∞ is written as the string "inf"."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def compact(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per-epoch records keep everything but the confusion matrix."""
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}


def save_model(path: Path, model: nn.Module) -> None:
    with atomic_write(path) as fh:
        torch.save(model.state_dict(), fh)


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    lines = [json.dumps(to_jsonable(r), allow_nan=False) for r in history]
    write_text(path, "\n".join(lines) + "\n")
