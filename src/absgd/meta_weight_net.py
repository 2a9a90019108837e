r"""Meta-Weight-Net: meta-learned sample weights, the baseline ABSGD is compared against for cost.

Shu, Xie, Yi, Zhao, Zhou, Xu, Meng, "Meta-Weight-Net: Learning an Explicit Mapping for Sample
Weighting", NeurIPS 2019, Algorithm 1. A small network ``V(l; Θ)`` (1 → 100 → 1, ReLU,
sigmoid) maps each sample's loss to its weight; it is trained so that one virtual SGD step of
the classifier on the weighted loss lowers the loss on a small balanced *meta* set:

1. virtual step: ``θ̂(Θ) = θ - α ∇_θ Σ_i w_i(Θ) l_i(θ)`` with the normalised weights
   ``w_i = V(l_i; Θ) / Σ_k V(l_k; Θ)`` (kept differentiable in Θ; ``V`` sees the detached
   loss, as in the paper's update equation);
2. meta step: ``Θ ← Θ - β ∇_Θ mean_j l^meta_j(θ̂(Θ))`` (a second-order gradient through 1.);
3. real step: ``θ ← θ - α ∇_θ Σ_i w_i l_i(θ)`` with the weights of the updated ``Θ``, detached.

The defaults follow the authors' class-imbalance code: weights normalised to sum to one in
both steps, and the weight network trained by Nesterov SGD with learning rate 1e-5, momentum
0.9, weight decay 5e-4. With the 1e-3 of their label-noise setting, 2 of 3 Fashion-MNIST-LT
runs here collapsed within ten steps (the network learned to weight only already-fitted
samples and the classifier predicted a single class).

Each step costs three forward and three backward passes of the classifier, one of them through
a second-order graph, where ABSGD costs one of each: the comparison ``benchmarks/overhead.py``
measures. The virtual and meta passes run on copies of the batch-norm buffers, so the running
statistics are updated by the real step only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["MetaWeightNet", "WeightNet"]

Loss = Callable[[Tensor, Tensor], Tensor]


class WeightNet(nn.Module):
    """``V(l; Θ)``: loss → weight in (0, 1), an MLP with one hidden layer (Shu et al. 2019)."""

    def __init__(self, hidden: int = 100) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.body = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, losses: Tensor) -> Tensor:
        return torch.sigmoid(self.body(losses.unsqueeze(1))).squeeze(1)


def _normalised(weights: Tensor) -> Tensor:
    """``w / Σ w`` (left as is when the sum is 0, as the authors' code does)."""
    total = weights.sum()
    return weights / torch.where(total > 0, total, torch.ones_like(total))


class MetaWeightNet:
    """The Meta-Weight-Net training step for ``model`` with per-sample ``loss``.

    Args:
        model: the classifier (its parameters are updated by ``optimizer``).
        loss: per-sample loss ``loss(logits, targets) -> (B,)`` for the training batches.
        optimizer: the classifier's optimiser (its learning rate is also the virtual step's).
        hidden: hidden units of the weight network.
        meta_lr, meta_momentum, meta_weight_decay: Nesterov SGD of the weight network (the
            authors' class-imbalance settings 1e-5, 0.9, 5e-4).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Loss,
        optimizer: torch.optim.Optimizer,
        *,
        hidden: int = 100,
        meta_lr: float = 1e-5,
        meta_momentum: float = 0.9,
        meta_weight_decay: float = 5e-4,
    ) -> None:
        if meta_lr <= 0:
            raise ValueError(f"meta_lr must be > 0, got {meta_lr}")
        self.model, self.loss, self.optimizer = model, loss, optimizer
        first = next(model.parameters())
        self.weight_net = WeightNet(hidden).to(device=first.device, dtype=first.dtype)
        self.meta_optimizer = torch.optim.SGD(
            self.weight_net.parameters(),
            lr=meta_lr,
            momentum=meta_momentum,
            nesterov=meta_momentum > 0,
            weight_decay=meta_weight_decay,
        )
        self.last_weights: Tensor | None = None

    def _virtual_params(
        self, x: Tensor, y: Tensor, lr: float, buffers: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        logits = functional_call(self.model, {**params, **buffers}, (x,))
        losses = self.loss(logits, y)
        objective = (_normalised(self.weight_net(losses.detach())) * losses).sum()
        grads = torch.autograd.grad(objective, list(params.values()), create_graph=True)
        return {n: p - lr * g for (n, p), g in zip(params.items(), grads, strict=True)}

    def step(self, x: Tensor, y: Tensor, x_meta: Tensor, y_meta: Tensor) -> Tensor:
        """One step of Algorithm 1; returns the real step's weighted loss (detached)."""
        lr = float(self.optimizer.param_groups[0]["lr"])
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        virtual = self._virtual_params(x, y, lr, buffers)
        meta_logits = functional_call(self.model, {**virtual, **buffers}, (x_meta,))
        meta_loss = nn.functional.cross_entropy(meta_logits.float(), y_meta)
        self.meta_optimizer.zero_grad(set_to_none=True)
        meta_loss.backward()
        self.meta_optimizer.step()
        self.model.zero_grad(set_to_none=True)  # the meta backward reached θ too

        losses = self.loss(self.model(x), y)
        with torch.no_grad():
            weights = _normalised(self.weight_net(losses.detach()))
        self.last_weights = weights
        loss = (weights * losses).sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def state_dict(self) -> dict[str, object]:
        return {
            "weight_net": self.weight_net.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.weight_net.load_state_dict(state["weight_net"])  # type: ignore[arg-type]
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])  # type: ignore[arg-type]
