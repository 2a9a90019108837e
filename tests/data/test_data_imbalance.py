"""Long-tailed counts and selection against hand-computed values and a re-implementation of
the reference procedure (LDAM-DRW's IMBALANCECIFAR10, written out independently here)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from absgd.data import ArrayDataset, long_tail_counts, make_long_tailed, select_long_tailed


def reference_counts(img_max: float, cls_num: int, imb_type: str, imb_factor: float) -> list[int]:
    """The reference's get_img_num_per_cls (Cao et al. 2019), imb_factor = 1 / ratio.

    Its step profile appends ``cls_num // 2`` head counts and then ``cls_num // 2`` tail
    counts, so for an odd ``cls_num`` the list is one short and the reference's ``zip`` with
    the classes drops the last class (see test_step_profile_with_an_odd_number_of_classes).
    """
    out = []
    if imb_type == "exp":
        for cls_idx in range(cls_num):
            out.append(int(img_max * (imb_factor ** (cls_idx / (cls_num - 1.0)))))
    else:
        out.extend([int(img_max)] * (cls_num // 2))
        out.extend([int(img_max * imb_factor)] * (cls_num // 2))
    return out


def reference_select(targets: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """The reference's gen_imbalanced_data: global legacy RNG seeded once, np.where + shuffle."""
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        picked = []
        for the_class, the_img_num in zip(np.unique(targets), counts, strict=True):
            idx = np.where(targets == the_class)[0]
            np.random.shuffle(idx)
            picked.append(idx[:the_img_num])
        return np.concatenate(picked)
    finally:
        np.random.set_state(saved)


def test_cifar10_lt_ratio_100_counts() -> None:
    counts = long_tail_counts(5000, 10, 100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(counts) == 12406


@pytest.mark.parametrize(
    ("n_max", "num_classes", "ratio", "total"),
    [  # totals reported in the LT literature (LDAM-DRW, ABSGD tables)
        (5000, 10, 10, 20431),
        (5000, 10, 50, 13996),
        (5000, 10, 100, 12406),
        (500, 100, 10, 19573),
        (500, 100, 50, 12608),
        (500, 100, 100, 10847),
    ],
)
def test_exp_totals(n_max: int, num_classes: int, ratio: int, total: int) -> None:
    assert sum(long_tail_counts(n_max, num_classes, ratio)) == total


@pytest.mark.parametrize("profile", ["exp", "step"])
@pytest.mark.parametrize(("n_max", "num_classes"), [(5000, 10), (500, 100), (600, 7), (49, 2)])
@pytest.mark.parametrize("ratio", [1, 10, 49, 50, 100, 200, 256.0])
def test_counts_match_reference_expression(
    profile: str, n_max: int, num_classes: int, ratio: float
) -> None:
    expected = reference_counts(float(n_max), num_classes, profile, 1.0 / ratio)
    ours = long_tail_counts(n_max, num_classes, ratio, profile)
    if profile == "step" and num_classes % 2:
        # Odd C: the reference lists one count fewer than there are classes (its last class
        # is dropped); ours agrees on those and gives the last class the tail count.
        assert len(expected) == num_classes - 1
        assert ours[:-1] == expected and ours[-1] == expected[-1]
    else:
        assert ours == expected


@pytest.mark.parametrize(
    ("n_max", "num_classes", "ratio", "expected"),
    [  # by hand: int(n_max * (1 / ratio)) for the tail, the first ⌊C/2⌋ classes get n_max
        (5000, 10, 100, [5000] * 5 + [50] * 5),
        (5000, 10, 10, [5000] * 5 + [500] * 5),
        (500, 100, 10, [500] * 50 + [50] * 50),
        (100, 4, 10, [100, 100, 10, 10]),
        (49, 2, 7, [49, 7]),
        (100, 5, 10, [100, 100, 10, 10, 10]),
        (600, 7, 49, [600, 600, 600, 12, 12, 12, 12]),  # 600/49 = 12.24...
        (9, 3, 3, [9, 3, 3]),
        (49, 3, 49, [49, 0, 0]),  # 49 * (1/49) = 0.999...: the reference's int() gives 0
    ],
)
def test_step_profile_values(n_max: int, num_classes: int, ratio: float, expected: list) -> None:
    assert long_tail_counts(n_max, num_classes, ratio, "step") == expected


def test_step_profile_with_an_odd_number_of_classes() -> None:
    """The decision for odd C (docs/data.md): the reference (LDAM-DRW, get_img_num_per_cls)
    builds C // 2 head and C // 2 tail counts, one fewer than the classes, and its selection
    zips them with the classes, so the last class disappears from the training set. The rule
    it implements — "the first half of the classes n_max, the rest n_max / ratio" — keeps every
    class: the first ⌊C/2⌋ get n_max and the other C - ⌊C/2⌋ the tail count."""
    counts = long_tail_counts(100, 5, 10, "step")
    assert len(counts) == 5 and counts.count(100) == 2 and counts.count(10) == 3
    labels = np.repeat(np.arange(5), 100)
    kept = select_long_tailed(labels, counts)
    assert np.bincount(labels[kept], minlength=5).tolist() == [100, 100, 10, 10, 10]
    reference = reference_counts(100.0, 5, "step", 0.1)
    assert reference == [100, 100, 10, 10]  # what the reference would keep: class 4 dropped
    assert sum(counts) == sum(reference) + 10


def test_cifar100_ratio_100_head_and_tail() -> None:
    counts = long_tail_counts(500, 100, 100)
    assert counts[:10] == [500, 477, 455, 434, 415, 396, 378, 361, 344, 328]
    assert counts[-5:] == [6, 5, 5, 5, 5]
    assert all(a >= b for a, b in itertools.pairwise(counts))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((5000, 10, 0.5), "imbalance_ratio.*0.5"),
        ((5000, 10, float("inf")), "imbalance_ratio"),
        ((5000, 10, 10, "linear"), "profile.*linear"),
        ((0, 10, 10), "n_max.*0"),
        ((5000, 0, 10), "num_classes.*0"),
    ],
)
def test_counts_reject_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        long_tail_counts(*args)


@pytest.fixture
def cifar_like_labels() -> np.ndarray:
    """10 classes x 500 samples in a random (but fixed) dataset order."""
    return np.random.default_rng(7).permutation(np.repeat(np.arange(10), 500))


@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("profile", ["exp", "step"])
def test_selection_matches_reference_procedure(
    cifar_like_labels: np.ndarray, seed: int, profile: str
) -> None:
    counts = reference_counts(500.0, 10, profile, 0.01)
    ours = select_long_tailed(cifar_like_labels, counts, seed=seed)
    ref = reference_select(cifar_like_labels, counts, seed)
    np.testing.assert_array_equal(ours, ref)
    assert ours.dtype == np.int64


def test_selection_properties(cifar_like_labels: np.ndarray) -> None:
    counts = long_tail_counts(500, 10, 100)
    idx = select_long_tailed(cifar_like_labels, counts)
    assert len(np.unique(idx)) == len(idx) == sum(counts)
    np.testing.assert_array_equal(np.bincount(cifar_like_labels[idx], minlength=10), counts)
    # grouped by class, ascending
    assert np.all(np.diff(cifar_like_labels[idx]) >= 0)
    # deterministic across calls, different for another seed, default seed is 0
    np.testing.assert_array_equal(idx, select_long_tailed(cifar_like_labels, counts, seed=0))
    assert not np.array_equal(idx, select_long_tailed(cifar_like_labels, counts, seed=1))


def test_selection_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"class 1 has 2 samples but 3 were requested"):
        select_long_tailed([0, 0, 1, 1], [2, 3])
    with pytest.raises(ValueError, match=r"\[0, 2\).*\[5\]"):
        select_long_tailed([0, 1, 5], [1, 1])
    with pytest.raises(ValueError, match=r"\[-1\]"):
        select_long_tailed([0, -1], [1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        select_long_tailed([0, 1], [1, -1])


def test_make_long_tailed_on_a_dataset(cifar_like_labels: np.ndarray) -> None:
    x = np.arange(len(cifar_like_labels) * 2).reshape(-1, 2)
    ds = ArrayDataset(x, cifar_like_labels, tuple("abcdefghij"))
    lt = make_long_tailed(ds, 10, seed=3)
    counts = reference_counts(500.0, 10, "exp", 0.1)
    np.testing.assert_array_equal(lt.class_counts(), counts)
    ref = reference_select(cifar_like_labels, counts, 3)
    np.testing.assert_array_equal(lt.x, x[ref])
    np.testing.assert_array_equal(lt.y, cifar_like_labels[ref])
    assert lt.class_names == ds.class_names
