"""Streaming meters: equal to the pure functions on the concatenated data, no host sync per
update (checked on the meta device), errors deferred to compute(), all_reduce over 2 ranks."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from absgd import effective_sample_size
from absgd.metrics import (
    ClassWeightMeter,
    ConfusionMeter,
    EffectiveSampleSizeMeter,
    MeanMeter,
    evaluate,
    mean_weight_per_class,
)


def _batches(seed: int, c: int = 8, sizes=(16, 7, 1, 30)):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)) for n in sizes]


def test_confusion_meter_equals_evaluate_on_all_the_data() -> None:
    batches = _batches(0)
    meter = ConfusionMeter(8)
    for logits, y in batches:
        meter.update(logits, y)
    logits = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    counts = [900, 400, 150, 100, 60, 20, 10, 3]
    assert meter.compute(counts) == evaluate(logits, y, counts)
    assert meter.compute()["top5"] is not None
    np.testing.assert_array_equal(
        meter.confusion_matrix(), np.array(evaluate(logits, y)["confusion_matrix"])
    )
    out = meter.compute(counts, many=200, few=50, with_confusion_matrix=False)
    assert out == evaluate(logits, y, counts, many=200, few=50, with_confusion_matrix=False)


def test_meter_without_the_full_matrix_gives_the_same_metrics() -> None:
    batches = _batches(1)
    full, small = ConfusionMeter(8), ConfusionMeter(8, full_matrix=False)
    for logits, y in batches:
        full.update(logits, y)
        small.update(logits, y)
        small.update(logits.argmin(1), y)  # predictions too
        full.update(logits.argmin(1), y)
    counts = [900, 400, 150, 100, 60, 20, 10, 3]
    assert small.compute(counts) == full.compute(counts, with_confusion_matrix=False)
    assert small._state[0].numel() == 3 * 8 + 5
    with pytest.raises(ValueError, match="full_matrix=False"):
        small.confusion_matrix()
    with pytest.raises(ValueError, match="full_matrix=False"):
        small.compute(with_confusion_matrix=True)
    small.update(torch.tensor([0, 9]), torch.tensor([-2, 1]))
    with pytest.raises(ValueError, match=r"^2 labels or predictions outside"):
        small.compute()


def test_confusion_meter_predictions_ties_and_reset() -> None:
    meter = ConfusionMeter(6)
    meter.update(torch.zeros(3, 6), torch.tensor([0, 0, 5]))  # all tied: argmax = 0
    assert meter.compute()["top1"] == pytest.approx(2 / 3)
    assert meter.compute()["top5"] == pytest.approx(2 / 3)  # class 5 ranks last
    meter.update(np.array([1, 1]), np.array([1, 2]))  # predicted labels: top-5 unknown
    out = meter.compute()
    assert out["num_samples"] == 5 and out["top5"] is None
    meter.reset()
    with pytest.raises(ValueError, match="at least one sample"):
        meter.compute()
    meter.update(torch.tensor([[0.0, 1, 2, 3, 4, 5]]), torch.tensor([5]))
    assert meter.compute()["top1"] == 1.0


def test_confusion_meter_defers_value_errors_to_compute() -> None:
    meter = ConfusionMeter(3)
    meter.update(torch.tensor([0, 1, 7]), torch.tensor([0, -1, 2]))  # no error here
    with pytest.raises(ValueError, match=r"2 labels or predictions outside \[0, 3\)"):
        meter.compute()
    nan = ConfusionMeter(3)
    nan.update(torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([0]))
    with pytest.raises(ValueError, match="NaN in 1 rows"):
        nan.confusion_matrix()


def test_confusion_meter_shape_errors_are_immediate() -> None:
    meter = ConfusionMeter(3)
    with pytest.raises(ValueError, match=r"logits \(N, 3\)"):
        meter.update(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="differ in length: 2 != 1"):
        meter.update(torch.zeros(2, 3), torch.tensor([0]))
    with pytest.raises(TypeError, match="integer tensor"):
        meter.update(torch.zeros(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="integer tensor"):
        meter.update(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))


def test_updates_do_not_synchronise_with_the_host() -> None:
    # Tensors on the meta device have no data: .item(), .tolist(), bool(), nonzero() or a
    # bincount would raise, so an update that succeeds there never reads device values.
    meter = ConfusionMeter(10)
    small = ConfusionMeter(10, full_matrix=False)
    weights = ClassWeightMeter(10, relative=True)
    ess = EffectiveSampleSizeMeter()
    mean = MeanMeter()
    for _ in range(2):
        logits = torch.randn(16, 10, device="meta")
        y = torch.randint(0, 10, (16,), device="meta")
        meter.update(logits, y)
        meter.update(logits.argmax(1), y)
        small.update(logits, y)
        weights.update(torch.rand(16, device="meta"), y)
        ess.update(torch.rand(16, device="meta"))
        mean.update(torch.rand((), device="meta"))
    assert meter._state[0].device.type == "meta" and mean._state[0].device.type == "meta"
    assert weights._state[0].device.type == "meta" and ess._state[0].device.type == "meta"


def test_state_follows_the_device_and_inputs_move_to_it() -> None:
    meter = ConfusionMeter(3, device="cpu")
    meter.update(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.bfloat16), [0])
    assert meter.compute()["top1"] == 1.0


# -- ABSGD diagnostics ----------------------------------------------------------------------


def test_mean_weight_per_class() -> None:
    w = np.array([0.1, 0.2, 0.3, 0.4])
    got = mean_weight_per_class(torch.tensor(w), torch.tensor([2, 0, 2, 0]), 4)
    np.testing.assert_allclose(got[[0, 2]], [0.3, 0.2])
    assert math.isnan(got[1]) and math.isnan(got[3])
    with pytest.raises(ValueError, match="differ in length"):
        mean_weight_per_class(w, [0, 1], 4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        mean_weight_per_class(w, [0, 1, 2, 4], 4)


def test_class_weight_meter_accumulates_an_epoch() -> None:
    g = torch.Generator().manual_seed(3)
    batches = [(torch.rand(n, generator=g), torch.randint(0, 5, (n,), generator=g)) for n in (8, 3)]
    raw = ClassWeightMeter(6)
    rel = ClassWeightMeter(6, relative=True)
    for w, y in batches:
        raw.update(w, y)
        rel.update(w, y)
    w_all = torch.cat([b[0] for b in batches])
    y_all = torch.cat([b[1] for b in batches])
    np.testing.assert_allclose(raw.compute(), mean_weight_per_class(w_all, y_all, 6), rtol=1e-6)
    scaled = torch.cat([w * len(w) for w, _ in batches])  # B·p: 1 means uniform
    np.testing.assert_allclose(rel.compute(), mean_weight_per_class(scaled, y_all, 6), rtol=1e-6)
    assert math.isnan(raw.compute()[5])  # class 5 never seen
    raw.update(torch.ones(2), torch.tensor([0, 9]))
    with pytest.raises(ValueError, match=r"1 labels outside \[0, 6\)"):
        raw.compute()
    raw.reset()
    assert np.isnan(raw.compute()).all()
    assert np.isnan(ClassWeightMeter(2).compute()).all()


def _ess64(w: torch.Tensor) -> float:
    """(Σ p)² / (B Σ p²) in float64 numpy (0 for all-zero weights)."""
    q = w.double().numpy()
    return 0.0 if not q.any() else float(q.sum() ** 2 / (q.size * (q**2).sum()))


ESS_BATCHES = [
    torch.rand(4, generator=torch.Generator().manual_seed(1)),
    torch.rand(9, generator=torch.Generator().manual_seed(2)) * 1e-23,  # p² underflows float32
    torch.rand(5, generator=torch.Generator().manual_seed(3)) * 1e20,  # p² overflows float32
    torch.tensor([0.7]),
    torch.zeros(3),  # every weight underflowed: no sample carries the batch
]


def test_effective_sample_size_matches_a_float64_formula_at_any_scale() -> None:
    for w in ESS_BATCHES:
        assert effective_sample_size(w).item() == pytest.approx(_ess64(w), rel=1e-5, abs=1e-12)
    with pytest.raises(ValueError, match="empty"):
        effective_sample_size(torch.zeros(0))


def test_effective_sample_size_meter() -> None:
    meter = EffectiveSampleSizeMeter()
    assert math.isnan(meter.compute())
    for w in ESS_BATCHES:
        meter.update(w)
    expected = np.mean([_ess64(w) for w in ESS_BATCHES])
    assert meter.compute() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        meter.update(torch.zeros(0))


def test_mean_meter_is_the_mean_of_its_numbers() -> None:
    meter = MeanMeter()
    assert math.isnan(meter.compute())
    values = [0.5, 2.0, 7.25, 1e-3]
    for v in values:
        meter.update(torch.tensor(v, dtype=torch.float64))
    assert meter.compute() == pytest.approx(float(np.mean(values)), rel=1e-12)
    meter.update(np.float64(3.0))  # anything with one number
    assert meter.compute() == pytest.approx(float(np.mean([*values, 3.0])), rel=1e-12)
    with pytest.raises(ValueError, match="single number, got shape"):
        meter.update(torch.ones(2))


@pytest.mark.parametrize("kind", ["confusion", "small", "weights", "ess", "mean"])
def test_state_dict_resumes_exactly(kind: str, tmp_path) -> None:
    def make():
        return {
            "confusion": lambda: ConfusionMeter(8),
            "small": lambda: ConfusionMeter(8, full_matrix=False),
            "weights": lambda: ClassWeightMeter(8, relative=True),
            "ess": lambda: EffectiveSampleSizeMeter(),
            "mean": lambda: MeanMeter(),
        }[kind]()

    def feed(meter, logits, y):
        if kind in ("confusion", "small"):
            meter.update(logits, y)
        elif kind == "weights":
            meter.update(logits.softmax(1)[:, 0], y)
        elif kind == "mean":
            meter.update(logits.softmax(1)[:, 0].sum())
        else:
            meter.update(logits.softmax(1)[:, 0])

    batches = _batches(5, sizes=(6, 9, 4, 7))
    a, b = make(), make()
    b.load_state_dict(a.state_dict())  # nothing accumulated yet
    for logits, y in batches[:2]:
        feed(a, logits, y)
    torch.save(a.state_dict(), tmp_path / "meter.pt")
    b.load_state_dict(torch.load(tmp_path / "meter.pt", weights_only=True))
    for logits, y in batches[2:]:
        feed(a, logits, y)
        feed(b, logits, y)
    ra, rb = a.compute(), b.compute()
    if isinstance(ra, np.ndarray):
        np.testing.assert_array_equal(ra, rb)
    else:
        assert ra == rb


@pytest.mark.parametrize("kind", ["ess", "mean"])
def test_a_resumed_meter_equals_the_left_fold_of_its_batches_at_every_split(kind, tmp_path):
    # A float sum depends on its order. Both meters fold their batches in the order they were
    # added, as a Python loop would, so a meter saved after any batch and resumed ends on the
    # same bits as one that never stopped (the resumed-run test compares final.json exactly).
    g = torch.Generator().manual_seed(3)
    weights = [torch.rand(3 + n % 40, generator=g, dtype=torch.float64) ** 3 for n in range(200)]
    per_batch = [
        float(w.sum() ** 2 / (len(w) * (w * w).sum())) if kind == "ess" else float(w.sum())
        for w in weights
    ]
    expected = 0.0
    for value in per_batch:  # the reference: a left fold in float64
        expected += value
    expected /= len(per_batch)

    def make():
        return EffectiveSampleSizeMeter() if kind == "ess" else MeanMeter()

    def feed(meter, w):
        meter.update(w if kind == "ess" else w.sum())

    straight = make()
    for w in weights:
        feed(straight, w)
    assert straight.compute() == expected
    splits = {0, 1, 2, 7, 13, 64, 101, 150, len(weights) - 1, len(weights)}
    for split in sorted(splits):
        first = make()
        for w in weights[:split]:
            feed(first, w)
        torch.save(first.state_dict(), tmp_path / "meter.pt")
        resumed = make()
        resumed.load_state_dict(torch.load(tmp_path / "meter.pt", weights_only=True))
        for w in weights[split:]:
            feed(resumed, w)
        assert resumed.compute() == expected, split
        # saved twice without a batch between: the same state (a save folds nothing twice)
        again = make()
        again.load_state_dict(resumed.state_dict())
        again.load_state_dict(again.state_dict())
        assert again.compute() == expected, split


def test_mean_meter_keeps_the_value_it_was_given_not_the_callers_tensor() -> None:
    meter, value = MeanMeter(), torch.zeros((), dtype=torch.float64)
    for v in (1.0, 2.0, 3.0):
        value.fill_(v)  # one tensor, changed in place between updates
        meter.update(value)
    assert meter.compute() == 2.0


def test_mean_meter_loads_a_state_saved_in_the_two_part_form() -> None:
    # checkpoints written before the batches were folded in order keep [total, zeros]
    meter = MeanMeter()
    saved = [torch.tensor([7.5, 3.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    meter.load_state_dict({"state": saved})
    meter.update(torch.tensor(0.5, dtype=torch.float64))
    assert meter.compute() == 2.0


def test_load_state_dict_checks_the_options() -> None:
    meter = ConfusionMeter(4)
    meter.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes=4 into one with num_classes=5"):
        ConfusionMeter(5).load_state_dict(meter.state_dict())
    with pytest.raises(ValueError, match="full_matrix"):
        ConfusionMeter(4, full_matrix=False).load_state_dict(meter.state_dict())
    with pytest.raises(ValueError, match="relative"):
        ClassWeightMeter(4).load_state_dict(ClassWeightMeter(4, relative=True).state_dict())
    bad = meter.state_dict()
    bad["state"] = [torch.zeros(3, dtype=torch.int64)]
    with pytest.raises(ValueError, match="shapes"):
        ConfusionMeter(4).load_state_dict(bad)


def test_all_reduce_needs_a_device_or_an_update() -> None:
    with pytest.raises(ValueError, match="call update"):
        ConfusionMeter(3).all_reduce()


# -- two processes --------------------------------------------------------------------------

WORLD = 2


def _worker(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        batches = _batches(7, sizes=(10, 6, 9, 5))
        mine = batches[rank::WORLD]
        meter, weights, ess = ConfusionMeter(8), ClassWeightMeter(8), EffectiveSampleSizeMeter()
        small = ConfusionMeter(8, full_matrix=False)
        mean = MeanMeter()
        for logits, y in mine:
            meter.update(logits, y)
            small.update(logits, y)
            p = logits.softmax(1)[:, 0]
            weights.update(p, y)
            ess.update(p)
            mean.update(p.sum())
        for m in (meter, small, weights, ess, mean):
            m.all_reduce()
        logits = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        assert meter.compute() == evaluate(logits, y)
        assert small.compute() == evaluate(logits, y, with_confusion_matrix=False)
        p_all = logits.softmax(1)[:, 0]
        np.testing.assert_allclose(weights.compute(), mean_weight_per_class(p_all, y, 8))
        # step k's global batch is every rank's k-th batch: here batches 2k and 2k + 1
        steps = [torch.cat([batches[2 * k][0], batches[2 * k + 1][0]]) for k in range(2)]
        global_ess = []
        for step in steps:
            q = step.softmax(1)[:, 0].double().numpy()
            global_ess.append(q.sum() ** 2 / (q.size * (q**2).sum()))
        assert ess.compute() == pytest.approx(np.mean(global_ess), rel=1e-6)
        sums = [b[0].softmax(1)[:, 0].double().sum().item() for b in batches]
        assert mean.compute() == pytest.approx(np.mean(sums), rel=1e-6)  # over every rank
        # a global step needs one batch per rank: unequal counts are refused on every rank
        uneven = MeanMeter()
        for _ in range(rank + 1):
            uneven.update(torch.tensor(9.0))
        with pytest.raises(ValueError, match="added 1 to 2 batches since the last all_reduce"):
            uneven.all_reduce()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    os._exit(0)  # as in tests/test_distributed.py: gloo may abort at interpreter exit


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_all_reduce_over_two_ranks_equals_one_process(tmp_path) -> None:
    mp.spawn(_worker, args=(os.fspath(tmp_path / "rendezvous"),), nprocs=WORLD, join=True)


def test_epoch_meters_load_a_checkpoint_saved_before_the_step_scale() -> None:
    from absgd.training.meters import EpochMeters

    cpu = torch.device("cpu")
    saved = EpochMeters(3, cpu)
    saved.update(torch.tensor(2.0), torch.tensor([0, 1]), torch.tensor([0.25, 0.75]))
    old = saved.state_dict()
    del old["step_scale"]  # what a mid-epoch checkpoint of an earlier version holds
    meters = EpochMeters(3, cpu)
    meters.load_state_dict(old)
    meters.update(torch.tensor(1.0), torch.tensor([2]), torch.tensor([1.0]), torch.tensor(1.5))
    summary = meters.summary()
    assert summary["train_loss"] == pytest.approx((2.0 * 2 + 1.0) / 3)
    assert summary["step_scale"] == pytest.approx(1.5)  # the steps it saw since the resume
