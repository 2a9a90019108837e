r"""How :class:`absgd.sklearn.ABSGDClassifier` reaches the optimum of its objective.

- :func:`exact_objective`, :class:`FullBatchProblem` (any network, autograd) and
  :func:`lbfgs`: the full-batch risk
  ``R_λ(v) + (α/2) Σ ‖W‖²`` (:func:`absgd.risk.entropic_risk`, the objective ABSGD estimates
  on mini-batches) minimised by L-BFGS in float64, for data that fits in memory; a linear
  model with cross-entropy takes the closed forms of :mod:`absgd.sklearn._linear`.
- :func:`train_epoch`: one pass of mini-batch ABSGD / ABAdam steps (``solver="sgd"`` /
  ``"adam"``), for streams and large data.
- :class:`Plateau`: the stopping rule and learning-rate reduction of the mini-batch solvers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.optimize
import torch
from torch import Tensor, nn

from absgd.risk import entropic_risk
from absgd.sklearn._data import Rows, batches
from absgd.sklearn._network import l2_penalty
from absgd.weighting import ABWeighting

DIVERGED = (
    "training diverged: a per-sample loss is NaN or infinite (that batch did not update the "
    "model). Lower learning_rate, standardise X (e.g. StandardScaler in a Pipeline) or use "
    "solver='lbfgs'"
)


def exponent_inputs(losses: Tensor, u: Tensor | None, placement: str) -> Tensor:
    """What the weights are computed from: ``u·l`` inside, ``l`` outside (or unweighted)."""
    return losses if u is None or placement == "outside" else u * losses


def exact_objective(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    u: Tensor | None,
    loss_fn: nn.Module,
    lam: float,
    placement: str,
    alpha: float,
) -> tuple[Tensor, Tensor]:
    r"""The full-batch objective and the detached exponent inputs ``v``.

    Inside (or without weights): ``R_λ(u·l) = λ log mean exp(u_i l_i / λ)``. Outside:
    ``ū · λ log Σ q_i exp(l_i / λ)`` with ``q ∝ u``, the tilted risk of the weighted
    empirical distribution, whose stationary points are those of the mini-batch step
    ``Σ p_i u_i l_i`` with ``p ∝ exp(l/λ)`` (the two gradients differ by a positive scalar).
    Both equal ``mean u_i l_i`` at λ = ∞. Plus ``(α/2) Σ ‖W‖²``.
    """
    losses = loss_fn(model(X), y)
    v = exponent_inputs(losses, u, placement)
    if u is None or placement == "inside":
        risk = entropic_risk(v, lam)
    else:
        risk = u.mean() * entropic_risk(losses, lam, weights=u)
    return risk + l2_penalty(model, alpha), v.detach()


class LBFGSResult(NamedTuple):
    n_iter: int
    converged: bool
    values: list[float]  # the objective after every iteration


def lbfgs(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, LBFGSResult]:
    """Minimise with scipy's L-BFGS-B under scikit-learn's ``LogisticRegression`` rule.

    It stops when the largest gradient component is below ``tol``, when the objective makes
    no relative progress, or after ``max_iter`` iterations (not converged).
    """
    values: list[float] = []
    result = scipy.optimize.minimize(
        value_and_grad,
        x0,
        jac=True,
        method="L-BFGS-B",
        options={
            "maxiter": max_iter,
            "maxls": 50,
            "gtol": tol,
            "ftol": 64 * np.finfo(float).eps,
        },
        callback=lambda intermediate_result: values.append(float(intermediate_result.fun)),
    )
    return np.asarray(result.x), LBFGSResult(int(result.nit), int(result.status) == 0, values)


class FullBatchProblem:
    """The full-batch objective of any network and loss, by autograd in float64.

    ``value_and_grad(theta, lam)`` evaluates :func:`exact_objective` at the flat parameter
    vector ``theta``; ``exponent_inputs(theta)`` gives ``v`` there; ``write(theta, model)``
    copies ``theta`` into a network of the same shape. The interface of the closed forms in
    :mod:`absgd.sklearn._linear`, whose coordinates are the network's own here.
    """

    def __init__(
        self,
        model: nn.Module,
        X: Tensor,
        y: Tensor,
        u: Tensor | None,
        loss_fn: nn.Module,
        placement: str,
        alpha: float,
    ) -> None:
        self.model = model
        self.params = [p for p in model.parameters()]
        self.X, self.y, self.u, self.loss_fn = X, y, u, loss_fn
        self.placement, self.alpha = placement, alpha
        self.theta0 = (
            torch.cat([p.detach().reshape(-1) for p in self.params])
            .to("cpu", torch.float64)
            .numpy()
        )

    def _assign(self, theta: np.ndarray) -> None:
        write(theta, self.model)

    def to_network(self, theta: np.ndarray) -> np.ndarray:
        """The network's flat parameters (this problem works in them)."""
        return theta

    def value_and_grad(self, theta: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
        self._assign(theta)
        value, _ = exact_objective(
            self.model, self.X, self.y, self.u, self.loss_fn, lam, self.placement, self.alpha
        )
        grads = torch.autograd.grad(value, self.params)
        flat = torch.cat([g.reshape(-1) for g in grads]).to("cpu", torch.float64)
        return float(value.detach()), flat.numpy()

    def exponent_inputs(self, theta: np.ndarray) -> np.ndarray:
        self._assign(theta)
        with torch.no_grad():
            losses = self.loss_fn(self.model(self.X), self.y)
        v = exponent_inputs(losses, self.u, self.placement)
        return v.to("cpu", torch.float64).numpy()


def ess(values: np.ndarray, lam: float) -> float:
    """Normalised effective sample size of ``w ∝ exp(v/λ)`` (1 for λ = ±∞)."""
    if math.isinf(lam) or math.isnan(lam):
        return 1.0
    z = np.asarray(values, dtype=np.float64) / lam
    w = np.exp(z - z.max())
    return float(w.sum() ** 2 / (len(w) * (w * w).sum()))


def solve_lam_exact(values: np.ndarray, target: float, sign: float) -> float:
    """``|λ|`` with ``ESS(exp(sign·v/|λ|)) = target`` on a whole data set, in float64.

    The full-batch counterpart of :func:`absgd.temperature.solve_lam` (same definition and
    scale-free form ``t = spread/|λ|``), solved by Brent's method on ``log t`` to 1e-10;
    ``inf`` when every value is equal or ``target >= 1``.
    """
    a = sign * np.asarray(values, dtype=np.float64)
    spread = float(a.max() - a.min())
    if target >= 1.0 or not spread > 0:
        return math.inf
    u = (a - a.max()) / spread

    def gap(log_t: float) -> float:
        w = np.exp(math.exp(log_t) * u)
        return float(w.sum() ** 2 / (len(w) * (w * w).sum())) - target

    lo, hi = math.log(1e-8), math.log(1e8)
    if gap(hi) > 0:  # even λ → 0 keeps more than the target (many ties at the top)
        return spread / math.exp(hi)
    log_t = scipy.optimize.brentq(gap, lo, hi, xtol=1e-10)
    return spread / math.exp(log_t)


def write(theta: np.ndarray, model: nn.Module) -> None:
    """Copy a flat parameter vector into ``model``'s parameters (in their dtype and device)."""
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            part = torch.from_numpy(np.array(theta[offset : offset + p.numel()]))
            p.copy_(part.view_as(p).to(device=p.device, dtype=p.dtype))
            offset += p.numel()


def train_epoch(
    model: nn.Module,
    weighting: ABWeighting,
    rows: Rows,
    y: Tensor,
    u: Tensor | None,
    order: np.ndarray,
    batch_size: int,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    placement: str,
    alpha: float,
) -> tuple[float, int]:
    """One pass over the rows ``order`` in mini-batches of ABSGD / ABAdam steps.

    Each step is on ``Σ p_i v_i + (α/2) Σ ‖W‖²`` with the weighting's detached ``p``.
    Returns the mean step objective over the batches and the number of rows seen.
    """
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=y.device)
    n_batches = 0
    for idx in batches(order, batch_size):
        index = torch.from_numpy(idx).to(y.device)
        losses = loss_fn(model(rows(idx)), y[index])
        u_batch = None if u is None else u[index]
        v = losses if u_batch is None else losses * u_batch
        try:
            p = weighting.weights(exponent_inputs(losses, u_batch, placement))
        except ValueError as exc:
            raise ValueError(DIVERGED) from exc
        objective = weighting.weighted_sum(v, p) + l2_penalty(model, alpha)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        total += objective.detach()
        n_batches += 1
    return float(total) / max(n_batches, 1), len(order)


class Plateau:
    """Stopping rule of the mini-batch solvers (scikit-learn's MLP rule, on the objective).

    An epoch improves when its objective is below the best so far by more than ``tol``.
    After ``patience`` epochs without improvement: ``"constant"`` stops (converged);
    ``"adaptive"`` divides the learning rate by 5 and goes on, at most ``max_cuts`` times,
    and the plateau after that stops.
    """

    def __init__(self, tol: float, patience: int, schedule: str, max_cuts: int = 3) -> None:
        self.tol, self.patience, self.schedule, self.max_cuts = tol, patience, schedule, max_cuts
        self.best, self.stale, self.cuts = math.inf, 0, 0

    def update(self, value: float) -> str:
        """``"go"``, ``"cut"`` (divide the learning rate by 5) or ``"stop"``."""
        if value > self.best - self.tol:
            self.stale += 1
        else:
            self.stale = 0
        self.best = min(self.best, value)
        if self.stale < self.patience:
            return "go"
        self.stale = 0
        if self.schedule == "adaptive" and self.cuts < self.max_cuts:
            self.cuts += 1
            return "cut"
        return "stop"
