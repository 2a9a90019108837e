"""Stratified validation splits and the container's checks."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from absgd.data import (
    ArrayDataset,
    DataSplits,
    stratified_split_indices,
    train_val_split,
    with_validation,
)


@pytest.fixture
def lt_dataset() -> ArrayDataset:
    sizes = [200, 120, 60, 30, 9]
    y = np.random.default_rng(1).permutation(np.repeat(np.arange(5), sizes))
    x = np.arange(len(y) * 3, dtype=np.float32).reshape(-1, 3)
    return ArrayDataset(x, y, ("a", "b", "c", "d", "e"))


def test_fraction_split_is_stratified(lt_dataset: ArrayDataset) -> None:
    train, val = train_val_split(lt_dataset, val_fraction=0.15, seed=0)
    sizes = lt_dataset.class_counts()
    expected_val = [max(1, int(Fraction("0.15") * n)) for n in sizes]  # 30, 18, 9, 4, 1
    assert val.class_counts().tolist() == expected_val
    assert (train.class_counts() + val.class_counts()).tolist() == sizes.tolist()
    # disjoint, complete, dataset order kept (x rows are unique: identify samples by them)
    rows_t, rows_v = train.x[:, 0].tolist(), val.x[:, 0].tolist()
    assert not set(rows_t) & set(rows_v)
    assert sorted(rows_t + rows_v) == lt_dataset.x[:, 0].tolist()
    assert rows_t == sorted(rows_t) and rows_v == sorted(rows_v)


def test_min_per_class_holds_out_a_class_that_the_fraction_would_skip() -> None:
    # 5 samples at fraction 0.1: ⌊0.5⌋ = 0 of the small class, so 1 only by min_per_class
    y = np.repeat([0, 1], [40, 5])
    _, held = stratified_split_indices(y, fraction=0.1, seed=0)
    assert np.bincount(y[held], minlength=2).tolist() == [4, 0]
    _, held = stratified_split_indices(y, fraction=0.1, min_per_class=1, seed=0)
    assert np.bincount(y[held], minlength=2).tolist() == [4, 1]
    dataset = ArrayDataset(np.zeros((45, 1), np.float32), y, ("a", "b"))
    train, val = train_val_split(dataset, val_fraction=0.1, seed=0)  # default: at least 1
    assert val.class_counts().tolist() == [4, 1] and train.class_counts().tolist() == [36, 4]
    _, val = train_val_split(dataset, val_fraction=0.1, min_per_class=0, seed=0)
    assert val.class_counts().tolist() == [4, 0]


def test_split_is_seeded(lt_dataset: ArrayDataset) -> None:
    a = stratified_split_indices(lt_dataset.y, fraction=0.2, seed=3)
    b = stratified_split_indices(lt_dataset.y, fraction=0.2, seed=3)
    c = stratified_split_indices(lt_dataset.y, fraction=0.2, seed=4)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_per_class_split_is_balanced(lt_dataset: ArrayDataset) -> None:
    _, val = train_val_split(lt_dataset, val_per_class=5, seed=0)
    assert val.class_counts().tolist() == [5] * 5


def test_split_errors_name_the_values(lt_dataset: ArrayDataset) -> None:
    with pytest.raises(ValueError, match="class 4 has 9 samples: cannot hold out 9"):
        train_val_split(lt_dataset, val_per_class=9)
    with pytest.raises(ValueError, match="exactly one"):
        train_val_split(lt_dataset, val_fraction=0.1, val_per_class=3)
    with pytest.raises(ValueError, match=r"fraction.*1\.5"):
        train_val_split(lt_dataset, val_fraction=1.5)


def test_with_validation_keeps_the_test_split(lt_dataset: ArrayDataset) -> None:
    test = lt_dataset.subset(np.arange(10))
    splits = with_validation(DataSplits(train=lt_dataset, test=test), val_fraction=0.1)
    assert splits.test is test
    assert splits.val is not None
    assert len(splits.train) + len(splits.val) == len(lt_dataset)


def test_container_validation() -> None:
    with pytest.raises(ValueError, match=r"\[0, 2\).*\[2, 7\]"):
        ArrayDataset(np.zeros((3, 1)), [0, 2, 7], ("a", "b"))
    with pytest.raises(ValueError, match="same length"):
        ArrayDataset(np.zeros((3, 1)), [0, 1], ("a", "b"))
    with pytest.raises(ValueError, match="integers"):
        ArrayDataset(np.zeros((2, 1)), [0.5, 1.0], ("a", "b"))
    with pytest.raises(ValueError, match="class names differ"):
        a = ArrayDataset(np.zeros((1, 1)), [0], ("a",))
        DataSplits(train=a, test=ArrayDataset(np.zeros((1, 1)), [0], ("b",)))
    ds = ArrayDataset(np.zeros((4, 1)), np.array([1.0, 0.0, 1.0, 1.0]), ["x", "y", "z"])
    assert ds.y.dtype == np.int64 and ds.class_names == ("x", "y", "z")
    assert ds.class_counts().tolist() == [1, 3, 0] and ds.num_classes == 3
