r"""The full-batch objective of a linear model with cross-entropy, in closed form.

The objective is that of :func:`absgd.sklearn._solvers.exact_objective`: the entropic risk
``R_λ`` of the per-sample losses (the KL-regularised DRO risk of Qi et al.,
"Attentional-Biased Stochastic Gradient Descent", TMLR 2023) plus ``(α/2) Σ ‖W‖²``, biases not
penalised. Its gradient in the logits ``z_i`` is ``c_i (P_i − Y_i)``, where ``c_i`` is the
weight of sample ``i`` in the risk's gradient (:meth:`LinearProblem.tilt`).

NumPy float64 on preloaded arrays, no autograd, few array passes per evaluation: this is what
keeps the default estimator's fit time near ``LogisticRegression``'s. Both problems work in
their own coordinates ``theta`` and map to and from the network's flat parameter vector
(W row-major, classes × features, then b) with :meth:`to_network` / :meth:`from_network`.

- :class:`SoftmaxCEProblem`: ``k ≥ 3`` classes, ``theta = [W | b]`` row by row.
- :class:`BinaryCEProblem`: two classes, one logit difference ``w = W₁ − W₀``,
  ``β = b₁ − b₀``. At every stationary point of the two-output problem ``W₀ = −W₁`` (the
  penalty splits ``w`` evenly), so ``(α/2)(‖W₀‖² + ‖W₁‖²) = (α/4)‖w‖²`` and the optimum, its
  predictions and its gradient components (hence the stopping rule) are those of the
  two-output problem, in half the dimensions.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special


class LinearProblem:
    """What the two closed forms share: the data with a column of ones, and the risk.

    ``u``: the per-sample factors (class and sample weights) or None; ``placement``:
    ``"inside"`` (``v = u·l``) or ``"outside"`` (``v = l``, the risk of the ``u``-weighted
    empirical distribution scaled by ``ū``).
    """

    def __init__(self, X: np.ndarray, u: np.ndarray | None, placement: str, alpha: float) -> None:
        n, self.d = X.shape
        self.Xb = np.empty((n, self.d + 1))
        self.Xb[:, :-1] = X
        self.Xb[:, -1] = 1.0
        self.u, self.placement, self.alpha = u, placement, alpha
        self.c_plain = np.full(n, 1.0 / n) if u is None else u / n  # c at λ = ∞
        self.log_q: np.ndarray | None = None
        if u is not None and placement == "outside":
            self.log_q = np.full(n, -np.inf)
            kept = u > 0
            self.log_q[kept] = np.log(u[kept] / u.sum())
            self.u_bar = float(u.mean())

    def tilt(self, losses: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
        """The risk of ``losses`` at ``lam`` and the weights ``c`` of its gradient.

        λ = ∞: ``mean u·l`` and ``c = u/n``. Inside (or no ``u``): ``λ log mean exp(v/λ)``
        and ``c = π·u`` with ``π = softmax(v/λ)``. Outside: ``ū λ log Σ q exp(l/λ)``,
        ``q = u/Σu``, and ``c = ū·softmax(l/λ + log q)``.
        """
        if math.isinf(lam):
            return float(self.c_plain @ losses), self.c_plain
        if self.log_q is not None:
            a = losses * (1.0 / lam)
            a += self.log_q
            top = float(a.max())
            a -= top
            np.exp(a, out=a)
            total = float(a.sum())
            a *= self.u_bar / total
            return self.u_bar * lam * (top + math.log(total)), a
        a = losses * (1.0 / lam) if self.u is None else losses * self.u * (1.0 / lam)
        top = float(a.max())
        a -= top
        np.exp(a, out=a)
        total = float(a.sum())
        a *= 1.0 / total
        if self.u is not None:
            a *= self.u
        return lam * (top + math.log(total / len(losses))), a

    def exponent_inputs(self, theta: np.ndarray) -> np.ndarray:
        """``v`` at ``theta``: ``u·l`` inside, ``l`` outside (or unweighted)."""
        losses = self.losses(theta)
        return losses if self.u is None or self.placement == "outside" else self.u * losses

    def losses(self, theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SoftmaxCEProblem(LinearProblem):
    """``k`` classes: ``z = X Wᵀ + b``, ``P = softmax(z)``; gradient
    ``[W | b]_g = (c·(P − Y))ᵀ [X | 1] + α [W | 0]``."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        u: np.ndarray | None,
        placement: str,
        alpha: float,
        network_theta: np.ndarray,
    ) -> None:
        super().__init__(X, u, placement, alpha)
        self.y, self.k = y, n_classes
        self.rows = np.arange(len(y))
        self.theta0 = self.from_network(network_theta)

    def _shifted(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``exp(z − max z)`` per row, its row sums and the losses."""
        z = self.Xb @ theta.reshape(self.k, self.d + 1).T
        z -= z.max(1, keepdims=True)
        z_true = z[self.rows, self.y]
        np.exp(z, out=z)
        sums = z.sum(1)
        losses = np.log(sums)
        losses -= z_true
        return z, sums, losses

    def losses(self, theta: np.ndarray) -> np.ndarray:
        return self._shifted(theta)[2]

    def value_and_grad(self, theta: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
        e, sums, losses = self._shifted(theta)
        risk, c = self.tilt(losses, lam)
        e *= (c / sums)[:, None]  # c·P
        e[self.rows, self.y] -= c  # c·(P − Y)
        grad = e.T @ self.Xb
        W = theta.reshape(self.k, self.d + 1)[:, : self.d]
        grad[:, : self.d] += self.alpha * W
        value = risk + 0.5 * self.alpha * float(np.einsum("ij,ij->", W, W))
        return value, grad.ravel()

    def to_network(self, theta: np.ndarray) -> np.ndarray:
        Wb = theta.reshape(self.k, self.d + 1)
        return np.concatenate([Wb[:, : self.d].ravel(), Wb[:, self.d]])

    def from_network(self, network_theta: np.ndarray) -> np.ndarray:
        W = network_theta[: self.k * self.d].reshape(self.k, self.d)
        return np.column_stack([W, network_theta[self.k * self.d :]]).ravel()


class BinaryCEProblem(LinearProblem):
    """Two classes: ``z = x·w + β``, ``l = log(1 + exp(−s z))`` with ``s = ±1`` the label's
    sign; gradient ``[w | β]_g = (c·(σ(z) − y))ᵀ [X | 1] + (α/2) [w | 0]``."""

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        u: np.ndarray | None,
        placement: str,
        alpha: float,
        network_theta: np.ndarray,
    ) -> None:
        super().__init__(X, u, placement, alpha)
        self.minus_sign = 1.0 - 2.0 * np.asarray(y, dtype=np.float64)  # −s: +1 for y = 0
        self.theta0 = self.from_network(network_theta)

    def _margins(self, theta: np.ndarray) -> np.ndarray:
        """``m = −s z``, so that ``l = log(1 + e^m)`` and ``∂l/∂z = −s σ(m)``."""
        m = self.Xb @ theta
        m *= self.minus_sign
        return m

    def losses(self, theta: np.ndarray) -> np.ndarray:
        return np.logaddexp(0.0, self._margins(theta))

    def value_and_grad(self, theta: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
        m = self._margins(theta)
        risk, c = self.tilt(np.logaddexp(0.0, m), lam)
        g = scipy.special.expit(m)
        g *= self.minus_sign
        g *= c
        grad = g @ self.Xb
        w = theta[: self.d]
        grad[: self.d] += 0.5 * self.alpha * w
        return risk + 0.25 * self.alpha * float(w @ w), grad

    def to_network(self, theta: np.ndarray) -> np.ndarray:
        half = 0.5 * theta
        return np.concatenate([-half[: self.d], half[: self.d], [-half[self.d], half[self.d]]])

    def from_network(self, network_theta: np.ndarray) -> np.ndarray:
        W = network_theta[: 2 * self.d].reshape(2, self.d)
        b = network_theta[2 * self.d :]
        return np.concatenate([W[1] - W[0], [b[1] - b[0]]])


def linear_ce_problem(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    u: np.ndarray | None,
    placement: str,
    alpha: float,
    network_theta: np.ndarray,
) -> SoftmaxCEProblem | BinaryCEProblem:
    """The closed form for ``n_classes`` (binary: one logit difference)."""
    if n_classes == 2:
        return BinaryCEProblem(X, y, u, placement, alpha, network_theta)
    return SoftmaxCEProblem(X, y, n_classes, u, placement, alpha, network_theta)
