"""ABSGD and ABAdam: the optimisers of the paper, with its defaults.

Qi et al., "Attentional-Biased Stochastic Gradient Descent", TMLR 2023 (arXiv 2012.06951).

The attentional weighting lives in the loss (:class:`absgd.ABWeighting` /
:class:`absgd.ABLoss`): ABSGD is momentum SGD, and ABAdam is Adam, applied to the weighted loss
``Σ p_i l_i``, exactly as Algorithm 1 of the paper. These classes are ``torch.optim.SGD`` and
``torch.optim.Adam`` with the paper's defaults, so LR schedulers, parameter groups,
``state_dict()`` and every option of the torch optimisers work unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["ABSGD", "ABAdam"]

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _check_non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


class ABSGD(torch.optim.SGD):
    """Momentum SGD for the ABSGD-weighted loss (paper defaults: momentum 0.9).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (the CIFAR-LT protocol uses 0.1 with batch 128).
        momentum: heavy-ball momentum, default 0.9 as in the paper.
        weight_decay: L2 penalty (the CIFAR-LT protocol uses 2e-4).
        nesterov: Nesterov momentum.
        **kwargs: any other option of :class:`torch.optim.SGD` (``dampening``, ``foreach``...).

    Example:
        >>> import torch
        >>> from absgd import ABLoss, ABSGD
        >>> model = torch.nn.Linear(3, 2)
        >>> opt = ABSGD(model.parameters(), lr=0.1, weight_decay=2e-4)
        >>> loss_fn = ABLoss(torch.nn.CrossEntropyLoss(reduction="none"), lam=1.0)
        >>> loss = loss_fn(model(torch.randn(4, 3)), torch.tensor([0, 1, 1, 0]))
        >>> opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(
        self,
        params: Params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        **kwargs: Any,
    ) -> None:
        _check_non_negative("lr", lr)
        _check_non_negative("momentum", momentum)
        _check_non_negative("weight_decay", weight_decay)
        if nesterov and momentum <= 0.0:
            raise ValueError(f"nesterov=True needs momentum > 0, got momentum={momentum!r}")
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            **kwargs,
        )


class ABAdam(torch.optim.Adam):
    """Adam for the ABSGD-weighted loss ("ABAdam" in the paper).

    Args:
        params: parameters or parameter groups.
        lr: learning rate, default 1e-3.
        betas, eps, weight_decay, amsgrad: as :class:`torch.optim.Adam`.
        **kwargs: any other option of :class:`torch.optim.Adam`.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        **kwargs: Any,
    ) -> None:
        _check_non_negative("lr", lr)
        _check_non_negative("weight_decay", weight_decay)
        if not (isinstance(eps, (int, float)) and eps > 0.0):
            raise ValueError(f"eps must be a number > 0, got {eps!r}")
        for i, beta in enumerate(betas):
            if not (0.0 <= beta < 1.0):
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta!r}")
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            **kwargs,
        )
