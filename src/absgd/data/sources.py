"""Named data sources for configs: ``data: {name: cifar10, root: ...}`` → train/test splits.

Every source returns :class:`~absgd.data.DataSplits` (in memory) or :class:`LazySplits`
(list files decoded on the fly); the experiment then makes the training split long-tailed,
corrupts labels and carves the validation split as the config says.

=================  ============================================================================
name               reads
=================  ============================================================================
``digits``         scikit-learn's bundled 8×8 digits; a balanced test split is held out
``fashion_mnist``  the IDX files in ``root`` (Fashion-MNIST)
``mnist``          the IDX files in ``root`` (MNIST)
``cifar10``        ``cifar-10-python.tar.gz`` in (or at) ``root``; ``download: true`` to fetch it
``cifar100``       ``cifar-100-python.tar.gz`` likewise
``image_folder``   ``root/{train,test}/<class>/<image>``, a directory or a tar(.gz) archive
``list_file``      ``path label`` lists (``train_list``, ``val_list``, ``test_list``) under ``root``
``csv``            a CSV table ``root`` (label column ``label_column``), split by ``test_fraction``
``synthetic``      Gaussian class clusters generated from a seed (for smoke tests)
=================  ============================================================================
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from absgd.data._util import floor_fraction
from absgd.data.dataset import ArrayDataset, DataSplits
from absgd.data.readers import (
    ListFileDataset,
    load_cifar,
    load_fashion_mnist,
    load_mnist,
    read_csv,
    read_image_folder,
)
from absgd.data.splits import stratified_split_indices
from absgd.registry import Registry

__all__ = ["SOURCES", "LazySplits", "load_source"]

SOURCES: Registry = Registry("data source")


@dataclass(frozen=True)
class LazySplits:
    """Splits of a dataset too large for memory (``torch`` datasets decoded per item)."""

    train: ListFileDataset
    test: ListFileDataset
    val: ListFileDataset | None
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _need_root(name: str, root: str | None) -> Path:
    if root is None:
        raise ValueError(f"data source {name!r} needs data.root (the file or directory to read)")
    return Path(root).expanduser()


def _holdout(full: ArrayDataset, test_fraction: float, seed: int) -> DataSplits:
    """A balanced test split of ``⌊test_fraction · min_c n_c⌋`` per class; the rest trains."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    per_class = max(1, floor_fraction(test_fraction, int(full.class_counts().min())))
    rest, test = stratified_split_indices(
        full.y, per_class=per_class, seed=seed, num_classes=full.num_classes
    )
    return DataSplits(train=full.subset(rest), test=full.subset(test))


@SOURCES.register("digits")
def _digits(*, root: str | None = None, test_fraction: float = 0.3, seed: int = 0) -> DataSplits:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the embedded digits dataset needs scikit-learn: pip install "torch-absgd[sklearn]"'
        ) from exc
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    full = ArrayDataset(images, bunch.target, tuple(str(c) for c in bunch.target_names))
    return _holdout(full, test_fraction, seed)


@SOURCES.register("fashion_mnist")
def _fashion_mnist(*, root: str | None = None) -> DataSplits:
    return load_fashion_mnist(_need_root("fashion_mnist", root))


@SOURCES.register("mnist")
def _mnist(*, root: str | None = None) -> DataSplits:
    return load_mnist(_need_root("mnist", root))


@SOURCES.register("cifar10")
def _cifar10(*, root: str | None = None, download: bool = False) -> DataSplits:
    return load_cifar("cifar10", root, download=download)


@SOURCES.register("cifar100")
def _cifar100(*, root: str | None = None, download: bool = False) -> DataSplits:
    return load_cifar("cifar100", root, download=download)


@SOURCES.register("image_folder")
def _image_folder(
    *,
    root: str | None = None,
    splits: tuple[str, str] = ("train", "test"),
    mode: str = "RGB",
    image_size: int | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> DataSplits:
    return read_image_folder(
        _need_root("image_folder", root),
        splits=splits,
        mode=mode,
        image_size=image_size,
        cache=cache,
        cache_dir=cache_dir,
        progress=progress,
    )


@SOURCES.register("list_file")
def _list_file(
    *,
    root: str | None = None,
    train_list: str,
    test_list: str,
    val_list: str | None = None,
    num_classes: int | None = None,
    resize: int = 256,
    crop: int = 224,
) -> LazySplits:
    base = _need_root("list_file", root)

    def make(path: str) -> ListFileDataset:
        p = Path(path).expanduser()
        return ListFileDataset(
            p if p.is_absolute() else base / p,
            base,
            resize=resize,
            crop=crop,
            num_classes=num_classes,
        )

    train = make(train_list)
    names = tuple(str(c) for c in range(train.num_classes))
    return LazySplits(
        train=train,
        test=make(test_list),
        val=None if val_list is None else make(val_list),
        class_names=names,
    )


@SOURCES.register("csv")
def _csv(
    *,
    root: str | None = None,
    label_column: int | str = -1,
    header: bool | None = None,
    delimiter: str = ",",
    test_path: str | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> DataSplits:
    full = read_csv(_need_root("csv", root), label_column, delimiter=delimiter, header=header)
    if test_path is None:
        return _holdout(full, test_fraction, seed)
    test = read_csv(
        Path(test_path).expanduser(),
        label_column,
        delimiter=delimiter,
        header=header,
        class_names=full.class_names,
    )
    return DataSplits(train=full, test=test)


@SOURCES.register("synthetic")
def _synthetic(
    *,
    root: str | None = None,
    num_classes: int = 4,
    train_per_class: int = 64,
    test_per_class: int = 32,
    shape: tuple[int, ...] = (8, 8, 1),
    separation: float = 2.0,
    seed: int = 0,
) -> DataSplits:
    """Class ``c`` is a Gaussian cloud around a random centre; images are ``uint8`` when
    ``shape`` has three dimensions (H, W, C), ``float32`` features otherwise."""
    if num_classes < 2 or train_per_class < 1 or test_per_class < 1:
        raise ValueError(
            "synthetic data needs num_classes >= 2 and at least one sample per class and split, "
            f"got {num_classes}, {train_per_class}, {test_per_class}"
        )
    rng = np.random.default_rng(seed)
    dim = int(np.prod(shape))
    centres = rng.normal(0.0, separation, size=(num_classes, dim))

    def split(per_class: int) -> ArrayDataset:
        y = np.repeat(np.arange(num_classes), per_class)
        x = centres[y] + rng.normal(0.0, 1.0, size=(len(y), dim))
        data: np.ndarray
        if len(shape) == 3:
            scaled = np.clip(128 + 24 * x, 0, 255)
            data = np.rint(scaled).astype(np.uint8).reshape(len(y), *shape)
        else:
            data = x.astype(np.float32).reshape(len(y), *shape)
        return ArrayDataset(data, y, tuple(f"class{c}" for c in range(num_classes)))

    return DataSplits(train=split(train_per_class), test=split(test_per_class))


def load_source(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> DataSplits | LazySplits:
    """Read the data source registered as ``name`` (see the module docstring).

    ``progress(what, done, total)`` is passed to the sources that decode for a while.
    """
    if progress is not None and "progress" in inspect.signature(SOURCES.get(name)).parameters:
        options["progress"] = progress
    return SOURCES.build(name, root=None if root is None else os.fspath(root), **options)
