"""``absgd sharpness``: batch ESS against the float64 reference, solved λ, the exponent inputs of
a run directory against an independent recomputation, and the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from absgd.cli import main
from absgd.temperature import ess_at
from absgd.training import train
from absgd.training.build import build_model_for, prepare_data
from absgd.training.checkpoint import load_checkpoint
from absgd.training.config import load_config
from absgd.training.sharpness import (
    batch_ess,
    batch_step_scale,
    exponent_inputs,
    random_batches,
    sharpness,
    solved_lams,
)

COUNTS_OPTIONS = "{num_classes: 3, train_per_class: 40, test_per_class: 4}"


def _tiny(extra: list[str]) -> list[str]:
    return [
        "data.name=synthetic",
        f"data.options={COUNTS_OPTIONS}",
        "data.imbalance_ratio=8",
        "data.val_per_class=2",
        "data.val_fraction=null",
        "data.augment=none",
        "model.name=mlp",
        "model.options={hidden: [16]}",
        "train.batch_size=8",
        "train.epochs=3",
        "train.device=cpu",
        "optim.warmup_epochs=0",
        "optim.schedule=constant",
        *extra,
    ]


_DRW = [
    "objective.class_weighting=drw",
    "objective.class_weighting_options={switch: 2}",
    "objective.weighting=absgd",
    "objective.lam=1.0",
    "objective.lam_switch=2",
]


@pytest.fixture(scope="module")
def drw_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharpness") / "run"
    train(load_config(None, _tiny(_DRW)), out)
    return out


def test_batch_ess_is_the_reference_ess_of_each_batch():
    values = torch.tensor([0.1, 0.4, 2.0, 3.5, 0.05, 0.7, 1.2, 0.0])
    rows = random_batches(8, 5, 6, seed=3)
    for lam in (0.3, 1.0, 10.0, -2.0):
        expected = [ess_at(values[row], lam) for row in rows]
        assert batch_ess(values, lam, rows).tolist() == pytest.approx(expected, rel=1e-12)
    # hand case: two of four samples at 1, two at 0, λ → 0: the two at the top share the weight
    hand = batch_ess(torch.tensor([0.0, 0.0, 1.0, 1.0]), 1e-3, torch.tensor([[0, 1, 2, 3]]))
    assert float(hand) == pytest.approx(0.5)
    # λ < 0 puts the weight on the low losses: the two at 0 share it
    low = batch_ess(torch.tensor([0.0, 0.0, 1.0, 1.0]), -1e-3, torch.tensor([[3, 0, 2, 1]]))
    assert float(low) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="λ must be non-zero, got 0"):
        batch_ess(values, 0.0, rows)


def test_batch_step_scale_by_hand():
    # λ → 0 puts the weight on the two samples of class weight 4 (the largest v)
    values = torch.tensor([0.0, 0.0, 1.0, 1.0])
    c = torch.tensor([1.0, 1.0, 4.0, 4.0])
    row = torch.tensor([[0, 1, 2, 3]])
    by_mean = batch_step_scale(values, 1e-3, row, c, True, alpha=0.5)
    assert float(by_mean) == pytest.approx(4 / 2.5 / 0.5)  # (Σ w c / Σ w) / mean c / α
    assert float(batch_step_scale(values, 1e-3, row, c, False, alpha=0.5)) == pytest.approx(8.0)
    assert float(batch_step_scale(values, 1e-3, row, c, "weighted", alpha=0.5)) == 2.0
    assert float(batch_step_scale(values, 1e-3, row, None, True, alpha=0.25)) == 4.0
    # u/B on every sample adds u times the batch's mean class weight: (2 · 4 + 1 · 2.5) / 2.5
    with_u = batch_step_scale(values, 1e-3, row, c, True, alpha=0.5, uniform=1.0)
    assert float(with_u) == pytest.approx((2 * 4 + 2.5) / 2.5)
    assert float(batch_step_scale(values, 1e-3, row, c, "weighted", 0.5, 1.0)) == 3.0
    # λ → ∞: uniform weights, the base's step under the batch mean
    assert float(batch_step_scale(values, 1e9, row, c, True)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="λ must be non-zero, got 0"):
        batch_step_scale(values, 0.0, row, c)


def test_the_report_step_scale_is_the_class_weighted_reference(drw_run):
    inputs = exponent_inputs(drw_run, mode="eval")  # the training split in order
    cfg = load_config(drw_run / "config.yaml")
    y = torch.as_tensor(prepare_data(cfg.data).train.y).long()
    counts = np.bincount(y.numpy(), minlength=3)
    raw = np.array([(1 - 0.9999) / (1 - 0.9999**n) for n in counts])
    c = torch.as_tensor(raw / raw.sum() * 3)[y]  # class-balanced, summing to 3, by hand
    assert inputs.class_weights is not None and inputs.normalize is True
    np.testing.assert_allclose(inputs.class_weights.double().numpy(), c.numpy(), rtol=1e-6)
    report = sharpness(inputs, lams=[0.5, 1e6], targets=[], batches=50)
    rows = random_batches(inputs.values.numel(), 8, 50, seed=0)
    v = inputs.values.double().numpy()
    expected = []
    for row in rows.numpy():
        w = np.exp((v[row] - v[row].max()) / 0.5)
        expected.append((w * c.numpy()[row]).sum() / w.sum() / c.numpy()[row].mean())
    assert report["lams"][0]["step_scale"] == pytest.approx(float(np.mean(expected)), rel=1e-9)
    assert report["lams"][1]["step_scale"] == pytest.approx(1.0, rel=1e-5)  # nearly uniform


def test_random_batches_draw_without_replacement_and_repeat_with_the_seed():
    rows = random_batches(10, 4, 50, seed=1)
    assert rows.shape == (50, 4)
    assert all(len(set(row.tolist())) == 4 for row in rows)
    assert int(rows.min()) >= 0 and int(rows.max()) <= 9
    assert len({i for row in rows.tolist() for i in row}) == 10  # every sample appears
    assert torch.equal(rows, random_batches(10, 4, 50, seed=1))
    assert not torch.equal(rows, random_batches(10, 4, 50, seed=2))
    with pytest.raises(ValueError, match="batch size 11 must be between 1 and the 10 samples"):
        random_batches(10, 11, 1)
    with pytest.raises(ValueError, match="batches must be a positive integer, got 0"):
        random_batches(10, 4, 0)


def test_solved_lams_reach_the_target_in_every_batch():
    gen = torch.Generator().manual_seed(0)
    values = torch.rand(200, generator=gen) ** 3 * 5.0
    rows = random_batches(200, 32, 20, seed=0)
    for target in (0.9, 0.5, 0.2):
        lams = solved_lams(values, target, rows)
        reached = [ess_at(values[row], float(lam)) for row, lam in zip(rows, lams, strict=True)]
        assert reached == pytest.approx([target] * len(rows), abs=2e-3)
    # λ < 0 (label noise): the weights exp(-v/|λ|) reach the target at the solved |λ|
    lams = solved_lams(values, 0.5, rows, -1.0)
    reached = [ess_at(values[row], -float(lam)) for row, lam in zip(rows, lams, strict=True)]
    assert reached == pytest.approx([0.5] * len(rows), abs=2e-3)
    # a batch of equal losses carries no scale: λ = ∞
    assert torch.isinf(solved_lams(torch.ones(8), 0.5, torch.arange(8)[None])).all()
    with pytest.raises(ValueError, match="target_ess must be a number in"):
        solved_lams(values, 1.5, rows)


def _reference_values(run, *, class_weights: bool) -> np.ndarray:
    """c_y · CE of every training sample under the checkpoint's model in evaluation mode, with
    the class-balanced weights (β = 0.9999, summing to the number of classes) by hand."""
    cfg = load_config(run / "config.yaml")
    data = prepare_data(cfg.data)
    model = build_model_for(cfg, data)
    model.load_state_dict(load_checkpoint(run)["model"])
    model.eval()
    # uint8 NHWC images → NCHW floats, standardised with the split's channel statistics
    norm = data.eval_augment
    x = torch.as_tensor(data.train.x, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    x = (x - torch.tensor(norm.mean)[:, None, None]) / torch.tensor(norm.std)[:, None, None]
    y = torch.as_tensor(data.train.y).long()
    with torch.no_grad():
        losses = F.cross_entropy(model(x), y, reduction="none").double()
    if class_weights:
        counts = np.bincount(y.numpy(), minlength=3)
        raw = np.array([(1 - 0.9999) / (1 - 0.9999**n) for n in counts])
        c = raw / raw.sum() * 3
        losses = losses * torch.as_tensor(c)[y]
    return np.sort(losses.numpy())


def test_exponent_inputs_match_an_independent_recomputation(drw_run):
    state = load_checkpoint(drw_run)
    assert state["epoch"] == 3
    # by default the class weights of the λ switch (DRW on): c_y · l inside the exponent
    at_switch = exponent_inputs(drw_run, mode="eval")
    assert at_switch.epoch == 2 and at_switch.checkpoint_epoch == 3
    assert at_switch.batch_size == 8 and at_switch.sign == 1.0
    expected = _reference_values(drw_run, class_weights=True)
    assert np.sort(at_switch.values.double().numpy()) == pytest.approx(expected, rel=1e-5)
    # before DRW's switch there are no class weights: the plain loss
    before = exponent_inputs(drw_run, mode="eval", epoch=1)
    plain = _reference_values(drw_run, class_weights=False)
    assert np.sort(before.values.double().numpy()) == pytest.approx(plain, rel=1e-5)
    assert not np.allclose(expected, plain)  # the class weights changed the values
    # train mode draws the same samples, each once (shuffled; no augmentation here)
    shuffled = exponent_inputs(drw_run)
    assert np.sort(shuffled.values.double().numpy()) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="mode must be one of"):
        exponent_inputs(drw_run, mode="test")


def test_outside_placement_and_a_negative_lam_change_the_inputs(tmp_path):
    run = tmp_path / "outside"
    extra = [o for o in _DRW if not o.startswith("objective.lam=")]
    train(
        load_config(None, _tiny([*extra, "objective.lam=-1.0", "objective.placement=outside"])), run
    )
    inputs = exponent_inputs(run, mode="eval")
    assert inputs.sign == -1.0
    plain = _reference_values(run, class_weights=False)
    assert np.sort(inputs.values.double().numpy()) == pytest.approx(plain, rel=1e-5)
    report = sharpness(inputs, targets=[0.5], batches=20)
    assert report["targets"][0]["lam"] < 0  # the λ carries the run's sign


def test_the_report_lams_reach_their_targets(drw_run):
    inputs = exponent_inputs(drw_run)
    report = sharpness(inputs, lams=[0.5, 2.0], targets=[0.9, 0.5], batches=100)
    assert report["samples"] == inputs.values.numel()
    assert report["mean"] == pytest.approx(float(inputs.values.double().mean()))
    rows = random_batches(inputs.values.numel(), 8, 100, seed=0)
    for row in report["lams"]:
        ess = batch_ess(inputs.values, row["lam"], rows)
        assert row["ess"] == pytest.approx(float(ess.mean()))
        assert row["q10"] <= row["ess"] <= row["q90"] or row["q10"] == row["q90"]
    sharper = {r["lam"]: r["ess"] for r in report["lams"]}
    assert sharper[0.5] < sharper[2.0]  # a smaller λ concentrates the weights
    for row in report["targets"]:
        # ESS falls as λ shrinks, so at the median batch's λ about half of the same batches
        # reach the target (those whose own λ is at most the median)
        ess = batch_ess(inputs.values, row["lam"], rows)
        reached = float((ess >= row["target_ess"] - 2e-3).double().mean())
        assert 0.45 <= reached <= 0.65
        assert row["q10"] <= row["lam"] <= row["q90"]
    by_target = {r["target_ess"]: r["lam"] for r in report["targets"]}
    assert by_target[0.5] < by_target[0.9]
    with pytest.raises(ValueError, match=r"λ values must be non-zero and finite, got \[inf\]"):
        sharpness(inputs, lams=[math.inf])


def test_the_command_prints_tables_and_json(drw_run, capsys):
    assert (
        main(["sharpness", str(drw_run), "--lams", "1", "--targets", "0.7", "--batches", "30"]) == 0
    )
    text = capsys.readouterr().out
    assert "the model after 3 epochs, the class weights of 0-based epoch 2" in text
    assert "batches of 8" in text and "target ESS" in text
    assert main(["sharpness", str(drw_run), "--targets", "1", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["targets"][0] == {
        "target_ess": 1.0,
        "lam": "inf",
        "q10": "inf",
        "q90": "inf",
        "reachable": True,
    }
    assert report["targets"][1]["lam"] > 0 and report["epoch"] == 2 and report["sign"] == 1.0
    # --negative: λ < 0, every λ of the row carries the sign
    assert main(["sharpness", str(drw_run), "--targets", "1", "0.5", "--negative", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sign"] == -1.0 and report["targets"][0]["lam"] == "-inf"
    row = report["targets"][1]
    assert row["lam"] < 0 and row["q90"] <= row["lam"] <= row["q10"] < 0
    # a target below 1/B cannot be reached: the row says so
    assert main(["sharpness", str(drw_run), "--targets", "0.05", "--batches", "5"]) == 0
    assert "(below 1/B: not reachable)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lams", "0"], "--lams must be non-zero and finite, got [0.0]"),
        (["--targets", "1.5"], "--targets must lie in (0, 1], got [1.5]"),
        (["--batches", "0"], "--batches must be a positive integer, got 0"),
        (["--epoch", "-1"], "--epoch must be >= 0 (0-based), got -1"),
    ],
)
def test_bad_arguments_are_usage_errors(drw_run, capsys, extra, message):
    assert main(["sharpness", str(drw_run), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_without_a_run_is_a_failure_that_says_so(tmp_path, capsys):
    assert main(["sharpness", str(tmp_path)]) == 1
    assert "has no config.yaml: give a run directory" in capsys.readouterr().err
    assert main(["sharpness", str(tmp_path / "nowhere")]) == 1
    assert "nowhere does not exist: give a run directory" in capsys.readouterr().err


def test_a_base_run_takes_its_checkpoint_epoch_and_overrides(tmp_path, capsys):
    # the base of an ABSGD + DRW config: no λ switch, so the class weights are those of the
    # epoch the checkpoint trains next (3, after DRW's switch at 2)
    run = tmp_path / "base"
    base = ["objective.class_weighting=drw", "objective.class_weighting_options={switch: 2}"]
    train(load_config(None, _tiny(base)), run)
    inputs = exponent_inputs(run, mode="eval")
    assert inputs.epoch == 3 and inputs.sign == 1.0
    weighted = _reference_values(run, class_weights=True)
    assert np.sort(inputs.values.double().numpy()) == pytest.approx(weighted, rel=1e-5)
    # the ABSGD config puts the class weight outside the exponent: say so with --set
    outside = exponent_inputs(run, mode="eval", overrides=["objective.placement=outside"])
    plain = _reference_values(run, class_weights=False)
    assert np.sort(outside.values.double().numpy()) == pytest.approx(plain, rel=1e-5)
    assert exponent_inputs(run, mode="eval", sign=-1.0).sign == -1.0
    assert main(["sharpness", str(run), "--set", "objective.placment=outside"]) == 2
    assert "objective.placment" in capsys.readouterr().err


def test_train_mode_repeats_exactly_and_leaves_the_global_generator_alone(tmp_path):
    run = tmp_path / "dropout"
    train(load_config(None, _tiny([*_DRW, "model.options={hidden: [16], dropout: 0.5}"])), run)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = exponent_inputs(run)
    assert torch.equal(torch.get_rng_state(), before)
    second = exponent_inputs(run)
    assert torch.equal(first.values, second.values)
    # dropout is on in train mode: the sorted losses differ from evaluation's
    evaluated = exponent_inputs(run, mode="eval")
    assert not np.allclose(
        np.sort(first.values.numpy()), np.sort(evaluated.values.numpy()), rtol=1e-3
    )
