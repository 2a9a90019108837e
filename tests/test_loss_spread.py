"""benchmarks/loss_spread.py: batch ESS against the float64 reference, thinning, a tiny run."""

from __future__ import annotations

import contextlib
import io
import math
import sys
from pathlib import Path

import pytest
import torch

from absgd.temperature import ess_at
from absgd.training import train
from absgd.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from loss_spread import batch_ess, main, thin_misclassified, training_losses  # noqa: E402


def test_one_batch_of_every_sample_is_the_reference_ess():
    losses = torch.tensor([0.1, 0.4, 2.0, 3.5, 0.05, 0.7])
    for lam in (0.3, 1.0, 10.0):
        # a batch of all six samples in any order has the ESS of the whole set
        assert batch_ess(losses, lam, 6, 3, seed=1) == pytest.approx(ess_at(losses, lam))
    # hand case: two of four samples at loss 1, two at 0, λ → 0: two samples share the weight
    assert batch_ess(torch.tensor([0.0, 0.0, 1.0, 1.0]), 1e-3, 4, 1, 0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="batch size 7 must be between 1 and the 6 samples"):
        batch_ess(losses, 1.0, 7, 1, 0)


def test_batches_smaller_than_the_set_average_the_batch_ess():
    # one sample at loss 5 among 99 at 0, batches of 10, λ = 0.5: a batch holding the outlier
    # has ESS ≈ 1/10, one without it 1; about 10 % of batches hold it
    losses = torch.zeros(100)
    losses[0] = 5.0
    value = batch_ess(losses, 0.5, 10, 4000, seed=0)
    w = math.exp(10.0)
    with_outlier = (w + 9) ** 2 / (10 * (w * w + 9))
    assert value == pytest.approx(0.1 * with_outlier + 0.9, abs=0.02)


def test_thinning_keeps_every_correct_sample_and_a_share_of_the_wrong_ones():
    wrong = torch.tensor([True, True, True, True, True, False, False])
    kept = thin_misclassified(wrong, 4, seed=0)
    assert {5, 6} <= set(kept.tolist()) and len(kept) == 2 + 2  # ceil(5 / 4) = 2 wrong kept
    assert thin_misclassified(wrong, 1, seed=0).tolist() == list(range(7))
    with pytest.raises(ValueError, match="--thin must be a positive integer, got 0"):
        thin_misclassified(wrong, 0, seed=0)


def _tiny_run(run: Path, model_options: str = "{hidden: [16]}") -> None:
    cfg = load_config(
        None,
        [
            "data.name=synthetic",
            "data.options={num_classes: 3, train_per_class: 20, test_per_class: 4, "
            "shape: [8, 8, 1]}",
            "data.val_per_class=2",
            "data.val_fraction=null",
            "data.augment=none",
            "model.name=mlp",
            f"model.options={model_options}",
            "train.batch_size=8",
            "train.epochs=1",
            "train.device=cpu",
            "optim.warmup_epochs=0",
            "optim.schedule=constant",
        ],
    )
    train(cfg, run)


def test_train_mode_losses_repeat_and_leave_the_global_generator_alone(tmp_path):
    _tiny_run(tmp_path / "run", "{hidden: [16], dropout: 0.5}")
    torch.manual_seed(7)
    before = torch.get_rng_state()
    first, _, _, _ = training_losses(tmp_path / "run", "train")
    assert torch.equal(torch.get_rng_state(), before)
    second, _, _, _ = training_losses(tmp_path / "run", "train")
    assert torch.equal(first, second)
    # dropout is on in train mode, so the losses differ from evaluation's
    evaluated, _, _, _ = training_losses(tmp_path / "run", "eval")
    assert not torch.allclose(torch.sort(first).values, torch.sort(evaluated).values, rtol=1e-3)


def test_the_script_reads_a_run_directory(tmp_path):
    _tiny_run(tmp_path / "run")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(tmp_path / "run"), "--lams", "1", "3", "--thin", "2"]) == 0
    text = out.getvalue()
    assert "(checkpoint of epoch 1, train mode), batch size 8" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 4  # header, every sample, thinned, thinned at the scaled λ
    assert rows[1].startswith("| every sample | 54 |")  # 3 classes × 20 minus 2 × 3 validation
    # nothing left out (--thin 1): the thinned rows are the full set, at λ × 1
    with contextlib.redirect_stdout(io.StringIO()) as same:
        assert main([str(tmp_path / "run"), "--lams", "1", "3", "--thin", "1"]) == 0
    rows = [line.split(" | ") for line in same.getvalue().splitlines() if line.startswith("| ")]
    assert rows[1][-2:] == rows[2][-2:] == rows[3][-2:]  # ESS at λ = 1 and 3, three rows
    assert "λ × 1.000" in rows[3][0]
    with contextlib.redirect_stdout(io.StringIO()) as evaluated:
        assert main([str(tmp_path / "run"), "--mode", "eval"]) == 0
    assert "eval mode" in evaluated.getvalue()
    for bad in (["--lams", "0"], ["--thin", "0"], ["--mode", "test"]):
        with pytest.raises(SystemExit):
            main([str(tmp_path / "run"), *bad])
    with pytest.raises(SystemExit):
        main([str(tmp_path)])  # no config.yaml
