"""The paper-style column (best test epoch) and the target-ESS run in the training loop."""

from __future__ import annotations

import json
import math

import pytest

from absgd.training import paper_style, train
from absgd.training.config import load_config

TINY = [
    "data.name=synthetic",
    "data.options={num_classes: 4, train_per_class: 30, test_per_class: 6, shape: [8, 8, 1]}",
    "data.imbalance_ratio=4",
    "data.val_per_class=2",
    "data.val_fraction=null",
    "data.padding=1",
    "model.name=small_cnn",
    "model.options={widths: [8], hidden: 16}",
    "train.batch_size=16",
    "train.device=cpu",
    "train.deterministic=true",
    "optim.warmup_epochs=0",
    "optim.schedule=constant",
    "optim.lr=0.05",
]


def test_paper_style_is_the_best_tested_epoch_by_hand():
    history = [
        {"epoch": 1, "test": {"top1": 0.50, "balanced_accuracy": 0.40}},
        {"epoch": 2},
        {"epoch": 3, "test": {"top1": 0.70, "balanced_accuracy": 0.35}},
        {"epoch": 4, "test": {"top1": 0.60, "balanced_accuracy": 0.45}},
    ]
    assert paper_style(history) == {
        "best_test_top1": 0.70,
        "best_test_epoch": 3,
        "best_test_balanced_accuracy": 0.45,
        "best_test_balanced_accuracy_epoch": 4,
        "tested_epochs": 3,
    }
    assert paper_style([{"epoch": 1}]) is None


def test_final_json_reports_paper_style_beside_the_selected_model(tmp_path):
    cfg = load_config(None, [*TINY, "train.epochs=3", "train.test_every=1"])
    final = train(cfg, tmp_path / "run")
    history = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    tops = [r["test"]["top1"] for r in history]
    style = final["paper_style"]
    assert style["best_test_top1"] == max(tops)
    assert style["best_test_epoch"] == 1 + tops.index(max(tops))
    assert style["tested_epochs"] == 3
    assert final["selection_split"] == "none (last epoch)"  # the column selects nothing
    assert final["top1"] == pytest.approx(tops[-1])


def test_a_target_ess_run_records_the_lambda_in_force_and_meets_its_target(tmp_path):
    cfg = load_config(
        None,
        [
            *TINY,
            "train.epochs=3",
            "objective.weighting=absgd",
            "objective.target_ess=0.6",
            "objective.lam_switch=1",
            "objective.weighting_options={lam_rate: 1.0}",
        ],
    )
    final = train(cfg, tmp_path / "run")
    history = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert history[0]["lam"] == "inf" and history[0]["effective_sample_size"] == pytest.approx(1)
    for record in history[1:]:  # λ solved per batch: every batch's weights have ESS 0.6
        assert 0 < record["lam"] < math.inf
        assert record["effective_sample_size"] == pytest.approx(0.6, abs=0.01)
    assert final["method"] == "ce+absgd(ESS=0.6 after epoch 1)"


def test_a_switch_the_run_never_reaches_is_a_warning_and_the_label_says_so(tmp_path):
    cfg = load_config(
        None,
        [*TINY, "train.epochs=2", "objective.weighting=absgd", "objective.lam=2.0",
         "objective.lam_switch=2"],
    )  # fmt: skip
    with pytest.warns(UserWarning, match="ABSGD never switches on"):
        final = train(cfg, tmp_path / "run")
    assert final["method"] == "ce+absgd(λ=2, switch at 2 never reached: plain SGD)"
    history = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["lam"] for r in history] == ["inf", "inf"]  # what the label says: plain SGD
