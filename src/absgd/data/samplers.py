"""Class-aware sampling for the baselines that resample instead of re-weighting.

A sampler fixes the probability ``π_c`` of drawing class ``c``; within a class every sample is
equally likely. With ``n_c`` samples of class ``c`` and a power ``q``,

    π_c = n_c^q / Σ_k n_k^q,        P(sample i) = π_{y_i} / n_{y_i}

- ``"uniform"`` (``q = 1``): every sample equally likely (ordinary shuffling; each epoch is a
  permutation, i.e. without replacement),
- ``"sqrt"`` (``q = 1/2``): square-root sampling (Mahajan et al. 2018; Kang et al.,
  "Decoupling Representation and Classifier for Long-Tailed Recognition", ICLR 2020),
- ``"class_balanced"`` (``q = 0``): every class equally likely (Shen et al. 2016; Kang et al.
  2020), the common re-sampling baseline,
- ``power=q``: any other ``q``.

For ``q ≠ 1`` an epoch is ``num_samples`` (default ``N``) i.i.d. draws with replacement: a class
from ``π``, then a uniform sample of that class. Each epoch's indices are a pure function of
``(seed, epoch)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from absgd.data._util import derive_seed
from absgd.data.dataset import validate_labels

__all__ = ["SAMPLING_MODES", "ClassAwareSampler"]

SAMPLING_MODES = {"uniform": 1.0, "sqrt": 0.5, "class_balanced": 0.0}
_STREAM = 0x5A3  # keeps the sampler's random stream apart from the loader's other streams


class ClassAwareSampler:
    """Per-epoch indices drawn with class probabilities ``π_c ∝ n_c^q`` (see the module doc).

    >>> s = ClassAwareSampler([0, 0, 0, 1], "class_balanced")
    >>> s.class_probabilities.tolist()
    [0.5, 0.5]
    >>> len(s.epoch_indices(seed=0, epoch=0))
    4
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        mode: str = "uniform",
        *,
        power: float | None = None,
        num_samples: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        y = np.asarray(labels)
        if num_classes is None:
            num_classes = int(y.max()) + 1 if y.size else 1
        self.labels = validate_labels(y, num_classes)
        if len(self.labels) == 0:
            raise ValueError("cannot sample from an empty dataset")
        if power is None:
            if mode not in SAMPLING_MODES:
                raise ValueError(
                    f"mode must be one of {sorted(SAMPLING_MODES)} (or pass power=q), got {mode!r}"
                )
            power = SAMPLING_MODES[mode]
        self.power = float(power)
        self.num_samples = len(self.labels) if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        counts = np.bincount(self.labels, minlength=num_classes).astype(np.float64)
        weights = np.zeros_like(counts)
        weights[counts > 0] = counts[counts > 0] ** self.power  # empty classes: never drawn
        self.class_counts = counts.astype(np.int64)
        self.class_probabilities = weights / weights.sum()
        self._by_class = np.argsort(self.labels, kind="stable")
        self._starts = np.concatenate([[0], np.cumsum(self.class_counts)[:-1]])

    def __len__(self) -> int:
        return self.num_samples

    def sample_probabilities(self) -> np.ndarray:
        """``P(sample i) = π_{y_i} / n_{y_i}`` for every sample (sums to 1)."""
        return self.class_probabilities[self.labels] / self.class_counts[self.labels]

    def epoch_indices(self, seed: int, epoch: int) -> np.ndarray:
        """The ``num_samples`` dataset indices of epoch ``epoch`` (``int64``)."""
        rng = np.random.default_rng(derive_seed(seed, epoch, _STREAM))
        n, m = len(self.labels), self.num_samples
        if self.power == 1.0:
            passes = -(-m // n)
            return np.concatenate([rng.permutation(n) for _ in range(passes)])[:m]
        classes = rng.choice(len(self.class_probabilities), size=m, p=self.class_probabilities)
        within = np.floor(rng.random(m) * self.class_counts[classes]).astype(np.int64)
        return self._by_class[self._starts[classes] + within]
