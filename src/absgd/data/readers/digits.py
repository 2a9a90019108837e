"""The embedded default: scikit-learn's bundled ``load_digits`` made long-tailed.

1,797 real 8×8 handwritten digits (UCI optical recognition, 10 classes), shipped with
scikit-learn, so nothing needs downloading. A balanced test split is held out first
(``⌊test_fraction · min_c n_c⌋`` images per class, seeded); the rest is made long-tailed with
the standard procedure (:func:`absgd.data.long_tail_counts`,
:func:`absgd.data.select_long_tailed`) with ``n_max`` = its smallest class size. Pixel values
0…16 are scaled to ``uint8`` 0…255 (``round(v · 255 / 16)``), shape ``(N, 8, 8, 1)``.
"""

from __future__ import annotations

import numpy as np

from absgd.data._util import floor_fraction
from absgd.data.dataset import ArrayDataset, DataSplits
from absgd.data.imbalance import long_tail_counts, select_long_tailed
from absgd.data.splits import stratified_split_indices

__all__ = ["load_digits_lt"]


def load_digits_lt(
    imbalance_ratio: float = 10.0,
    *,
    profile: str = "exp",
    test_fraction: float = 0.3,
    seed: int = 0,
) -> DataSplits:
    """Long-tailed training split and balanced test split of scikit-learn's digits.

    >>> data = load_digits_lt(10)  # doctest: +SKIP
    >>> data.train.class_counts().tolist(), data.test.class_counts().tolist()  # doctest: +SKIP
    ([122, 94, 73, 56, 43, 33, 26, 20, 15, 12], [52, 52, 52, 52, 52, 52, 52, 52, 52, 52])
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the embedded digits dataset needs scikit-learn: pip install "torch-absgd[sklearn]"'
        ) from exc
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    full = ArrayDataset(images, bunch.target, tuple(str(c) for c in bunch.target_names))
    per_class = floor_fraction(test_fraction, int(full.class_counts().min()))
    rest, test_idx = stratified_split_indices(
        full.y, per_class=per_class, seed=seed, num_classes=full.num_classes
    )
    pool = full.subset(rest)
    counts = long_tail_counts(
        int(pool.class_counts().min()), pool.num_classes, imbalance_ratio, profile
    )
    train = pool.subset(select_long_tailed(pool.y, counts, seed))
    return DataSplits(train=train, test=full.subset(test_idx))
