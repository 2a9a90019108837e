"""Optional per-epoch loggers (CSV, TensorBoard) against the run's own metrics.jsonl."""

from __future__ import annotations

import csv
import json

import pytest

from absgd.training import RunInterrupted, train
from absgd.training.config import load_config
from absgd.training.loggers import scalars

TINY = [
    "data.name=synthetic",
    "data.options={num_classes: 3, train_per_class: 24, test_per_class: 4, shape: [6, 6, 1]}",
    "data.imbalance_ratio=3",
    "data.val_per_class=2",
    "data.val_fraction=null",
    "model.name=small_cnn",
    "model.options={widths: [4], hidden: 8}",
    "train.batch_size=16",
    "train.device=cpu",
    "train.deterministic=true",
    "train.test_every=1",
    "optim.warmup_epochs=0",
    "optim.schedule=constant",
    "objective.weighting=absgd",
    "objective.lam=2.0",
    "objective.lam_switch=1",
]


def _history(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_scalars_flatten_a_record_by_hand():
    record = {
        "epoch": 3,
        "lr": 0.1,
        "lam": "inf",  # λ = ∞ is not a scalar to plot
        "train_loss": 0.5,
        "val": {"top1": 0.8, "balanced_accuracy": 0.7, "few": None, "per_class_accuracy": [1]},
    }
    assert scalars(record) == {
        "lr": 0.1,
        "train_loss": 0.5,
        "val/top1": 0.8,
        "val/balanced_accuracy": 0.7,
    }


def test_csv_has_a_row_per_epoch_equal_to_metrics_jsonl(tmp_path):
    run = tmp_path / "run"
    train(load_config(None, [*TINY, "train.epochs=3", "train.log=[csv]"]), run)
    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    history = _history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, record in zip(rows, history, strict=True):
        assert float(row["val/balanced_accuracy"]) == record["val"]["balanced_accuracy"]
        assert float(row["test/top1"]) == record["test"]["top1"]
    assert rows[0]["lam"] == "" and float(rows[2]["lam"]) == 2.0  # ∞ left empty


def test_tensorboard_events_match_metrics_jsonl_after_an_interrupted_run(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    cfg = load_config(None, [*TINY, "train.epochs=3", "train.log=[tensorboard]"])
    with pytest.raises(RunInterrupted):
        train(cfg, run, stop_after_steps=5)  # after epoch 1's 4 steps, inside epoch 2
    train(cfg, run, resume=True)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    balanced = events.Scalars("val/balanced_accuracy")
    assert [e.step for e in balanced] == [1, 2, 3]  # each epoch once, none doubled by the resume
    for event, record in zip(balanced, _history(run), strict=True):
        assert event.value == pytest.approx(record["val"]["balanced_accuracy"])
    assert [e.step for e in events.Scalars("lam")] == [2, 3]
