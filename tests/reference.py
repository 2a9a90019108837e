"""Independent float64 reference of the ABSGD weighting, written from the paper's formulas.

Qi et al., TMLR 2023, Algorithm 1:
    s_t = (1 - γ) s_{t-1} + γ α mean_i exp(l_i / λ),   p_i = exp(l_i / λ) / (B s_t).
``init="first_batch"`` sets s_1 = α m_1; ``init="zero"`` starts from s_0 = 0.
"""

from __future__ import annotations

import math

import numpy as np


def reference_weights(
    batches: list[np.ndarray],
    lam: float,
    *,
    gamma: float = 0.9,
    alpha: float = 1.0,
    init: str = "first_batch",
) -> tuple[list[np.ndarray], list[float]]:
    """Weights and ``s_t`` after each batch, in float64 with plain (not log-space) maths."""
    s = 0.0
    weights, normalizers = [], []
    for t, losses in enumerate(batches):
        losses = np.asarray(losses, dtype=np.float64)
        if math.isinf(lam):
            weights.append(np.full(len(losses), 1.0 / len(losses)))
            normalizers.append(float("nan"))
            continue
        e = np.exp(losses / lam)
        m = e.mean()
        s = alpha * m if (init == "first_batch" and t == 0) else (1 - gamma) * s + gamma * alpha * m
        weights.append(e / (len(losses) * s))
        normalizers.append(s)
    return weights, normalizers
