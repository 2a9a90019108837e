"""λ and learning-rate schedules."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from absgd.schedules import (
    Anneal,
    Constant,
    Piecewise,
    WarmupCosineLR,
    WarmupStepLR,
    two_stage,
)


def test_two_stage_switches_exactly_at_the_boundary():
    s = two_stage(5.0, switch=160)
    assert [s(t) for t in (0, 159, 159.99, 160, 199)] == [math.inf] * 3 + [5.0, 5.0]


def test_piecewise_several_steps_and_negative_values():
    s = Piecewise(boundaries=(2, 4), values=(math.inf, 3.0, -1.0))
    assert [s(t) for t in range(6)] == [math.inf, math.inf, 3.0, 3.0, -1.0, -1.0]


def test_linear_and_cosine_anneal_against_hand_values():
    lin = Anneal(start=4.0, end=1.0, begin=10, stop=40)
    assert [lin(t) for t in (0, 10, 20, 40, 50)] == pytest.approx([4.0, 4.0, 3.0, 1.0, 1.0])
    cos = Anneal(start=4.0, end=1.0, begin=0, stop=30, kind="cosine")
    # frac = (1 - cos(π/3)) / 2 = 0.25 at t = 10
    assert cos(10) == pytest.approx(4.0 - 0.25 * 3.0)
    assert cos(15) == pytest.approx(2.5)


def test_anneal_in_inverse_space_from_plain_sgd_and_across_signs():
    s = Anneal(start=math.inf, end=0.5, begin=0, stop=4, space="inverse")
    # 1/λ goes 0 -> 2 linearly: 1/λ(1) = 0.5
    assert [s(t) for t in (0, 1, 4)] == pytest.approx([math.inf, 2.0, 0.5])
    cross = Anneal(start=1.0, end=-1.0, begin=0, stop=2, space="inverse")
    assert cross(1) == math.inf and cross(2) == -1.0


def test_cifar_lt_learning_rate_protocol():
    s = WarmupStepLR(warmup=5, milestones=(160, 180), factors=(0.01, 1e-4))
    assert [s(t) for t in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert s(159) == 1.0 and s(160) == 0.01 and s(180) == 1e-4 and s(199) == 1e-4


def test_cosine_learning_rate_with_warmup():
    s = WarmupCosineLR(total=12, warmup=2, final=0.1)
    assert s(0) == pytest.approx(0.5) and s(2) == pytest.approx(1.0)
    assert s(7) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(12) == pytest.approx(0.1) and s(100) == pytest.approx(0.1)


def test_schedules_drive_lambda_lr_and_survive_its_state_dict():
    param = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, WarmupStepLR(warmup=2, milestones=(3,), factors=(0.1,))
    )
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.01, 0.01])
    state = sched.state_dict()
    opt2 = torch.optim.SGD([param], lr=0.1)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, WarmupStepLR())
    sched2.load_state_dict(state)
    assert sched2.lr_lambdas[0] == WarmupStepLR(warmup=2, milestones=(3,), factors=(0.1,))


def test_schedules_are_frozen_picklable_and_comparable():
    s = Piecewise(boundaries=(1,), values=(math.inf, 2.0))
    assert pickle.loads(pickle.dumps(s)) == s
    with pytest.raises(AttributeError):
        s.values = (1.0, 2.0)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Constant(0.0), "lam must be a non-zero"),
        (lambda: Piecewise(boundaries=(1, 2), values=(1.0, 2.0)), "len\\(values\\)"),
        (lambda: Piecewise(boundaries=(3, 2), values=(1.0, 2.0, 3.0)), "strictly increasing"),
        (lambda: Piecewise(boundaries=(1,), values=(1.0, float("nan"))), "lam"),
        (lambda: Anneal(start=math.inf, end=1.0, begin=0, stop=5), "space='inverse'"),
        (lambda: Anneal(start=1.0, end=-1.0, begin=0, stop=5), "same sign"),
        (lambda: Anneal(start=1.0, end=2.0, begin=5, stop=5), "begin < stop"),
        (lambda: Anneal(start=1.0, end=2.0, begin=0, stop=5, kind="exp"), "kind"),
        (lambda: WarmupStepLR(milestones=(1, 2), factors=(0.1,)), "one factor per milestone"),
        (lambda: WarmupStepLR(milestones=(1,), factors=(-0.1,)), "factors"),
        (lambda: WarmupCosineLR(total=5, warmup=5), "warmup < total"),
        (lambda: WarmupCosineLR(total=5, final=2.0), "final"),
    ],
)
def test_bad_schedule_arguments_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_negative_or_nan_counter_is_refused():
    with pytest.raises(ValueError, match="t must be a number >= 0"):
        Constant(1.0)(-1)
    with pytest.raises(ValueError, match="t must be"):
        WarmupStepLR()(float("nan"))
