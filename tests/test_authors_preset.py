"""The `authors` CIFAR-LT preset encodes the ABSGD authors' runs (their repository's train.py,
mylosses.py, myutils.py and README commands), checked against those facts written by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from absgd.cli import SHIPPED_CONFIGS
from absgd.training.build import build_lam_schedule, build_lr_schedule, build_objective_for
from absgd.training.config import load_config


def _cfg(setting: str, method: str):
    return load_config(SHIPPED_CONFIGS / f"cifar_lt/{setting}/authors/{method}.yaml")


def test_cifar10_authors_preset_has_their_schedule_batch_and_dropout():
    cfg = _cfg("cifar10_lt_exp100", "cb_drw_absgd")
    lr = build_lr_schedule(cfg.optim, cfg.train.epochs)
    # 5-epoch linear warm-up, x0.01 from 0-based epoch 159, nothing more at 180
    assert [lr(e) for e in (0, 4, 5, 158, 159, 180, 199)] == pytest.approx(
        [1 / 5, 5 / 5, 1, 1, 0.01, 0.01, 0.01], rel=1e-9
    )
    lam_at = build_lam_schedule(cfg.objective)
    assert math.isinf(lam_at(159)) and lam_at(160) == 5.0
    assert cfg.objective.class_weighting_options["switch"] == 160
    assert cfg.train.batch_size == 100 and cfg.model.options["dropout"] == 0.2
    assert cfg.train.test_every == 1 and cfg.train.select == "last"
    assert cfg.objective.weighting_options == {"gamma": 0.7, "alpha": 0.5, "init": "zero"}
    c100 = _cfg("cifar100_lt_step100", "ce_absgd")
    assert c100.objective.lam == 3.0 and c100.train.batch_size == 128
    assert c100.objective.weighting_options == {"gamma": 0.45, "alpha": 0.3, "init": "zero"}
    assert "dropout" not in c100.model.options


def test_authors_objective_is_the_raw_weighted_sum_with_u_starting_at_zero():
    cfg = _cfg("cifar10_lt_exp100", "cb_drw_absgd")
    counts = np.array([5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])
    objective = build_objective_for(cfg.objective, counts)
    objective.set_epoch(160)
    objective.weighting.lam = 5.0
    torch.manual_seed(0)
    logits = torch.randn(12, 10) * 2
    y = torch.tensor([0, 0, 1, 2, 3, 9, 9, 8, 0, 5, 4, 1])
    value = float(objective(logits, y))
    # by hand, float64: class-balanced weights (β = 0.9999, summing to C), v = c·l,
    # u = γ·α·mean exp(v/λ) (u_0 = 0), p = exp(v/λ)/(B·u), objective = Σ p·v (no division)
    beta = 0.9999
    c = (1 - beta) / (1 - beta ** counts.astype(np.float64))
    c = c / c.sum() * 10
    lg = logits.double().numpy()
    loss = -(lg[np.arange(12), y.numpy()] - np.log(np.exp(lg).sum(1)))
    v = c[y.numpy()] * loss
    e = np.exp(v / 5.0)
    u = 0.7 * 0.5 * e.mean()
    p = e / (12 * u)
    assert value == pytest.approx(float((p * v).sum()), rel=1e-4)
    assert p.sum() == pytest.approx(1 / (0.7 * 0.5))  # the first weights sum to 1/(γα)
