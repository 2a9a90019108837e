"""Tabular data with a label column: CSV files and NumPy arrays.

Features become ``float32 (N, D)``. Labels: if every label is an integer (``"3"``, ``"3.0"``)
the integer *is* the class index (``C`` = largest + 1 unless ``class_names`` is given);
otherwise the labels are category names and class ``k`` is the ``k``-th name in sorted order
(or its position in ``class_names`` when given).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from absgd.data.dataset import ArrayDataset
from absgd.data.errors import DataFormatError

__all__ = ["encode_labels", "from_array", "read_csv"]


def _as_int(value: str) -> int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def encode_labels(
    raw: Sequence[object], class_names: Sequence[str] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices and class names for raw label values (see the module docstring).

    >>> encode_labels(["cat", "dog", "cat"])
    (array([0, 1, 0]), ('cat', 'dog'))
    >>> encode_labels(["2", "0.0", "2"])
    (array([2, 0, 2]), ('0', '1', '2'))
    """
    texts = [str(v).strip() for v in raw]
    ints = [_as_int(t) for t in texts]
    if texts and all(i is not None for i in ints):
        y = np.asarray(ints, dtype=np.int64)
        if class_names is None:
            class_names = [str(i) for i in range(max(int(y.max()) + 1, 1))]
        return y, tuple(str(c) for c in class_names)
    names = tuple(class_names) if class_names is not None else tuple(sorted(set(texts)))
    index = {n: k for k, n in enumerate(names)}
    unknown = sorted(set(texts) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown[:10]} are not among class_names {names}")
    return np.asarray([index[t] for t in texts], dtype=np.int64), names


def _column(label_column: int | str, header: list[str] | None, width: int, src: object) -> int:
    if isinstance(label_column, str):
        if header is None or label_column not in header:
            raise ValueError(f"{src}: no column named {label_column!r}; header is {header}")
        return header.index(label_column)
    col = label_column + width if label_column < 0 else label_column
    if not 0 <= col < width:
        raise ValueError(f"{src}: label_column {label_column} outside the {width} columns")
    return col


def read_csv(
    path: str | os.PathLike[str],
    label_column: int | str = -1,
    *,
    delimiter: str = ",",
    header: bool | None = None,
    class_names: Sequence[str] | None = None,
) -> ArrayDataset:
    """Read a delimited text file with one sample per row and one label column.

    Args:
        path: the file.
        label_column: index (negative counts from the end) or header name of the label column.
        delimiter: field separator (``"\\t"`` for TSV).
        header: whether the first row names the columns; by default true when
            ``label_column`` is a name, else guessed (a first row that is not numeric).
        class_names: fixes the class order / number of classes.

    Raises:
        DataFormatError: ragged rows or a non-numeric or empty feature cell (named by row and
            column).
    """
    src = Path(path)
    with open(src, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh, delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataFormatError(f"{src} has no rows")
    if header is None:
        header = isinstance(label_column, str) or not all(
            _as_float(c) is not None for i, c in enumerate(rows[0]) if i != len(rows[0]) - 1
        )
    names = [c.strip() for c in rows[0]] if header else None
    body = rows[1:] if header else rows
    width = len(rows[0])
    col = _column(label_column, names, width, src)
    features = np.empty((len(body), width - 1), dtype=np.float32)
    raw_labels = []
    for r, row in enumerate(body):
        line = r + 1 + int(bool(header))
        if len(row) != width:
            raise DataFormatError(f"{src}:{line}: {len(row)} fields, expected {width}")
        raw_labels.append(row[col])
        cells = row[:col] + row[col + 1 :]
        for j, cell in enumerate(cells):
            value = _as_float(cell)
            if value is None:
                column = j if j < col else j + 1
                raise DataFormatError(
                    f"{src}:{line}: column {column} holds {cell!r}, expected a number"
                )
            features[r, j] = value
    y, classes = encode_labels(raw_labels, class_names)
    return ArrayDataset(features, y, classes)


def _as_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def from_array(
    table: np.ndarray | str | os.PathLike[str],
    label_column: int = -1,
    *,
    class_names: Sequence[str] | None = None,
) -> ArrayDataset:
    """A 2-D numeric array (or a ``.npy`` file) whose column ``label_column`` holds labels.

    >>> ds = from_array(np.array([[0.5, 1.0, 1], [2.0, 0.0, 0]]))
    >>> ds.x.tolist(), ds.y.tolist(), ds.class_names
    ([[0.5, 1.0], [2.0, 0.0]], [1, 0], ('0', '1'))
    """
    arr = np.load(table, allow_pickle=False) if not isinstance(table, np.ndarray) else table
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"expected a 2-D array with a label column, got shape {arr.shape}")
    col = _column(label_column, None, arr.shape[1], "array")
    x = np.delete(arr, col, axis=1).astype(np.float32)
    y, classes = encode_labels(arr[:, col].tolist(), class_names)
    return ArrayDataset(x, y, classes)
