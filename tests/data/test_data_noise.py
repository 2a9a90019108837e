"""Label noise: exact per-class flip counts, targets, determinism, validation."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from absgd.data import corrupt_labels, next_in_group_mapping

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def exact_floor(rate: str, n: int) -> int:
    return int(Fraction(rate) * n)  # decimal-exact ⌊rate·n⌋


@pytest.fixture
def uneven_labels() -> np.ndarray:
    sizes = [100 + 7 * c for c in range(10)]
    return np.random.default_rng(5).permutation(np.repeat(np.arange(10), sizes))


@pytest.mark.parametrize("rate", ["0", "0.2", "0.29", "0.4", "0.8", "1"])
def test_symmetric_exact_counts_and_no_self_flips(uneven_labels: np.ndarray, rate: str) -> None:
    noisy, flipped = corrupt_labels(uneven_labels, float(rate), "symmetric", 10, seed=3)
    assert noisy.dtype == np.int64 and flipped.dtype == bool
    np.testing.assert_array_equal(flipped, noisy != uneven_labels)
    for c in range(10):
        n_c = int((uneven_labels == c).sum())
        assert int(flipped[uneven_labels == c].sum()) == exact_floor(rate, n_c)
    assert np.all((noisy >= 0) & (noisy < 10))


def test_symmetric_targets_cover_other_classes_uniformly() -> None:
    # every row of the transition matrix: 0 on the diagonal, 1/9 elsewhere (9,000 draws per
    # class: a standard error of 0.0033 per entry)
    labels = np.repeat(np.arange(10), 9_000)
    noisy, flipped = corrupt_labels(labels, 1.0, "symmetric", 10, seed=0)
    assert flipped.all()
    for c in range(10):
        freq = np.bincount(noisy[labels == c], minlength=10) / 9_000
        assert freq[c] == 0
        np.testing.assert_allclose(np.delete(freq, c), 1 / 9, atol=0.015)


def test_noise_is_deterministic(uneven_labels: np.ndarray) -> None:
    a = corrupt_labels(uneven_labels, 0.4, "symmetric", 10, seed=11)
    b = corrupt_labels(uneven_labels, 0.4, "symmetric", 10, seed=11)
    c = corrupt_labels(uneven_labels, 0.4, "symmetric", 10, seed=12)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    labels_before = uneven_labels.copy()
    corrupt_labels(uneven_labels, 0.4, "asymmetric", 10, seed=1, mapping="cifar10")
    np.testing.assert_array_equal(uneven_labels, labels_before)  # input untouched


@pytest.mark.parametrize("mapping", ["cifar10", None])
def test_cifar10_asymmetric_mapping(uneven_labels: np.ndarray, mapping: str | None) -> None:
    by_name = {
        "truck": "automobile",
        "bird": "airplane",
        "cat": "dog",
        "dog": "cat",
        "deer": "horse",
    }
    expected = {CIFAR10_NAMES.index(s): CIFAR10_NAMES.index(t) for s, t in by_name.items()}
    rule = mapping if mapping is not None else expected  # the name and an explicit dict agree
    noisy, flipped = corrupt_labels(uneven_labels, 0.4, "asymmetric", 10, seed=2, mapping=rule)
    for c in range(10):
        of_c = uneven_labels == c
        if c in expected:
            assert int(flipped[of_c].sum()) == exact_floor("0.4", int(of_c.sum()))
            assert set(noisy[of_c & flipped].tolist()) == {expected[c]}
        else:
            assert not flipped[of_c].any()


def test_group_rule_cycles_within_superclasses() -> None:
    rng = np.random.default_rng(0)
    groups = rng.permutation(np.repeat(np.arange(20), 5))  # CIFAR-100-like coarse labels
    labels = rng.permutation(np.repeat(np.arange(100), 50))
    noisy, flipped = corrupt_labels(labels, 0.2, "asymmetric", 100, seed=4, groups=groups)
    for c in range(100):
        members = sorted(np.flatnonzero(groups == groups[c]).tolist())
        nxt = members[(members.index(c) + 1) % 5]
        of_c = labels == c
        assert int(flipped[of_c].sum()) == 10
        assert set(noisy[of_c & flipped].tolist()) == {nxt}


def test_next_in_group_mapping_hand_example() -> None:
    assert next_in_group_mapping([1, 0, 1, 0, 1, 2]) == {1: 3, 3: 1, 0: 2, 2: 4, 4: 0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate": 1.5, "kind": "symmetric"}, r"rate.*1\.5"),
        ({"rate": 0.2, "kind": "pairflip"}, "kind.*pairflip"),
        ({"rate": 0.2, "kind": "asymmetric"}, "mapping="),
        ({"rate": 0.2, "kind": "asymmetric", "mapping": "cifar100"}, "cifar100"),
        ({"rate": 0.2, "kind": "asymmetric", "mapping": {1: 1}}, "1 -> 1"),
        ({"rate": 0.2, "kind": "asymmetric", "mapping": {1: 10}}, "1 -> 10"),
        ({"rate": 0.2, "kind": "asymmetric", "groups": [0, 1]}, "one group per class"),
        ({"rate": 0.2, "kind": "symmetric", "mapping": "cifar10"}, "only to kind='asymmetric'"),
    ],
)
def test_noise_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        corrupt_labels(np.arange(10) % 10, num_classes=10, seed=0, **kwargs)


def test_noise_rejects_labels_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 3\).*\[3\]"):
        corrupt_labels([0, 1, 3], 0.5, "symmetric", 3, seed=0)


def test_fashion_mnist_asymmetric_mapping_flips_look_alikes_exactly():
    from absgd.data import FMNIST_ASYMMETRIC

    labels = np.repeat(np.arange(10), 50)
    noisy, flipped = corrupt_labels(labels, 0.4, "asymmetric", 10, seed=1, mapping="fmnist")
    for c in range(10):
        moved = noisy[(labels == c) & flipped]
        if c in FMNIST_ASYMMETRIC:
            assert len(moved) == 20 and set(moved.tolist()) == {FMNIST_ASYMMETRIC[c]}
        else:
            assert len(moved) == 0
