"""CSV / NumPy tables and the embedded digits dataset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from absgd.data import DataFormatError, from_array, load_digits_lt, read_csv


def test_csv_with_header_and_named_labels(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("f1,species,f2\n1.5,setosa,2\n-3,virginica,4e-1\n0,setosa,7\n")
    ds = read_csv(path, "species")
    assert ds.class_names == ("setosa", "virginica")
    assert ds.y.tolist() == [0, 1, 0]
    assert ds.x.dtype == np.float32
    np.testing.assert_allclose(ds.x, [[1.5, 2], [-3, 0.4], [0, 7]])


def test_tsv_without_header_and_integer_labels(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("3\t0.5\t1\n0\t1.5\t2\n")
    ds = read_csv(path, 0, delimiter="\t")
    assert ds.y.tolist() == [3, 0] and ds.num_classes == 4
    np.testing.assert_allclose(ds.x, [[0.5, 1], [1.5, 2]])
    ds = read_csv(path, 0, delimiter="\t", class_names=list("abcdefg"))
    assert ds.num_classes == 7


def test_csv_errors_name_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1,2,x\n1,,y\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv:3: column 1 holds ''"):
        read_csv(path, "label")
    path.write_text("a,b,label\n1,2,x\n1,2\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv:3: 2 fields, expected 3"):
        read_csv(path, "label")
    with pytest.raises(ValueError, match="no column named 'target'"):
        read_csv(path, "target")
    path.write_text("1,2,x\n")
    with pytest.raises(ValueError, match=r"labels \['x'\] are not among"):
        read_csv(path, class_names=["y"])


def test_from_array_and_npy(tmp_path: Path) -> None:
    table = np.array([[1, 0.5, 2.0], [0, 1.5, 3.0], [1, 2.5, 4.0]])
    np.save(tmp_path / "t.npy", table)
    for source in (table, tmp_path / "t.npy"):
        ds = from_array(source, label_column=0)
        assert ds.y.tolist() == [1, 0, 1]
        np.testing.assert_allclose(ds.x, table[:, 1:])
    with pytest.raises(ValueError, match="label column"):
        from_array(np.zeros(3))
    with pytest.raises(ValueError, match=r"\[-1\]"):
        from_array(np.array([[0.0, -1]]))


def test_digits_lt() -> None:
    pytest.importorskip("sklearn")
    data = load_digits_lt(10, seed=0)
    counts = data.train.class_counts().tolist()
    n_max = counts[0]
    assert counts == [math.floor(n_max * 10 ** (-i / 9) + 1e-9) for i in range(10)]
    assert counts[-1] == n_max // 10
    test_counts = data.test.class_counts()
    assert len(set(test_counts.tolist())) == 1 and test_counts[0] == int(0.3 * 174)
    assert data.train.x.shape[1:] == (8, 8, 1) and data.train.x.dtype == np.uint8
    assert data.train.x.max() == 255 and data.class_names == tuple("0123456789")
    again = load_digits_lt(10, seed=0)
    np.testing.assert_array_equal(again.train.x, data.train.x)
    step = load_digits_lt(5, profile="step", seed=1).train.class_counts()
    assert len(set(step[:5].tolist())) == 1 and len(set(step[5:].tolist())) == 1
    assert step[5] == step[0] // 5
