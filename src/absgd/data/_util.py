"""Small helpers shared by the data modules (private)."""

from __future__ import annotations

import math

import numpy as np


def floor_fraction(rate: float, n: int) -> int:
    """``⌊rate · n⌋`` with a 1e-9 tolerance for binary rounding (0.29·100 gives 29, not 28).

    >>> floor_fraction(0.29, 100), floor_fraction(0.4, 5000), floor_fraction(0.5, 3)
    (29, 2000, 1)
    """
    return math.floor(rate * n + 1e-9)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer keys (e.g. seed, epoch, step) with ``SeedSequence``.

    >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
    True
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
