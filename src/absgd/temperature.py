r"""λ from a target effective sample size: the temperature that makes a batch's weights as
concentrated as asked, whatever the scale of the loss.

For exponent inputs ``v_1 … v_B`` (per-sample losses, times the class weight when it sits
inside the exponent) the ABSGD weights are ``w_i ∝ exp(v_i / λ)``. Their normalised effective
sample size::

    ESS(λ) = (Σ w)² / (B · Σ w²) = exp(-D₂(w ‖ uniform))

falls monotonically as ``|λ|`` shrinks, from 1 (``|λ| → ∞``, uniform) to ``k/B`` (``λ → 0``,
all weight on the ``k`` samples tied at the largest ``sign(λ)·v``). :func:`solve_lam` returns
the ``|λ|`` with ``ESS(λ) = e`` for a target ``e ∈ (0, 1]``. Fixing ``e`` instead of λ bounds
the divergence of the weights from uniform: it is the constrained (Rényi-2 ball) form of the
KL-penalised DRO problem that ABSGD solves, with λ its multiplier, in the spirit of the
per-batch constrained DRO estimators of Levy, Carmon, Duchi and Sidford, "Large-Scale Methods
for Distributionally Robust Optimization", NeurIPS 2020. Qi et al., "Attentional-Biased
Stochastic Gradient Descent", TMLR 2023 (arXiv 2012.06951) is the method it tunes.

The solution is scale- and shift-free: with ``a = sign·v``, ``u = (a - max a) / (max a - min a)
∈ [-1, 0]`` and ``t = (max a - min a) / |λ|``, ESS depends on ``t`` and ``u`` only, so
multiplying every loss by ``k > 0`` multiplies λ by ``k`` and leaves the weights unchanged.

Numerics. ESS is evaluated on a grid of 64 values of ``t`` spaced evenly in ``log t`` over
``[1e-2, 1e4]``, then on 32 values inside the bracketing interval, and ``log t`` is
interpolated linearly between the two points around ``e``: no host synchronisation, no
data-dependent loop, and under ``torch.distributed`` three small all-reduces make every rank
solve for the concatenated global batch. Targets the grid cannot reach are clamped to its
ends (ESS within 3e-5 of 1 at ``t = 1e-2``; ``t = 1e4`` is "all weight on the top samples").
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["ess_at", "solve_lam", "validate_target_ess"]

_T_MIN, _T_MAX = 1e-2, 1e4
_COARSE, _FINE = 64, 32


def validate_target_ess(target: float) -> float:
    """Return the target as a float, or raise ``ValueError`` unless it is in (0, 1]."""
    ok = isinstance(target, (int, float)) and not isinstance(target, bool)
    if not (ok and 0.0 < float(target) <= 1.0):
        raise ValueError(
            f"target_ess must be a number in (0, 1] (the fraction of the batch that carries "
            f"the weight: 1 is plain SGD, 0.5 half the batch), got {target!r}"
        )
    return float(target)


def ess_at(values: Tensor, lam: float) -> float:
    """ESS of ``w ∝ exp(values / lam)`` in float64 (a direct reference, for tests and docs).

    >>> round(ess_at(torch.tensor([0.0, 0.0, 1.0, 1.0]), 1e-9), 6)  # two samples tied at the top
    0.5
    """
    z = values.detach().double() / lam
    w = torch.exp(z - z.max())
    return float(w.sum() ** 2 / (w.numel() * (w * w).sum()))


def _ess_on_grid(u: Tensor, t: Tensor, sync: bool, group: dist.ProcessGroup | None) -> Tensor:
    """ESS of ``exp(t_k u)`` for every ``t_k`` (``u ≤ 0`` with its maximum 0 somewhere)."""
    e1 = torch.exp(t[:, None] * u[None, :])
    stats = torch.cat([e1.sum(1), (e1 * e1).sum(1), u.new_full((1,), u.numel())])
    if sync:
        dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
    k = t.numel()
    return stats[:k] ** 2 / (stats[2 * k] * stats[k : 2 * k])


def _bracket(ess: Tensor, t: Tensor, target: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The grid points ``t_lo ≤ t_hi`` around ``target`` and their ESS (ESS falls with t)."""
    above = (ess > target).sum()  # grid points still above the target: the first `above`
    hi = above.clamp(max=t.numel() - 1)
    lo = (above - 1).clamp(min=0)
    return t[lo], t[hi], ess[lo], ess[hi]


def solve_lam(
    values: Tensor,
    target_ess: float,
    *,
    sign: float = 1.0,
    sync: bool = False,
    group: dist.ProcessGroup | None = None,
) -> Tensor:
    r"""``|λ|`` such that ``w ∝ exp(sign · values / |λ|)`` has normalised ESS ``target_ess``.

    Args:
        values: the exponent inputs ``v`` of one batch, shape ``(B,)`` (detached here).
        target_ess: ``e ∈ (0, 1]``; 1 gives ``inf`` (uniform weights).
        sign: +1 up-weights high values (imbalance), -1 down-weights them (label noise).
        sync: solve for the batch concatenated over every rank of ``group``; every rank gets
            the same λ.

    Returns:
        A float32 scalar tensor on ``values``' device: ``|λ|``; ``inf`` when every value is
        equal, when ``target_ess == 1``, and when a value is NaN or infinite (such a batch
        carries no scale; :class:`absgd.ABWeighting` refuses it and keeps its λ).

    Example:
        >>> losses = torch.tensor([0.1, 0.3, 0.2, 2.5, 0.4, 0.1, 0.2, 0.6])
        >>> lam = solve_lam(losses, 0.5)
        >>> round(ess_at(losses, float(lam)), 3)
        0.5
        >>> bool(torch.isclose(solve_lam(10 * losses, 0.5), 10 * lam))  # scale-free
        True
    """
    target = validate_target_ess(target_ess)
    a = values.detach().to(torch.float32).flatten() * (1.0 if sign > 0 else -1.0)
    ends = torch.stack([a.max(), -a.min()])
    if sync:
        dist.all_reduce(ends, op=dist.ReduceOp.MAX, group=group)
    top, spread = ends[0], ends[0] + ends[1]
    if target >= 1.0:
        return torch.full_like(spread, math.inf)
    u = (a - top) / spread.clamp(min=torch.finfo(torch.float32).tiny)
    log_t = torch.linspace(math.log(_T_MIN), math.log(_T_MAX), _COARSE, device=a.device)
    lo, hi, _, _ = _bracket(_ess_on_grid(u, log_t.exp(), sync, group), log_t, target)
    log_t = lo + (hi - lo) * torch.linspace(0.0, 1.0, _FINE, device=a.device)
    lo, hi, e_lo, e_hi = _bracket(_ess_on_grid(u, log_t.exp(), sync, group), log_t, target)
    gap = e_lo - e_hi
    frac = torch.where(gap > 0, (e_lo - target) / gap.clamp(min=1e-30), torch.zeros_like(gap))
    t = torch.exp(lo + frac.clamp(0.0, 1.0) * (hi - lo))
    lam = spread / t
    return torch.where(spread > 0, lam, torch.full_like(lam, math.inf))
