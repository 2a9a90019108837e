"""The training loop and the run directory: every model, resume, interruption, checkpoints."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import absgd.training.run as run_module
from absgd.data.sources import load_source
from absgd.meta_weight_net import MetaWeightNet
from absgd.models import list_models
from absgd.optim import ABSGD, ABAdam
from absgd.training import Reporter, RunInterrupted, TrainingDiverged, train
from absgd.training.build import prepare_data
from absgd.training.checkpoint import (
    CheckpointError,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from absgd.training.config import load_config
from absgd.training.reporting import large_step_warning, low_ess_warning

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


# TINY's training split: 30·4^(-i/3) = 30, 18, 11, 7 images, 2 of each go to validation.
TINY_TRAIN_COUNTS = [28, 16, 9, 5]
TINY_STEPS_PER_EPOCH = 4  # ceil(58 / 16)


class _Recorder(Reporter):
    """What :func:`train` really did, seen through the objects it builds: every optimiser step
    (learning rates, parameters and gradients before, parameters after), every call of the
    objective (labels, class weights, λ, per-sample losses and weights, the value), every
    forward pass of the model (input and output dtype and layout) and every gradient clip
    (the norm before clipping), each tagged with the epoch the loop announced."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.epoch = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.model: torch.nn.Module | None = None
        self.steps: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.forwards: list[dict[str, Any]] = []
        self.clip_norms: list[float] = []
        self.compiled: list[Any] = []
        build_optimizer = run_module.build_optimizer
        build_objective_for = run_module.build_objective_for
        build_model_for = run_module.build_model_for
        clip_grad_norm_ = torch.nn.utils.clip_grad_norm_
        compile_ = torch.compile

        def optimizer(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
            opt = build_optimizer(*args, **kwargs)
            opt.register_step_pre_hook(self._before_step)
            opt.register_step_post_hook(self._after_step)
            self.optimizer = opt
            return opt

        def objective(*args: Any, **kwargs: Any) -> torch.nn.Module:
            obj = build_objective_for(*args, **kwargs)
            obj.register_forward_pre_hook(self._before_objective)
            obj.register_forward_hook(self._after_objective)
            return obj

        def model(*args: Any, **kwargs: Any) -> torch.nn.Module:
            net = build_model_for(*args, **kwargs)
            self.model = net
            net.register_forward_pre_hook(self._before_model)
            net.register_forward_hook(self._after_model)
            return net

        def clip(parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> torch.Tensor:
            norm = clip_grad_norm_(parameters, max_norm, *args, **kwargs)
            self.clip_norms.append(float(norm))
            return norm

        def compile_spy(module: Any, *args: Any, **kwargs: Any) -> Any:
            self.compiled.append(module)
            return compile_(module, *args, **kwargs)

        monkeypatch.setattr(run_module, "build_optimizer", optimizer)
        monkeypatch.setattr(run_module, "build_objective_for", objective)
        monkeypatch.setattr(run_module, "build_model_for", model)
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
        monkeypatch.setattr(torch, "compile", compile_spy)

    # -- Reporter ------------------------------------------------------------------------------
    def epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        self.epoch = epoch

    # -- hooks ---------------------------------------------------------------------------------
    def _params(self, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [p for group in opt.param_groups for p in group["params"]]

    def _before_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = self._params(opt)
        self.steps.append(
            {
                "epoch": self.epoch,
                "lr": [group["lr"] for group in opt.param_groups],
                "before": [p.detach().double().clone() for p in params],
                "grad": [
                    torch.zeros_like(p, dtype=torch.float64)
                    if p.grad is None
                    else p.grad.detach().double().clone()
                    for p in params
                ],
            }
        )

    def _after_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps[-1]["after"] = [p.detach().double().clone() for p in self._params(opt)]

    def _before_objective(self, obj: Any, args: Any) -> None:
        weighting = obj.weighting
        self.calls.append(
            {
                "epoch": self.epoch,
                "y": args[1].detach().clone(),
                "class_weight": None if obj.class_weight is None else obj.class_weight.clone(),
                "lam": None if weighting is None else getattr(weighting, "lam", None),
            }
        )

    @torch.no_grad()
    def _after_objective(self, obj: Any, args: Any, output: torch.Tensor) -> None:
        call = self.calls[-1]
        call["losses"] = obj.loss(*args).double()
        call["q"] = None if obj.last_weights is None else obj.last_weights.double().clone()
        call["value"] = float(output)

    def _before_model(self, model: Any, args: Any) -> None:
        x = args[0]
        self.forwards.append(
            {
                "epoch": self.epoch,
                "training": model.training,
                "input_channels_last": _layout_channels_last(x),
            }
        )

    def _after_model(self, model: Any, args: Any, output: torch.Tensor) -> None:
        self.forwards[-1]["output_dtype"] = output.dtype

    # -- summaries -----------------------------------------------------------------------------
    def steps_of(self, epoch: int) -> list[dict[str, Any]]:
        return [s for s in self.steps if s["epoch"] == epoch]

    def training_calls(self, epoch: int) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["epoch"] == epoch]


def _history(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


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


# -- the schedules and the optimiser's settings reach the step ---------------------------------

MLP_RUN = [*TINY, "model.name=mlp", "model.options={hidden: [16]}"]


class _Messages(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _ce_absgd_cfg(lam: float, *extra: str):
    return load_config(
        None,
        [
            *MLP_RUN,
            "train.epochs=3",
            "objective.loss=ce",
            "objective.weighting=absgd",
            f"objective.lam={lam}",
            "objective.lam_switch=1",
            *extra,
        ],
    )


def _ess_warnings(report: _Messages) -> list[str]:
    return [line for line in report.lines if "effective sample size" in line]


def _ce_absgd(tmp_path, lam: float):
    report = _Messages()
    train(_ce_absgd_cfg(lam), tmp_path / "run", reporter=report)
    history = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    return [r["effective_sample_size"] for r in history], _ess_warnings(report)


def test_weights_on_a_few_samples_per_batch_draw_one_warning(tmp_path):
    # λ = 0.001 on CE: exp(l/λ) gives nearly all of a batch's weight to its largest loss
    with pytest.warns(UserWarning, match="effective sample size of ABSGD's weights was 0"):
        ess, warned = _ce_absgd(tmp_path, 0.001)
    assert ess[0] == pytest.approx(1.0)  # plain SGD before the switch
    assert ess[1] < 0.3 and ess[2] < 0.3
    assert len(warned) == 1  # once per run, at the first epoch below 0.3
    assert warned[0].startswith("warning: epoch 2: ") and "λ = 0.001" in warned[0]


def test_a_resumed_run_does_not_warn_again(tmp_path):
    cfg, first, then = _ce_absgd_cfg(0.001, "train.epochs=4"), _Messages(), _Messages()
    with pytest.warns(UserWarning, match="effective sample size"), pytest.raises(RunInterrupted):
        train(cfg, tmp_path / "run", reporter=first, stop_after_steps=2 * TINY_STEPS_PER_EPOCH + 1)
    assert len(_ess_warnings(first)) == 1  # at epoch 2
    final = train(cfg, tmp_path / "run", resume=True, reporter=then)
    assert _ess_warnings(then) == []
    # final.json still lists the warning drawn before the interruption, at its epoch
    (drawn,) = final["warnings"]
    assert drawn["kind"] == "low_ess" and drawn["epoch"] == 2
    assert "warning: " + drawn["text"] == _ess_warnings(first)[0]


def test_a_run_that_diverges_after_a_warning_keeps_it_in_its_grid_record(tmp_path, monkeypatch):
    # λ = 0.001 draws the low-ESS warning at epoch 2; then the losses turn non-finite in epoch 3
    # (forced here). The run leaves no final.json; the record a grid writes for it still lists
    # the warning, read back from metrics.jsonl.
    from absgd.training.tune import run_trial
    from absgd.weighting import NonFiniteLossError

    real_step = run_module.TrainingRun._step

    def step(self, x, y):
        if self.epoch == 2:
            raise NonFiniteLossError("forced")
        return real_step(self, x, y)

    monkeypatch.setattr(run_module.TrainingRun, "_step", step)
    with pytest.warns(UserWarning, match="effective sample size"):
        record = run_trial(_ce_absgd_cfg(0.001, "train.epochs=4"), tmp_path / "run")
    assert record["metrics"] is None and "diverged in epoch 3" in record["diverged"]
    assert not (tmp_path / "run/final.json").exists()
    (drawn,) = record["warnings"]
    assert (drawn["kind"], drawn["epoch"]) == ("low_ess", 2)
    assert "effective sample size" in drawn["text"]
    assert [point["epoch"] for point in record["curve"]] == [1, 2]


def test_a_low_target_ess_draws_advice_about_the_target(tmp_path):
    report = _Messages()
    with pytest.warns(UserWarning, match=r"objective.target_ess \(now 0.2\)"):
        train(_ce_absgd_cfg(1.0, "objective.target_ess=0.2"), tmp_path / "run", reporter=report)
    assert len(_ess_warnings(report)) == 1


@pytest.mark.parametrize(("select", "before"), [("best_balanced_accuracy", True), ("last", False)])
def test_final_json_says_whether_the_selected_model_predates_the_switch(tmp_path, select, before):
    # an LR of 1e-30 leaves float32 parameters as they are: every epoch scores alike, and the
    # first of equal scores is the best
    cfg = _ce_absgd_cfg(1.0, "optim.lr=1e-30", f"train.select={select}")
    report = _Messages()
    final = train(cfg, tmp_path / "run", reporter=report)
    assert final["selected_epoch"] == (1 if before else 3)
    assert final["selected_before_switch"] is before
    assert any("trained by plain SGD" in line for line in report.lines) is before


@pytest.mark.parametrize(
    ("select", "chosen"),
    [("best_balanced_accuracy", 2), ("best_top1", 1), ("best_top1_train_prior", 3)],
)
def test_selection_keeps_the_model_of_the_first_best_validation_epoch(
    tmp_path, monkeypatch, select, chosen
):
    # Scripted validation scores: balanced accuracy 0.2, 0.6, 0.4, 0.6 (the first of the two
    # 0.6 wins), top-1 0.8, 0.4, 0.6, 0.4 and top-1 at the training prior 0.3, 0.5, 0.7, 0.7.
    # The selected model must be the one a run of `chosen` epochs ends with (a constant LR:
    # the first epochs of both runs are the same).
    balanced = iter([0.2, 0.6, 0.4, 0.6])
    prior = iter([0.3, 0.5, 0.7, 0.7])
    evaluate = run_module.TrainingRun.evaluate

    def scripted(self, split):
        metrics = evaluate(self, split)
        if split == "val":
            assert "top1_train_prior" in metrics  # the real key, before it is scripted
            score = next(balanced)
            metrics = {**metrics, "balanced_accuracy": score, "top1": 1.0 - score}
            metrics["top1_train_prior"] = next(prior)
        return metrics

    common = [*MLP_RUN, "optim.lr=0.05", "train.test_every=1"]
    with monkeypatch.context() as patch:
        patch.setattr(run_module.TrainingRun, "evaluate", scripted)
        final = train(
            load_config(None, [*common, "train.epochs=4", f"train.select={select}"]),
            tmp_path / "selected",
        )
    short = train(load_config(None, [*common, f"train.epochs={chosen}"]), tmp_path / "short")
    assert final["selected_epoch"] == chosen and final["selection_metric"] == select
    a = torch.load(tmp_path / "selected/model.pt", weights_only=True)
    b = torch.load(tmp_path / "short/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the reported test metrics are the selected model's, as the epoch's own test evaluation
    history = _history(tmp_path / "selected")
    assert final["top1"] == history[chosen - 1]["test"]["top1"] == short["top1"]
    assert final["val_at_selected_epoch"] == history[chosen - 1]["val"]
    assert final["val_at_selected_epoch"]["balanced_accuracy"] == [0.2, 0.6, 0.4][chosen - 1]


def test_the_large_step_warning_needs_a_finite_lambda_and_a_scale_above_the_ceiling():
    assert large_step_warning(4, 1.51, 3.0) is not None
    assert large_step_warning(4, 1.5, 3.0) is None  # at the ceiling: fine
    assert large_step_warning(4, 0.2, 3.0) is None  # a small step is not what it is about
    assert large_step_warning(4, 9.0, math.inf) is None  # plain SGD
    assert large_step_warning(4, None, 3.0) is None  # no scale recorded
    text = large_step_warning(4, 4.5, 1.0)
    assert "epoch 5: the objective's step scale was 4.5, 4.5 times the 1 that" in text
    # relative to what the weights sum to: α = 0.5 with uniform = 1 sums to 3 by design
    assert large_step_warning(4, 4.49, 1.0, weights_sum=3.0) is None
    assert "1.67 times the 3 that ABSGD's weights sum" in large_step_warning(4, 5, 1, 3.0)


def _drw_absgd_scales(tmp_path, normalize: str) -> tuple[list[float], list[str]]:
    # class-balanced weights from 4 : 1 ... : 8 images and a sharp λ from the second epoch
    report = _Messages()
    cfg = _ce_absgd_cfg(
        0.3,
        "data.imbalance_ratio=8",
        "objective.class_weighting=drw",
        "objective.class_weighting_options={switch: 1, beta: 0.9999}",
        f"objective.normalize_class_weights={normalize}",
    )
    train(cfg, tmp_path / normalize, reporter=report)
    scales = [r["step_scale"] for r in _history(tmp_path / normalize)]
    return scales, [line for line in report.lines if "step scale" in line]


def test_a_step_far_beyond_the_base_draws_one_warning_and_weighted_avoids_it(tmp_path):
    # divided by the batch mean, the weights' move onto the rare class multiplies the step
    with pytest.warns(UserWarning, match="objective's step scale was"):
        scales, warned = _drw_absgd_scales(tmp_path, "true")
    assert scales[0] == pytest.approx(1.0)  # uniform weights before the switch: the base's
    assert max(scales[1:]) > 1.5 and len(warned) == 1
    assert "normalize_class_weights=weighted" in warned[0]
    # final.json names it, at the first epoch whose scale passed 1.5 times the weights' sum (1)
    final = json.loads((tmp_path / "true/final.json").read_text())
    (drawn,) = [w for w in final["warnings"] if w["kind"] == "large_step"]
    assert drawn["epoch"] == 1 + next(i for i, s in enumerate(scales) if s > 1.5)
    assert "warning: " + drawn["text"] == warned[0]
    # divided by the class weights' mean under the sample weights: the weights' sum (≤ 1 here)
    scales, warned = _drw_absgd_scales(tmp_path, "weighted")
    assert scales[0] == pytest.approx(1.0) and max(scales[1:]) < 1.5 and warned == []


def test_a_resumed_drw_run_keeps_its_large_step_warning_and_does_not_repeat_it(tmp_path):
    # DRW's class weights start at the switch: when the run resumes, the objective is rebuilt
    # without them, yet the warning drawn after the switch counts as drawn
    cfg = _ce_absgd_cfg(
        0.3,
        "data.imbalance_ratio=8",
        "objective.class_weighting=drw",
        "objective.class_weighting_options={switch: 1, beta: 0.9999}",
        "train.epochs=3",
    )
    first, then = _Messages(), _Messages()
    with pytest.warns(UserWarning, match="step scale"), pytest.raises(RunInterrupted):
        train(cfg, tmp_path / "run", reporter=first, stop_after_steps=2 * TINY_STEPS_PER_EPOCH + 1)
    assert len([line for line in first.lines if "step scale" in line]) == 1  # at epoch 2
    final = train(cfg, tmp_path / "run", resume=True, reporter=then)
    scales = [r["step_scale"] for r in _history(tmp_path / "run")]
    assert scales[2] > 1.5  # epoch 3 would warn again if the first had been forgotten
    assert not [line for line in then.lines if "step scale" in line]
    drawn = [(w["kind"], w["epoch"]) for w in final["warnings"] if w["kind"] == "large_step"]
    assert drawn == [("large_step", 2)]


def test_without_class_weights_a_rescaled_step_draws_no_large_step_warning(tmp_path):
    # λ < 0 rescaled to the mean loss multiplies the step by mean(l) / Σ p·l, above 1 by
    # design; the warning is about class weights divided by their batch mean, which are off
    report = _Messages()
    cfg = _ce_absgd_cfg(-0.1, "objective.weighting_options={rescale: true}")
    final = train(cfg, tmp_path / "run", reporter=report)
    scales = [r["step_scale"] for r in _history(tmp_path / "run")]
    assert max(scales[1:]) > 2.0
    assert not [line for line in report.lines if "step scale" in line]
    assert "large_step" not in [w["kind"] for w in final["warnings"]]


def test_nearly_uniform_weights_draw_no_warning(tmp_path, recwarn):
    ess, warned = _ce_absgd(tmp_path, 1000.0)
    assert min(ess) > 0.99 and warned == []
    assert not [w for w in recwarn if "effective sample size" in str(w.message)]


def test_the_low_ess_warning_needs_a_finite_lambda_and_an_ess_below_the_floor():
    assert low_ess_warning(4, 0.29, 3.0) is not None
    assert low_ess_warning(4, 0.29, -3.0) is not None  # λ < 0 concentrates too
    assert low_ess_warning(4, 0.3, 3.0) is None  # at the floor: fine
    assert low_ess_warning(4, 0.01, math.inf) is None  # plain SGD
    assert low_ess_warning(4, None, 3.0) is None  # no weights recorded
    assert "was 0.296, below 0.3" in low_ess_warning(4, 0.296, 3.0)


@pytest.mark.parametrize(
    ("schedule", "multipliers"),
    [
        # warm-up (t + 1)/2 for t < 2, then ×0.1 from epoch 3 and ×0.01 from epoch 5
        (
            ["optim.schedule=step", "optim.milestones=[3, 5]", "optim.factors=[0.1, 0.01]"],
            [0.5, 1.0, 1.0, 0.1, 0.1, 0.01],
        ),
        # warm-up, then 0.1 + 0.9 · (1 + cos(π (t - 2) / 4)) / 2 for t = 2..5: final_factor is
        # reached at t = epochs, one past the last epoch (as torch's CosineAnnealingLR)
        (
            ["optim.schedule=cosine", "optim.final_factor=0.1"],
            [
                0.5,
                1.0,
                1.0,
                0.1 + 0.45 * (1 + math.sqrt(0.5)),
                0.55,
                0.1 + 0.45 * (1 - math.sqrt(0.5)),
            ],
        ),
    ],
    ids=["step", "cosine"],
)
def test_the_lr_schedule_reaches_every_step_of_every_epoch(
    tmp_path, monkeypatch, schedule, multipliers
):
    rec = _Recorder(monkeypatch)
    cfg = load_config(
        None,
        [
            *MLP_RUN,
            "train.epochs=6",
            "optim.lr=0.1",
            "optim.momentum=0",
            "optim.weight_decay=0",
            "optim.warmup_epochs=2",
            *schedule,
        ],
    )
    train(cfg, tmp_path / "run", reporter=rec)
    expected = [0.1 * m for m in multipliers]
    assert [r["lr"] for r in _history(tmp_path / "run")] == pytest.approx(expected, rel=1e-12)
    for epoch, lr in enumerate(expected):
        steps = rec.steps_of(epoch)
        assert len(steps) == TINY_STEPS_PER_EPOCH
        for step in steps:
            assert step["lr"] == pytest.approx([lr], rel=1e-12)
            # plain SGD (no momentum, no weight decay) moves by -lr · g: the rate it used
            moved = sum(
                ((b - a) * g).sum()
                for b, a, g in zip(step["before"], step["after"], step["grad"], strict=True)
            )
            squared = sum((g * g).sum() for g in step["grad"])
            assert float(moved / squared) == pytest.approx(lr, rel=1e-3)


def _assert_first_steps_are_sgd(rec, *, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD's update rule worked out from the recorded gradients (first 2 steps)."""
    buffers: dict[int, torch.Tensor] = {}
    for step in rec.steps[:2]:
        for i, (p, g, after) in enumerate(
            zip(step["before"], step["grad"], step["after"], strict=True)
        ):
            d = g + weight_decay * p
            buffers[i] = d.clone() if i not in buffers else momentum * buffers[i] + d
            direction = d + momentum * buffers[i] if nesterov else buffers[i]
            torch.testing.assert_close(after - p, -lr * direction, rtol=1e-4, atol=3e-7)


def _assert_first_steps_are_adam(rec, *, lr, betas, weight_decay, eps=1e-8):
    """torch.optim.Adam's update rule (L2 weight decay, bias correction), first 2 steps."""
    b1, b2 = betas
    m: dict[int, torch.Tensor] = {}
    v: dict[int, torch.Tensor] = {}
    for t, step in enumerate(rec.steps[:2], start=1):
        for i, (p, g, after) in enumerate(
            zip(step["before"], step["grad"], step["after"], strict=True)
        ):
            d = g + weight_decay * p
            m[i] = (1 - b1) * d + (b1 * m[i] if i in m else 0)
            v[i] = (1 - b2) * d * d + (b2 * v[i] if i in v else 0)
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            expected = -lr * m_hat / (v_hat.sqrt() + eps)
            torch.testing.assert_close(after - p, expected, rtol=1e-3, atol=3e-7)


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_sgd_settings_reach_the_optimizer(tmp_path, monkeypatch, nesterov):
    rec = _Recorder(monkeypatch)
    settings = [
        "optim.lr=0.05",
        "optim.momentum=0.5",
        "optim.weight_decay=0.01",
        f"optim.nesterov={str(nesterov).lower()}",
    ]
    train(load_config(None, [*MLP_RUN, "train.epochs=1", *settings]), tmp_path / "r", reporter=rec)
    assert isinstance(rec.optimizer, ABSGD)
    group = rec.optimizer.param_groups[0]
    assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.5, 0.01, nesterov)
    _assert_first_steps_are_sgd(rec, lr=0.05, momentum=0.5, weight_decay=0.01, nesterov=nesterov)


def test_the_adam_settings_reach_the_optimizer(tmp_path, monkeypatch):
    rec = _Recorder(monkeypatch)
    settings = [
        "optim.name=adam",
        "optim.lr=0.01",
        "optim.betas=[0.8, 0.9]",
        "optim.weight_decay=0.01",
    ]
    train(load_config(None, [*MLP_RUN, "train.epochs=1", *settings]), tmp_path / "r", reporter=rec)
    assert isinstance(rec.optimizer, ABAdam)
    group = rec.optimizer.param_groups[0]
    assert (group["betas"], group["weight_decay"]) == ((0.8, 0.9), 0.01)
    _assert_first_steps_are_adam(rec, lr=0.01, betas=(0.8, 0.9), weight_decay=0.01)


def _class_balanced_weights(counts: list[int], beta: float = 0.9999) -> np.ndarray:
    """Cui et al. (2019): w_c ∝ (1 - β) / (1 - β^n_c), scaled to sum to C."""
    w = (1 - beta) / (1 - beta ** np.asarray(counts, dtype=np.float64))
    return w * len(counts) / w.sum()


def test_the_drw_and_lambda_switches_take_effect_at_their_epoch(tmp_path, monkeypatch):
    # _absgd_cfg: LDAM, DRW from epoch 2, ABSGD with λ = ∞ before epoch 2 and λ = 1 from it,
    # class weights inside the exponent, normalised by their batch mean.
    rec = _Recorder(monkeypatch)
    train(_absgd_cfg(), tmp_path / "run", reporter=rec)
    assert [r["lam"] for r in _history(tmp_path / "run")] == ["inf", "inf", 1.0, 1.0]
    weights = torch.tensor(_class_balanced_weights(TINY_TRAIN_COUNTS))
    for epoch in range(4):
        calls = rec.training_calls(epoch)
        assert len(calls) == TINY_STEPS_PER_EPOCH
        for call in calls:
            y, losses, q = call["y"], call["losses"], call["q"]
            b = len(y)
            if epoch < 2:  # plain SGD on the unweighted loss: q = 1/B, the mean loss
                assert call["class_weight"] is None and call["lam"] == math.inf
                torch.testing.assert_close(q, torch.full((b,), 1.0 / b, dtype=torch.float64))
                assert call["value"] == pytest.approx(losses.mean().item(), rel=1e-6)
            else:  # class-balanced weights c and ABSGD at λ = 1: q ∝ exp(c·l / λ)
                assert call["lam"] == 1.0
                torch.testing.assert_close(call["class_weight"].double(), weights)
                c = weights[y]
                log_ratio = q.log() - c * losses / 1.0
                assert float(log_ratio.max() - log_ratio.min()) < 1e-4
                assert float(q.max() / q.min()) > 1.01  # not uniform
                expected = (q * c * losses).sum() / c.mean()
                assert call["value"] == pytest.approx(expected.item(), rel=1e-5)


def _final_metrics(run) -> dict:
    final = json.loads((run / "final.json").read_text())
    for key in ("wall_seconds", "environment"):
        final.pop(key)
    return final


def _same_records(run_a, run_b) -> None:
    """metrics.jsonl of two runs agree record by record (but for the epochs' wall time)."""
    a, b = _history(run_a), _history(run_b)
    for record in (*a, *b):
        record.pop("epoch_seconds")
    assert a == b


@pytest.mark.parametrize(
    ("stop_after", "position"),
    [  # 4 steps per epoch; 4 and 8 stop after an epoch's last step, before its end
        (3, (0, 3)),
        (4, (0, 4)),
        (5, (1, 1)),
        (8, (1, 4)),
        (9, (2, 1)),
    ],
)
def test_interrupted_and_resumed_run_ends_exactly_like_an_uninterrupted_one(
    tmp_path, stop_after, position
):
    cfg = _absgd_cfg()
    data = prepare_data(cfg.data)
    assert math.ceil(data.info["train_size"] / cfg.train.batch_size) == TINY_STEPS_PER_EPOCH
    train(cfg, tmp_path / "straight", data=data)
    with pytest.raises(RunInterrupted, match="absgd train --resume"):
        train(cfg, tmp_path / "resumed", data=data, stop_after_steps=stop_after)
    state = load_checkpoint(tmp_path / "resumed")
    assert (state["epoch"], state["step"]) == position
    train(cfg, tmp_path / "resumed", resume=True, data=data)
    assert _final_metrics(tmp_path / "resumed") == _final_metrics(tmp_path / "straight")
    a = torch.load(tmp_path / "straight/model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    _same_records(tmp_path / "resumed", tmp_path / "straight")


class _Preempted(BaseException):
    """The process dies (SIGKILL, a pre-empted node) after an end-of-epoch checkpoint."""


@pytest.mark.parametrize("epochs_done", [1, 2, 3])
def test_a_run_preempted_at_an_epoch_boundary_resumes_from_the_epoch_checkpoint(
    tmp_path, monkeypatch, epochs_done
):
    # Epoch 2 is where DRW and λ switch: resuming there must switch exactly as straight on.
    cfg = _absgd_cfg()
    data = prepare_data(cfg.data)
    train(cfg, tmp_path / "straight", data=data)
    end_epoch = run_module.TrainingRun._end_epoch

    def end_epoch_then_die(self, *args, **kwargs):
        end_epoch(self, *args, **kwargs)  # records the epoch, writes its checkpoint
        if self.epoch == epochs_done:
            raise _Preempted

    with monkeypatch.context() as m:
        m.setattr(run_module.TrainingRun, "_end_epoch", end_epoch_then_die)
        with pytest.raises(_Preempted):
            train(cfg, tmp_path / "resumed", data=data)
    state = load_checkpoint(tmp_path / "resumed")
    assert (state["epoch"], state["step"]) == (epochs_done, 0)
    assert state["meters"] is None  # nothing of the next epoch had started
    assert len(_history(tmp_path / "resumed")) == epochs_done
    assert not (tmp_path / "resumed/final.json").exists()
    train(cfg, tmp_path / "resumed", resume=True, data=data)
    assert _final_metrics(tmp_path / "resumed") == _final_metrics(tmp_path / "straight")
    a = torch.load(tmp_path / "straight/model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    _same_records(tmp_path / "resumed", tmp_path / "straight")


def test_resume_refuses_a_different_config_and_a_new_run_refuses_an_old_directory(tmp_path):
    cfg = _absgd_cfg(epochs=1)
    train(cfg, tmp_path / "run")
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(cfg, tmp_path / "run")
    other = _absgd_cfg(1, "optim.lr=0.01")
    with pytest.raises(ValueError, match="config differs"):
        train(other, tmp_path / "run", resume=True)


def test_global_generators_continue_exactly_after_a_checkpoint_round_trip(tmp_path):
    # Dropout and user code draw from the global generators: after a resume their next draws
    # must be those an uninterrupted run would take.
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's legacy state
    save_checkpoint(tmp_path / "ck.pt", {"rng": capture_rng()})

    def draws():
        return (
            [random.random() for _ in range(3)],
            np.random.standard_normal(3).tolist() + np.random.rand(2).tolist(),
            torch.rand(4).tolist(),
        )

    expected = draws()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restore_rng(load_checkpoint(tmp_path / "ck.pt")["rng"])
    assert draws() == expected


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


def _rows(dataset) -> set[bytes]:
    """The rows of a split as bytes: the synthetic images are unique, so a row names a sample."""
    return {row.tobytes() for row in dataset.x.reshape(len(dataset), -1)}


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
    assert len(data.val) == 20 and not _rows(data.train) & _rows(data.val)


def test_train_val_meta_and_test_are_disjoint_and_cover_the_long_tailed_selection():
    data = prepare_data(load_config(None, [*TINY, "data.meta_per_class=1"]).data)
    parts = {"train": data.train, "val": data.val, "meta": data.meta, "test": data.test}
    rows = {name: _rows(d) for name, d in parts.items()}
    assert all(len(rows[name]) == len(d) for name, d in parts.items())  # rows are unique
    names = list(rows)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not rows[a] & rows[b], (a, b)
    # the long-tailed selection 30, 18, 11, 7 of the generated training split
    source = load_source(
        "synthetic", None, num_classes=4, train_per_class=30, test_per_class=6, shape=[8, 8, 1]
    ).train
    selected = _rows(source) & (rows["train"] | rows["val"] | rows["meta"])
    assert len(selected) == len(rows["train"] | rows["val"] | rows["meta"]) == 66
    assert (
        data.val.class_counts().tolist() == [2] * 4 and data.meta.class_counts().tolist() == [1] * 4
    )


def test_label_noise_flips_the_documented_count_of_training_labels_only():
    clean = prepare_data(load_config(None, TINY).data)
    noisy = prepare_data(load_config(None, [*TINY, "data.noise_rate=0.4"]).data)
    # ⌊0.4 n_c⌋ of each long-tailed class (30, 18, 11, 7), before the validation split
    assert noisy.info["noisy_labels"] == 12 + 7 + 4 + 2
    np.testing.assert_array_equal(noisy.test.y, clean.test.y)
    np.testing.assert_array_equal(noisy.test.x, clean.test.x)
    labels = {}
    for d in (clean, noisy):
        for part in (d.train, d.val):
            for row, y in zip(part.x.reshape(len(part), -1), part.y, strict=True):
                labels.setdefault(row.tobytes(), []).append(int(y))
    assert len(labels) == 66
    assert sum(a != b for a, b in labels.values()) == 25
    cfg = load_config(
        None,
        [*TINY, "data.noise_rate=0.4", "data.noise_kind=asymmetric", "data.noise_mapping=groups"],
    )
    with pytest.raises(ValueError, match="noise_mapping=groups needs superclasses"):
        prepare_data(cfg.data)


THREE_CHANNELS = (
    "data.options={num_classes: 4, train_per_class: 30, test_per_class: 6, shape: [8, 8, 3]}"
)
OPTIONS = {
    # the control: what the other cases change must be absent here
    "defaults": [THREE_CHANNELS, "model.channels_last=false"],
    "bf16-autocast": ["train.precision=bf16"],
    "class-balanced-sampler": ["train.sampler=class_balanced"],
    "adam-clip-channels-last": [
        THREE_CHANNELS,
        "optim.name=adam",
        "optim.lr=0.001",
        "optim.grad_clip=0.05",
        "model.channels_last=true",
    ],
    "compile": ["train.compile=true", "model.name=mlp", "model.options={hidden: [8]}"],
}


def _layout_channels_last(t: torch.Tensor) -> bool:
    """Stored NHWC (and not also NCHW, as tensors with one channel are)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


@pytest.mark.parametrize("option", list(OPTIONS))
def test_training_options_do_what_they_say(tmp_path, monkeypatch, option):
    rec = _Recorder(monkeypatch)
    final = train(_absgd_cfg(2, *OPTIONS[option]), tmp_path / "run", reporter=rec)
    assert final["epochs"] == 2
    assert all(math.isfinite(r["train_loss"]) for r in _history(tmp_path / "run"))
    assert len(rec.steps) == 2 * TINY_STEPS_PER_EPOCH

    # bf16: the model runs under autocast, in training and in evaluation
    dtypes = {f["output_dtype"] for f in rec.forwards}
    assert dtypes == ({torch.bfloat16} if option == "bf16-autocast" else {torch.float32})
    assert {f["training"] for f in rec.forwards} == {True, False}

    # the class-balanced sampler: 2 epochs of 58 draws, each class with probability 1/4
    # (29 ± 4.7 each); without it every epoch is one pass: the training counts exactly
    drawn = sum(np.bincount(c["y"].numpy(), minlength=4) for c in rec.calls).tolist()
    if option == "class-balanced-sampler":
        assert all(15 <= n <= 43 for n in drawn), drawn
        assert drawn[3] > 2 * TINY_TRAIN_COUNTS[3]  # the rarest class is drawn more often
    else:
        assert drawn == [2 * n for n in TINY_TRAIN_COUNTS]

    # Adam with clipping: Adam's update, gradients clipped to norm 0.05 before every step
    if option == "adam-clip-channels-last":
        assert isinstance(rec.optimizer, ABAdam)
        _assert_first_steps_are_adam(rec, lr=0.001, betas=(0.9, 0.999), weight_decay=2e-4)
        assert len(rec.clip_norms) == len(rec.steps) and max(rec.clip_norms) > 0.05
        for before, step in zip(rec.clip_norms, rec.steps, strict=True):
            after = torch.cat([g.flatten() for g in step["grad"]]).norm().item()
            assert after == pytest.approx(min(before, 0.05), rel=1e-4)
    else:
        assert isinstance(rec.optimizer, ABSGD) and rec.clip_norms == []

    # channels-last: the inputs and the convolution weights are stored NHWC
    if option in ("defaults", "adam-clip-channels-last"):
        expected = option != "defaults"
        assert all(f["input_channels_last"] is expected for f in rec.forwards)
        convs = [p for p in rec.model.parameters() if p.dim() == 4]
        assert convs and all(_layout_channels_last(p) is expected for p in convs)

    # compile: the loop trains through torch.compile of the model
    assert rec.compiled == ([rec.model] if option == "compile" else [])


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


def test_meta_weight_net_trains_and_resumes_exactly(tmp_path, monkeypatch):
    cfg = _mwn_cfg()
    data = prepare_data(cfg.data)
    assert data.meta.class_counts().tolist() == [2, 2, 2, 2]
    rec = _Recorder(monkeypatch)
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    real_step = MetaWeightNet.step

    def step(self, x, y, x_meta, y_meta):
        loss = real_step(self, x, y, x_meta, y_meta)
        seen.append((rec.epoch, y.clone(), self.last_weights.double().clone()))
        return loss

    monkeypatch.setattr(MetaWeightNet, "step", step)
    train(cfg, tmp_path / "straight", data=data, reporter=rec)
    monkeypatch.undo()
    with pytest.raises(RunInterrupted):
        train(cfg, tmp_path / "resumed", data=data, stop_after_steps=3)
    train(cfg, tmp_path / "resumed", resume=True, data=data)
    assert _final_metrics(tmp_path / "resumed") == _final_metrics(tmp_path / "straight")
    a = torch.load(tmp_path / "straight/model.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The recorded diagnostics are those of the weights Meta-Weight-Net gave: per epoch, the
    # mean over batches of (Σw)² / (B Σw²), and per class the mean of B·w over its samples.
    history = _history(tmp_path / "straight")
    for epoch, record in enumerate(history):
        batches = [(y, w) for e, y, w in seen if e == epoch]
        assert len(batches) == math.ceil((58 - 8) / 16)  # the meta set left the training split
        ess = np.mean([float(w.sum() ** 2 / (len(w) * (w * w).sum())) for _, w in batches])
        assert ess < 1 - 1e-6  # the weights are not uniform
        assert record["effective_sample_size"] == pytest.approx(ess, rel=1e-9)
        sums, counts = np.zeros(4), np.zeros(4)
        for y, w in batches:
            np.add.at(sums, y.numpy(), (len(w) * w).numpy())
            np.add.at(counts, y.numpy(), 1)
        assert record["mean_weight_per_class"] == pytest.approx(sums / counts, rel=1e-9)


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
