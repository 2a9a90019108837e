"""The confident guard (absgd.selection.paired_drop, combine_drops, within_bound): hand cases,
the scores it must agree with, its standard error against the spread of fresh validation
samples, and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from absgd.metrics import prior_accuracy
from absgd.selection import (
    PairedDrop,
    combine_drops,
    last_allowed,
    not_below_first,
    paired_drop,
    within_bound,
)


def per_class_accuracy(labels, predicted, classes):
    return np.array([np.mean(predicted[labels == c] == c) for c in range(classes)])


def test_a_hand_case():
    # class 0: the reference right twice, the candidate once: d = (0, 1), mean 0.5, var 0.5
    # class 1: the reference right once, the candidate twice: d = (0, -1), mean -0.5, var 0.5
    d = paired_drop([0, 0, 1, 1], [0, 0, 1, 0], [0, 1, 1, 1])
    assert d.drop == 0.0 and d.images == 4
    # (1/2)² · 0.5 / 2 for each class
    assert d.se == pytest.approx(math.sqrt(2 * 0.25 * 0.5 / 2))
    # balanced and top-1 weigh these equal-sized classes alike; a prior of 3:1 does not
    skew = paired_drop([0, 0, 1, 1], [0, 0, 1, 0], [0, 1, 1, 1], class_weights=[3, 1])
    assert skew.drop == pytest.approx(0.75 * 0.5 - 0.25 * 0.5)
    assert skew.se == pytest.approx(math.sqrt(0.75**2 * 0.25 + 0.25**2 * 0.25))


def test_a_class_with_one_image_counts_with_the_largest_variance():
    d = paired_drop([0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0])  # class 1: d = (1)
    assert d.drop == pytest.approx(0.25)
    # class 0: d = (0, 0, 0), variance 0; class 1: one image, variance taken as 1
    assert d.se == pytest.approx(math.sqrt(0.25**2 * 1.0 / 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_drop_is_the_difference_of_the_two_scores(seed):
    rng = np.random.default_rng(seed)
    classes = 5
    labels = np.repeat(np.arange(classes), [300, 120, 50, 20, 7])
    ref = np.where(rng.random(len(labels)) < 0.8, labels, rng.integers(0, classes, len(labels)))
    cand = np.where(rng.random(len(labels)) < 0.1, rng.integers(0, classes, len(labels)), ref)
    acc_ref = per_class_accuracy(labels, ref, classes)
    acc_cand = per_class_accuracy(labels, cand, classes)
    top1 = np.mean(ref == labels) - np.mean(cand == labels)
    assert paired_drop(labels, ref, cand).drop == pytest.approx(top1, abs=1e-12)
    balanced = acc_ref.mean() - acc_cand.mean()
    got = paired_drop(labels, ref, cand, class_weights=np.ones(classes)).drop
    assert got == pytest.approx(balanced, abs=1e-12)
    train = [4500, 1600, 580, 210, 45]
    prior = prior_accuracy(acc_ref, train) - prior_accuracy(acc_cand, train)
    got = paired_drop(labels, ref, cand, class_weights=train).drop
    assert got == pytest.approx(prior, abs=1e-12)


def test_a_class_without_images_is_left_out_as_the_scores_leave_it_out():
    labels = np.array([0, 0, 0, 2, 2])
    ref = np.array([0, 0, 1, 2, 2])
    cand = np.array([0, 1, 1, 2, 0])
    acc_ref = np.array([2 / 3, np.nan, 1.0])
    acc_cand = np.array([1 / 3, np.nan, 0.5])
    weights = [5.0, 3.0, 1.0]
    expected = prior_accuracy(acc_ref, weights) - prior_accuracy(acc_cand, weights)
    assert paired_drop(labels, ref, cand, weights).drop == pytest.approx(expected)


def test_the_standard_error_matches_the_spread_over_fresh_validation_samples():
    # A population in which the candidate is wrong where the reference is right on 4 % of the
    # images and right where the reference is wrong on 2 %, at a skewed class mix: draw many
    # stratified validation samples and compare the spread of the measured drop with the
    # standard error each sample reports.
    rng = np.random.default_rng(0)
    counts = [400, 150, 60, 20, 8]
    labels = np.repeat(np.arange(5), counts)
    outcomes = np.array([(1, 1), (1, 0), (0, 1), (0, 0)])  # (reference, candidate) right
    chances = [0.71, 0.04, 0.02, 0.23]
    drops, ses = [], []
    for _ in range(3000):
        right = outcomes[rng.choice(4, size=len(labels), p=chances)]
        ref = np.where(right[:, 0] == 1, labels, (labels + 1) % 5)
        cand = np.where(right[:, 1] == 1, labels, (labels + 2) % 5)
        d = paired_drop(labels, ref, cand, class_weights=np.ones(5))
        drops.append(d.drop)
        ses.append(d.se)
    spread = float(np.std(drops, ddof=1))
    assert float(np.mean(ses)) == pytest.approx(spread, rel=0.1)


def test_combined_trials_average_the_drops_and_add_the_variances():
    c = combine_drops([PairedDrop(0.01, 0.003, 100), PairedDrop(0.03, 0.004, 200)])
    assert c.drop == pytest.approx(0.02)
    assert c.se == pytest.approx(0.005 / 2)
    assert c.images == 300
    with pytest.raises(ValueError, match="at least one trial"):
        combine_drops([])


def test_the_upper_bound_is_the_drop_plus_z_standard_errors():
    d = PairedDrop(0.002, 0.004, 1000)
    assert d.upper(0.95) == pytest.approx(0.002 + 1.6448536269514722 * 0.004)
    assert d.upper(0.5) == pytest.approx(0.002)  # the mean-score guard
    for bad in (0.4, 1.0, float("nan"), True):
        with pytest.raises(ValueError, match=r"level in \[0.5, 1\)"):
            d.upper(bad)


def test_within_bound_allows_the_reference_and_the_candidates_validation_is_sure_of():
    inf = float("inf")
    drops = {
        inf: [],
        1000.0: [PairedDrop(0.002, 0.004, 1236)],  # bound 0.0086: allowed at 1 point
        300.0: [PairedDrop(0.008, 0.004, 1236)],  # bound 0.0146: mean within, bound not
        100.0: [PairedDrop(-0.001, 0.010, 1236)],  # higher on validation, but unsure: 0.0154
        30.0: [None],  # diverged
    }
    assert within_bound(drops, 0.01, 0.95) == [inf, 1000.0]
    assert within_bound(drops, 0.01, 0.5) == [inf, 1000.0, 300.0, 100.0]
    assert within_bound(drops, 0.02, 0.95) == [inf, 1000.0, 300.0, 100.0]
    # two seeds pooled: 0.005 + 1.645 · 0.004 / √2 = 0.00965, where the first alone is 0.0136
    first = PairedDrop(0.007, 0.004, 1236)
    pooled = {inf: [], 300.0: [first, PairedDrop(0.003, 0.004, 1236)]}
    assert within_bound(pooled, 0.01, 0.95) == [inf, 300.0]
    assert within_bound({inf: [], 300.0: [first]}, 0.01, 0.95) == [inf]
    assert within_bound({}, 0.01) == []
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\)"):
        within_bound(drops, 1.0)
    with pytest.raises(ValueError, match=r"level in \[0.5, 1\)"):
        within_bound(drops, 0.01, 0.99999999 + 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0, 1], [0, 1], [0]), "one entry per image"),
        (([], [], []), "at least one image"),
        (([0.5, 1], [0, 1], [0, 1]), "class indices"),
        (([[0, 1]], [[0, 1]], [[0, 1]]), "1-D array"),
        (([0, -1], [0, 1], [0, 1]), "≥ 0"),
    ],
)
def test_bad_arrays_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        paired_drop(*args)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0], "each of the 2 classes"),
        ([0.0, 0.0], "not all zero"),
        ([1.0, -1.0], "≥ 0"),
        ([1.0, float("nan")], "finite"),
    ],
)
def test_bad_class_weights_are_named(weights, message):
    with pytest.raises(ValueError, match=message):
        paired_drop([0, 1], [0, 1], [0, 0], class_weights=weights)


def test_last_allowed_takes_the_sharpest_candidate_the_guard_allows():
    inf = float("inf")
    scores = {inf: [0.5, 0.5], 1000.0: [0.4, 0.4], 300.0: [0.3, None], 100.0: [0.9, 0.9]}
    # 100 is not allowed, 300 has a diverged trial: 1000 is the last allowed with scores,
    # though its scores are the lowest
    assert last_allowed(scores, [inf, 1000.0, 300.0]) == 1000.0
    assert last_allowed(scores, [inf]) == inf
    assert last_allowed(scores, []) is None
    assert last_allowed({inf: [None]}, [inf]) is None


def test_not_below_first_keeps_the_candidates_scoring_at_least_the_first():
    inf = float("inf")
    # means: ∞ .51; 3 .51 (a tie, summed in another order); 1 .55; 0.5 .425; 0.3 diverged
    scores = {
        inf: [0.50, 0.52],
        3.0: [0.52, 0.50],
        1.0: [0.55, 0.55],
        0.5: [0.40, 0.45],
        0.3: [0.90, None],
    }
    assert not_below_first(scores, [inf, 3.0, 1.0, 0.5, 0.3]) == [inf, 3.0, 1.0]
    assert not_below_first(scores, [inf, 0.5, 3.0]) == [inf, 3.0]  # in the listed order
    # the gain check before the last allowed: 0.5 is allowed but scores below ∞
    assert last_allowed(scores, not_below_first(scores, [inf, 3.0, 0.5])) == 3.0
    assert last_allowed(scores, [inf, 3.0, 0.5], not_worse=True) == 3.0
    assert last_allowed(scores, [inf, 3.0, 0.5]) == 0.5  # without it
    # equal accuracies summed in another order differ in the last bit: still a tie
    assert not_below_first({inf: [0.1 + 0.2], 1.0: [0.3]}, [inf, 1.0]) == [inf, 1.0]
    assert not_below_first({inf: [None], 1.0: [0.5]}, [inf, 1.0]) == []  # no reference
    assert not_below_first({}, []) == []


def test_seeds_scored_on_the_same_images_count_each_image_once():
    labels = np.array([0] * 40 + [1] * 40)
    ref = labels.copy()
    cand = labels.copy()
    cand[:3] = 1  # wrong on three class-0 images the reference gets right
    one = paired_drop(labels, ref, cand)
    # the same pair twice (two seeds whose models disagree on the same images): the same
    # drop and the same error, not an error √2 smaller as for two independent samples
    twice = paired_drop(labels, np.stack([ref, ref]), np.stack([cand, cand]))
    assert (twice.drop, twice.se) == pytest.approx((one.drop, one.se))
    assert combine_drops([one, one]).se == pytest.approx(one.se / math.sqrt(2))
    # per image the mean over the pairs: seed 2 disagrees on three other images
    other = labels.copy()
    other[3:6] = 1
    mixed = paired_drop(labels, np.stack([ref, ref]), np.stack([cand, other]))
    d = np.zeros(80)
    d[:6] = 0.5
    expected_se = math.sqrt(0.5**2 * d[:40].var(ddof=1) / 40)
    assert (mixed.drop, mixed.se) == pytest.approx((0.5 * d[:40].mean(), expected_se))
    with pytest.raises(ValueError, match="same shape"):
        paired_drop(labels, np.stack([ref, ref]), cand)
