"""Paired t intervals and mean ± std, as the summary tables print them."""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence


def t_central(x: float, df: int) -> float:
    """``P(|T| ≤ x)`` for Student's t with ``df`` degrees of freedom, ``x ≥ 0``.

    The finite sums of Abramowitz & Stegun 26.7.3–4 in ``θ = atan(x / √df)``: for even
    ``df``, ``sin θ · Σ_{k<df/2} c_k cos^{2k} θ`` with ``c_0 = 1``, ``c_k = c_{k−1}(2k−1)/(2k)``;
    for odd ``df``, ``(2/π)(θ + sin θ · Σ_{k<(df−1)/2} d_k cos^{2k+1} θ)`` with ``d_0 = 1``,
    ``d_k = d_{k−1}(2k)/(2k+1)``.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    theta = math.atan(x / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c * c * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    term, total = c, 0.0
    for k in range((df - 1) // 2):
        if k:
            term *= c * c * (2 * k) / (2 * k + 1)
        total += term
    return (2 / math.pi) * (theta + s * total)


@functools.cache  # one bisection per (df, level), not one per table cell
def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom: the
    ``x`` with ``P(|T| ≤ x) = level`` (bisection on :func:`t_central`, to 1e-12 relative).
    Levels whose quantile exceeds 1e12 (e.g. 1 − 1e-16) are refused: no interval needs them."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie strictly between 0 and 1, got {level}")
    lo, hi = 0.0, 1.0
    while t_central(hi, df) < level:
        lo, hi = hi, 2 * hi
        if hi > 1e12:
            raise ValueError(
                f"confidence level {level} is too close to 1 for {df} degrees of freedom"
            )
    for _ in range(200):  # each halves the bracket; 200 is far more than 1e-12 relative needs
        if hi - lo <= 1e-12 * hi:
            break
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_central(mid, df) < level else (lo, mid)
    return (lo + hi) / 2


def paired(diffs: list[float], level: float = 0.95) -> str:
    """``mean [low, high]`` of paired differences (in points) with a ``level`` t interval."""
    n = len(diffs)
    if n == 0:
        return "–"
    mean = statistics.mean(diffs)
    if n == 1:
        return f"{mean:+.2f} (1 seed)"
    half = t_quantile(n - 1, level) * statistics.stdev(diffs) / n**0.5
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


def mean_std(values: Sequence[float | None]) -> str:
    """``mean ± std`` of fractions, in %, over the values that are not ``None``."""
    vals = [100 * v for v in values if v is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"
