"""ScheduledObjective (the loss of the trainer integrations) against ABLoss and by hand."""

import math

import pytest
import torch
from torch import nn

from absgd import ABLoss
from absgd.class_weights import DRW
from absgd.integrations import ScheduledObjective


def _batch(seed=0, n=16, k=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g), torch.randint(0, k, (n,), generator=g)


def test_equals_abloss_batch_after_batch():
    objective = ScheduledObjective(lam=0.7)
    reference = ABLoss(nn.CrossEntropyLoss(reduction="none"), lam=0.7)
    for seed in range(4):  # the moving average carries over identically
        logits, y = _batch(seed)
        assert float(objective(logits, y)) == pytest.approx(float(reference(logits, y)), rel=1e-6)


def test_class_weights_inside_and_raw_equal_abloss_on_a_weighted_criterion():
    weights = [1.0, 2.0, 0.5, 3.0]
    objective = ScheduledObjective(lam=2.0, class_weights=weights, normalize_class_weights=False)
    criterion = nn.CrossEntropyLoss(weight=torch.tensor(weights), reduction="none")
    reference = ABLoss(criterion, lam=2.0)
    logits, y = _batch(1)
    assert float(objective(logits, y)) == pytest.approx(float(reference(logits, y)), rel=1e-6)


def test_weighted_class_weight_norm_divides_by_the_weights_mean_class_weight():
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])
    objective = ScheduledObjective(
        lam=2.0, class_weights=weights.tolist(), normalize_class_weights="weighted"
    )
    raw = ScheduledObjective(lam=2.0, class_weights=weights.tolist(), normalize_class_weights=False)
    logits, y = _batch(2)
    total, reference = objective(logits, y), raw(logits, y)
    p, c = raw.weighting.last_weights.double(), weights[y].double()
    expected = float(reference) * float(p.sum() / (p * c).sum())
    assert float(total) == pytest.approx(expected, rel=1e-6)


def test_the_schedule_sets_lam_and_drw_by_epoch():
    objective = ScheduledObjective(lam=0.5, switch_epoch=2, class_weights=DRW((1.0, 3.0), 1))
    assert [objective.set_epoch(e) for e in range(4)] == [math.inf, math.inf, 0.5, 0.5]
    objective.set_epoch(0)
    assert objective.objective.class_weight is None
    objective.set_epoch(1)
    assert objective.objective.class_weight.tolist() == [1.0, 3.0]


def test_eval_mode_is_the_plain_mean_and_leaves_the_state_alone():
    objective = ScheduledObjective(lam=0.5)
    logits, y = _batch(2)
    objective(logits, y)
    before = {k: v.clone() for k, v in objective.state_dict().items()}
    objective.eval()
    plain = nn.functional.cross_entropy(logits, y)
    assert float(objective(logits, y)) == pytest.approx(float(plain), rel=1e-6)
    after = objective.state_dict()
    for key, value in before.items():  # NaN marks "not set yet"; it must stay NaN
        assert torch.allclose(value.double(), after[key].double(), rtol=0, atol=0, equal_nan=True)


def test_metrics_are_the_lam_in_force_and_the_batch_ess():
    objective = ScheduledObjective(lam=0.5)
    assert objective.metrics() == {"absgd_lam": 0.5, "absgd_ess": 1.0}
    logits, y = _batch(3)
    objective(logits, y)
    p = objective.weighting.last_weights
    assert objective.metrics()["absgd_ess"] == pytest.approx(
        float(p.sum() ** 2 / (16 * (p**2).sum()))
    )
