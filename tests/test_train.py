"""The training loop and the run directory: every model, resume, interruption, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from absgd.checkpoint import CheckpointError, load_checkpoint
from absgd.config import load_config
from absgd.experiment import prepare_data
from absgd.models import list_models
from absgd.train import RunInterrupted, TrainingDiverged, train

FINAL_KEYS = {
    "top1",
    "balanced_accuracy",
    "macro_f1",
    "many",
    "medium",
    "few",
    "per_class_accuracy",
    "train_class_counts",
    "selected_epoch",
    "selection_split",
    "wall_seconds",
    "method",
    "dataset",
}

# Tiny generated data: 4 classes, long-tailed 24 -> 6 training images, 8x8 grey images.
TINY = [
    "data.name=synthetic",
    "data.options={num_classes: 4, train_per_class: 30, test_per_class: 6, shape: [8, 8, 1]}",
    "data.imbalance_ratio=4",
    "data.val_per_class=2",
    "data.val_fraction=null",
    "data.padding=1",
    "train.batch_size=16",
    "train.eval_batch_size=64",
    "train.device=cpu",
    "train.deterministic=true",
    "optim.warmup_epochs=0",
    "optim.schedule=constant",
]

MODEL_INPUTS = {
    # the CIFAR / ImageNet-style networks need more pixels than 8x8
    "resnet": "data.options={num_classes: 4, train_per_class: 12, test_per_class: 2, "
    "shape: [32, 32, 3]}",
    "mlp": "model.options={hidden: [32]}",
}


def _model_overrides(name: str) -> list[str]:
    if name in ("resnet10", "resnet18", "resnet50"):  # ImageNet-style: a gentler step
        return [MODEL_INPUTS["resnet"], "data.val_per_class=1", "optim.lr=0.002"]
    if name.startswith("resnet"):
        return [MODEL_INPUTS["resnet"], "data.val_per_class=1"]
    if name == "cnn8":
        return [
            "data.options={num_classes: 4, train_per_class: 12, test_per_class: 2, "
            "shape: [8, 8, 3]}",
            "data.val_per_class=1",
        ]
    if name == "mlp":
        return [MODEL_INPUTS["mlp"]]
    return []


@pytest.mark.parametrize("model", list_models())
def test_two_epochs_of_every_model_lower_the_training_loss_and_write_the_run_dir(tmp_path, model):
    cfg = load_config(
        None,
        [
            *TINY,
            "optim.lr=0.02",
            *_model_overrides(model),
            f"model.name={model}",
            "train.epochs=3",
            "train.select=best_balanced_accuracy",
            "data.augment=none",
        ],
    )
    final = train(cfg, tmp_path / "run")
    run = tmp_path / "run"
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"], [r["train_loss"] for r in history]
    assert set(final) >= FINAL_KEYS
    assert final["selection_split"] == "val"
    assert json.loads((run / "final.json").read_text())["method"] == final["method"]
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["name"] == model
    for name in (
        "checkpoint.pt",
        "model.pt",
        "best_model.pt",
        "plots/per_class_accuracy.png",
        "plots/learning_curves.png",
    ):
        assert (run / name).is_file(), name


def _absgd_cfg(epochs: int = 4, *extra: str):
    return load_config(
        None,
        [
            *TINY,
            "model.name=small_cnn",
            "model.options={widths: [8], hidden: 16, normed_classifier: true}",
            f"train.epochs={epochs}",
            "optim.lr=0.05",
            "objective.loss=ldam",
            "objective.loss_options={scale: 5.0}",
            "objective.class_weighting=drw",
            "objective.class_weighting_options={switch: 2}",
            "objective.weighting=absgd",
            "objective.lam=1.0",
            "objective.lam_switch=2",
            "train.select=best_balanced_accuracy",
            "train.test_every=2",
            *extra,
        ],
    )


def test_absgd_run_records_lambda_switch_and_diagnostics(tmp_path):
    train(_absgd_cfg(), tmp_path / "run")
    history = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["lam"] for r in history] == ["inf", "inf", 1.0, 1.0]
    assert history[0]["effective_sample_size"] == pytest.approx(1.0)
    assert history[-1]["effective_sample_size"] < 1.0
    assert [("test" in r) for r in history] == [False, True, False, True]
    assert (tmp_path / "run/plots/sample_weights.png").is_file()


def _final_metrics(run) -> dict:
    final = json.loads((run / "final.json").read_text())
    for key in ("wall_seconds", "environment"):
        final.pop(key)
    return final


@pytest.mark.parametrize("stop_after", [3, 5, 9])
def test_interrupted_and_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, stop_after):
    cfg = _absgd_cfg()
    data = prepare_data(cfg.data)
    train(cfg, tmp_path / "straight", data=data)
    with pytest.raises(RunInterrupted, match="absgd train --resume"):
        train(cfg, tmp_path / "resumed", data=data, stop_after_steps=stop_after)
    state = load_checkpoint(tmp_path / "resumed")
    steps_per_epoch = math.ceil(data.info["train_size"] / cfg.train.batch_size)
    assert (state["epoch"], state["step"]) == divmod(stop_after, steps_per_epoch)
    train(cfg, tmp_path / "resumed", resume=True, data=data)
    assert _final_metrics(tmp_path / "resumed") == _final_metrics(tmp_path / "straight")
    a = torch.load(tmp_path / "straight/model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "resumed/metrics.jsonl").read_text().splitlines()
    assert len(lines) == cfg.train.epochs


def test_resume_refuses_a_different_config_and_a_new_run_refuses_an_old_directory(tmp_path):
    cfg = _absgd_cfg(epochs=1)
    train(cfg, tmp_path / "run")
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(cfg, tmp_path / "run")
    other = _absgd_cfg(1, "optim.lr=0.01")
    with pytest.raises(ValueError, match="config differs"):
        train(other, tmp_path / "run", resume=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing"])
def test_a_damaged_checkpoint_gives_a_clear_error_never_a_silent_restart(tmp_path, damage):
    cfg = _absgd_cfg(epochs=2)
    with pytest.raises(RunInterrupted):
        train(cfg, tmp_path / "run", stop_after_steps=2)
    ckpt = tmp_path / "run/checkpoint.pt"
    if damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint at all")
    else:
        ckpt.unlink()
    with pytest.raises(CheckpointError, match="checkpoint"):
        train(cfg, tmp_path / "run", resume=True)
    assert not (tmp_path / "run/final.json").exists()


def test_train_only_classifier_from_a_first_stage_run(tmp_path):
    first = _absgd_cfg(epochs=1)
    train(first, tmp_path / "stage1")
    second = _absgd_cfg(
        1,
        f"model.init_from={tmp_path / 'stage1'}",
        "model.train_only_classifier=true",
        "model.reset_classifier=true",
    )
    train(second, tmp_path / "stage2")
    a = torch.load(tmp_path / "stage1/model.pt", weights_only=True)
    b = torch.load(tmp_path / "stage2/model.pt", weights_only=True)
    frozen = [k for k in a if not k.startswith("classifier.")]
    assert frozen and all(torch.equal(a[k], b[k]) for k in frozen)
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])


def test_leftover_validation_is_balanced_and_keeps_the_long_tailed_selection():
    cfg = load_config(
        None,
        [*TINY, "data.val_source=leftover", "data.val_per_class=5"],
    )
    data = prepare_data(cfg.data)
    assert data.val.class_counts().tolist() == [5, 5, 5, 5]
    # counts 30·4^(-i/3) = 30, 18, 11, 7; class 0 kept all 30 of its images, so it gives 5 of
    # them to validation; the other classes' validation images come from the unused ones
    assert data.train_counts.tolist() == [25, 18, 11, 7]
    assert data.info["val_images_taken_from_training"] == {"class0": 5}
    train_rows = {row.tobytes() for row in data.train.x.reshape(len(data.train), -1)}
    assert not any(row.tobytes() in train_rows for row in data.val.x.reshape(20, -1))


@pytest.mark.parametrize(
    "extra",
    [
        ["train.precision=bf16"],
        ["train.sampler=class_balanced"],
        ["optim.name=adam", "optim.lr=0.001", "optim.grad_clip=1.0", "model.channels_last=true"],
        ["train.compile=true", "model.name=mlp", "model.options={hidden: [8]}"],
    ],
    ids=["bf16-autocast", "class-balanced-sampler", "adam-clip-channels-last", "compile"],
)
def test_training_options_run_end_to_end(tmp_path, extra):
    cfg = _absgd_cfg(2, *extra)
    final = train(cfg, tmp_path / "run")
    assert 0.0 <= final["top1"] <= 1.0
    history = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train_loss"]) for r in history)


def test_fp16_without_cuda_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        train(_absgd_cfg(1, "train.precision=fp16"), tmp_path / "run")


def _mwn_cfg():
    return load_config(
        None,
        [
            *TINY,
            "model.name=small_cnn",
            "model.options={widths: [8], hidden: 16}",
            "train.epochs=2",
            "optim.lr=0.05",
            "data.meta_per_class=2",
            "objective.weighting=meta_weight_net",
            "objective.weighting_options={hidden: 8}",
        ],
    )


def test_meta_weight_net_trains_and_resumes_exactly(tmp_path):
    cfg = _mwn_cfg()
    data = prepare_data(cfg.data)
    assert data.meta.class_counts().tolist() == [2, 2, 2, 2]
    train(cfg, tmp_path / "straight", data=data)
    with pytest.raises(RunInterrupted):
        train(cfg, tmp_path / "resumed", data=data, stop_after_steps=3)
    train(cfg, tmp_path / "resumed", resume=True, data=data)
    assert _final_metrics(tmp_path / "resumed") == _final_metrics(tmp_path / "straight")
    a = torch.load(tmp_path / "straight/model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = [
        json.loads(x) for x in (tmp_path / "straight/metrics.jsonl").read_text().splitlines()
    ]
    assert 0 < history[-1]["effective_sample_size"] <= 1


@pytest.mark.parametrize(
    "weighting",
    [[], ["objective.weighting=absgd", "objective.lam=1.0"]],
    ids=["plain", "absgd"],
)
def test_a_diverging_run_stops_with_a_clear_error(tmp_path, weighting):
    # An LR of 1e12 on the MLP overflows its parameters within the first epoch.
    cfg = load_config(
        None, [*TINY, "model.name=mlp", MODEL_INPUTS["mlp"], "optim.lr=1e12", *weighting]
    )
    with pytest.raises(TrainingDiverged, match=r"training diverged in epoch 1 .*optim\.lr"):
        train(cfg, tmp_path / "run")
    # nothing of the diverged epoch was recorded
    assert not (tmp_path / "run/metrics.jsonl").exists()
    assert not (tmp_path / "run/final.json").exists()
