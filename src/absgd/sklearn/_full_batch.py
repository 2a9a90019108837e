"""``solver="lbfgs"`` of :class:`~absgd.sklearn.ABSGDClassifier`: the exact optimum of the
ABSGD objective on the whole training set (:func:`absgd.risk.entropic_risk`), in float64, and
with ``target_ess`` the λ whose optimum has the target effective sample size."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from absgd.losses.softmax import CrossEntropyLoss
from absgd.sklearn._data import Rows, factors
from absgd.sklearn._linear import BinaryCEProblem, SoftmaxCEProblem, linear_ce_problem
from absgd.sklearn._network import layer_shapes, module_device
from absgd.sklearn._solvers import FullBatchProblem, ess, lbfgs, solve_lam_exact, write

if TYPE_CHECKING:
    from absgd.sklearn._estimator import ABSGDClassifier

__all__ = ["closed_form", "fit_lbfgs", "solve_target"]

_TARGET_ROUNDS = 8  # with target_ess: at most this many optima in the search for λ
_MAX_LOG_STEP = 2.0  # ... each step changing λ by a factor of at most e²


def fit_lbfgs(
    est: ABSGDClassifier,
    X: Any,
    y_idx: np.ndarray,
    sw: np.ndarray | None,
    class_w: np.ndarray | None,
    loss_fn: nn.Module,
    lam: float,
    switch: int,
) -> bool:
    """Full-batch L-BFGS in float64; returns whether the last minimisation converged."""
    device = module_device(est.model_)
    theta0 = torch.cat([p.detach().reshape(-1) for p in est.model_.parameters()])
    problem: FullBatchProblem | SoftmaxCEProblem | BinaryCEProblem
    if closed_form(est.model_, loss_fn):
        u = factors(y_idx, sw, class_w, torch.device("cpu"), torch.float64)
        problem = linear_ce_problem(
            Rows(X, torch.device("cpu"), torch.float64).all().numpy(),
            y_idx,
            len(est.classes_),
            None if u is None else u.numpy(),
            est.placement,
            est.alpha_,
            theta0.to("cpu", torch.float64).numpy(),
        )
    else:
        problem = FullBatchProblem(
            copy.deepcopy(est.model_).double(),
            Rows(X, device, torch.float64).all(),
            torch.from_numpy(y_idx).to(device),
            factors(y_idx, sw, class_w, device, torch.float64),
            copy.deepcopy(loss_fn).double(),
            est.placement,
            est.alpha_,
        )
    theta = problem.theta0

    def minimise(lam_now: float, max_iter: int, coarse: bool = False) -> bool:
        """Minimise at ``lam_now`` from ``theta``; ``coarse``: to 10 × tol (a stage)."""
        nonlocal theta
        tol = float(est.tol) * (10.0 if coarse else 1.0)
        theta, result = lbfgs(lambda t: problem.value_and_grad(t, lam_now), theta, max_iter, tol)
        est.n_iter_ += result.n_iter
        est.loss_curve_ += result.values
        if est.verbose:
            state = "converged" if result.converged else "not converged"
            last = result.values[-1] if result.values else float("nan")
            print(
                f"lbfgs, lam={lam_now:g}: {result.n_iter} iterations, objective {last:.6f}, {state}"
            )
        return result.converged

    def solved_lam(sign: float) -> float:
        """|λ| that gives the target ESS on the losses at ``theta``."""
        v = problem.exponent_inputs(theta)
        return solve_lam_exact(v, float(est.target_ess), sign)  # type: ignore[arg-type]

    tilted = not math.isinf(lam)
    if tilted and (est.lam_schedule is not None or est.target_ess is not None):
        stage = switch if est.lam_schedule is not None else est.max_iter
        minimise(math.inf, stage, coarse=True)
    if tilted and est.target_ess is not None:
        converged, lam = solve_target(
            minimise,
            solved_lam,
            lambda lam_now: ess(problem.exponent_inputs(theta), lam_now),
            lam,
            float(est.target_ess),
            est.max_iter,
        )
    else:
        converged = minimise(lam, est.max_iter - switch)
    write(problem.to_network(theta), est.model_)
    est.lam_ = lam
    est.ess_ = ess(problem.exponent_inputs(theta), lam)
    return converged


def closed_form(model: nn.Module, loss_fn: nn.Module) -> bool:
    """A linear model with plain cross-entropy: a closed form of ``_linear`` applies."""
    return (
        len(layer_shapes(model)) == 1
        and type(loss_fn) is CrossEntropyLoss
        and loss_fn.weight is None
        and loss_fn.label_smoothing == 0.0
    )


def solve_target(
    minimise: Callable[[float, int], bool],
    solved_lam: Callable[[float], float],
    ess_now: Callable[[float], float],
    lam: float,
    target: float,
    max_iter: int,
) -> tuple[bool, float]:
    """λ whose optimum has the target ESS: a secant search on ``log |λ|``.

    ``Φ(λ)`` solves the target on the losses at the optimum for λ; the answer is the fixed
    point ``Φ(λ) = λ``, found by secant steps on ``f(x) = log Φ(e^x) − x`` (the first
    step is the plain fixed-point step; every step is clipped to a factor ``e²``), each
    optimum warm-started from the last, until the weights at the optimum have an ESS
    within 0.01 of the target, at most 8 optima.
    """
    sign = 1.0 if lam > 0 else -1.0
    history: list[tuple[float, float]] = []
    converged = True
    first = solved_lam(sign)
    x = math.log(first) if math.isfinite(first) else math.inf
    for _ in range(_TARGET_ROUNDS):
        if math.isinf(x):  # equal losses: the weights are uniform already
            return minimise(math.inf, max_iter), math.inf
        converged = minimise(sign * math.exp(x), max_iter)
        if abs(ess_now(sign * math.exp(x)) - target) <= 0.01:
            return converged, sign * math.exp(x)
        solved = solved_lam(sign)
        if not math.isfinite(solved):
            return minimise(math.inf, max_iter), math.inf
        f = math.log(solved) - x
        history.append((x, f))
        step = f
        if len(history) >= 2 and history[-1][1] != history[-2][1]:
            (x0, f0), (x1, f1) = history[-2], history[-1]
            step = -f1 * (x1 - x0) / (f1 - f0)
        x = x + min(max(step, -_MAX_LOG_STEP), _MAX_LOG_STEP)
    return converged, sign * math.exp(history[-1][0])
