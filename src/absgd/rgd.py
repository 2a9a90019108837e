r"""RGD: re-weighted gradient descent, a second per-sample weighting rule for comparisons.

Kumar, Majmundar, Nagaraj, Suggala, "Stochastic Re-weighted Gradient Descent via
Distributionally Robust Optimization", arXiv 2306.09222. Each sample of a batch gets the
weight ``r_i = exp(min(l_i, τ) / (τ + 1))`` on its detached loss, with no state across batches,
and the step is taken on ``(1/B) Σ r_i l_i`` (or, with ``normalize=True``, on
``Σ r_i l_i / Σ r_i``). Unlike ABSGD there is no moving-average normaliser, and the clip at τ
bounds every weight by ``exp(τ/(τ+1)) < e``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from absgd.weighting import _check_losses

__all__ = ["RGDWeighting", "rgd_weights"]


def _check_tau(tau: float) -> float:
    if not (isinstance(tau, (int, float)) and tau > 0 and math.isfinite(tau)):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    return float(tau)


def rgd_weights(losses: Tensor, tau: float = 1.0, *, normalize: bool = False) -> Tensor:
    r"""Detached float32 weights ``exp(min(l, τ)/(τ+1)) / B`` (or ``/ Σ`` with ``normalize``).

    >>> rgd_weights(torch.tensor([0.0, 3.0]), tau=1.0) * 2  # exp(0), exp(min(3, 1)/2)
    tensor([1.0000, 1.6487])
    """
    _check_losses(losses)
    tau = _check_tau(tau)
    raw = torch.exp(losses.detach().to(torch.float32).clamp(max=tau) / (tau + 1.0))
    return raw / raw.sum() if normalize else raw / losses.numel()


class RGDWeighting(nn.Module):
    """Stateless RGD weighting with the interface of :class:`absgd.ABWeighting`.

    ``forward(losses)`` returns ``Σ_i w_i l_i`` with the detached weights of
    :func:`rgd_weights`; ``last_weights`` holds them.
    """

    def __init__(self, tau: float = 1.0, *, normalize: bool = False) -> None:
        super().__init__()
        self.tau = _check_tau(tau)
        self.normalize = bool(normalize)
        self.last_weights: Tensor | None = None

    def weights(self, losses: Tensor) -> Tensor:
        self.last_weights = rgd_weights(losses, self.tau, normalize=self.normalize)
        return self.last_weights

    def weighted_sum(self, values: Tensor, weights: Tensor) -> Tensor:
        """``Σ_i w_i v_i`` in float32."""
        return (weights * values.to(torch.float32)).sum()

    def forward(self, losses: Tensor) -> Tensor:
        return self.weighted_sum(losses, self.weights(losses))

    def extra_repr(self) -> str:
        return f"tau={self.tau}, normalize={self.normalize}"
