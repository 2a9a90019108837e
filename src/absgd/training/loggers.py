"""Optional per-epoch loggers of a training run: a CSV file and TensorBoard.

Both are off by default (``train.log: [csv, tensorboard]`` turns them on) and see the same
record that goes to ``metrics.jsonl``. The CSV file is rewritten from the whole history every
epoch (atomically, so a resumed run's file is never half old); TensorBoard's writer drops
events past the epoch a resumed run restarts from. TensorBoard needs the ``tensorboard``
package (``pip install "torch-absgd[tensorboard]"``), imported only when asked for.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Protocol

from absgd.fileio import write_text

__all__ = ["LOGGERS", "CSVLogger", "EpochLogger", "TensorBoardLogger", "build_loggers", "scalars"]

LOGGERS = ("csv", "tensorboard")


class EpochLogger(Protocol):
    def log(self, history: list[dict[str, Any]]) -> None:
        """Record the last entry of ``history`` (the epoch just finished)."""

    def close(self) -> None: ...


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of one ``metrics.jsonl`` record, flattened: ``train_loss``, ``lr``, ``lam``
    (finite values only), ``effective_sample_size``, and ``val/…`` and ``test/…`` for top-1,
    balanced accuracy, macro-F1 and the many / medium / few groups."""
    out: dict[str, float] = {}
    for key in ("train_loss", "lr", "lam", "effective_sample_size", "epoch_seconds"):
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    for split in ("val", "test"):
        metrics = record.get(split) or {}
        for key in ("top1", "balanced_accuracy", "macro_f1", "many", "medium", "few"):
            value = metrics.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[f"{split}/{key}"] = float(value)
    return out


class CSVLogger:
    """``metrics.csv``: one row per epoch, one column per scalar (empty where undefined)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def log(self, history: list[dict[str, Any]]) -> None:
        rows = [{"epoch": r["epoch"], **scalars(r)} for r in history]
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, buffer.getvalue())

    def close(self) -> None:
        pass


class TensorBoardLogger:
    """Scalars per epoch under ``folder`` (``tensorboard --logdir RUN/tensorboard``)."""

    def __init__(self, folder: Path, start_epoch: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "train.log: tensorboard needs the tensorboard package: pip install "
                f'"torch-absgd[tensorboard]" ({err})'
            ) from None
        # Events after the epoch this (possibly resumed) run restarts from are dropped.
        self.writer = SummaryWriter(str(folder), purge_step=start_epoch + 1)

    def log(self, history: list[dict[str, Any]]) -> None:
        record = history[-1]
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, global_step=int(record["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def build_loggers(names: tuple[str, ...], out: Path, start_epoch: int) -> list[EpochLogger]:
    """The loggers named in ``train.log`` for the run directory ``out``."""
    loggers: list[EpochLogger] = []
    for name in names:
        if name == "csv":
            loggers.append(CSVLogger(out / "metrics.csv"))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(out / "tensorboard", start_epoch))
        else:
            raise ValueError(f"train.log: unknown logger {name!r}; valid: {', '.join(LOGGERS)}")
    return loggers
