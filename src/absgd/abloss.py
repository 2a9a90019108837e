"""``ABLoss``: any per-sample criterion wrapped with the ABSGD weighting.

Qi et al., "Attentional-Biased Stochastic Gradient Descent", TMLR 2023 (arXiv 2012.06951).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.distributed as dist
from torch import Tensor, nn

from absgd.weighting import ABWeighting, Init

__all__ = ["ABLoss"]

Criterion = Callable[[Tensor, Tensor], Tensor]


class ABLoss(nn.Module):
    r"""``criterion(outputs, targets) -> (B,)`` per-sample losses, weighted by ABSGD.

    ``forward(outputs, targets)`` computes ``l = criterion(outputs, targets)`` and returns
    ``Σ_i p_i l_i`` with the attentional weights of :class:`absgd.ABWeighting`
    (``p_i = exp(l_i/λ) / (B s_t)``, detached). All keyword options are those of
    :class:`~absgd.ABWeighting`; the weighting is available as ``.weighting`` and its state is
    part of this module's ``state_dict()``.

    Args:
        criterion: a callable returning one loss per sample, for example
            ``nn.CrossEntropyLoss(reduction="none")``. A criterion whose ``reduction``
            attribute is not ``"none"`` is refused.
        lam: temperature λ (``math.inf`` = plain SGD, ``< 0`` for label noise); with
            ``target_ess`` only its sign (or ∞) counts and λ is solved from the batch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> loss_fn = ABLoss(nn.CrossEntropyLoss(reduction="none"), lam=2.0)
        >>> logits, targets = torch.randn(16, 5, requires_grad=True), torch.randint(0, 5, (16,))
        >>> loss = loss_fn(logits, targets)
        >>> loss.backward()
        >>> loss_fn.last_weights.shape
        torch.Size([16])
    """

    def __init__(
        self,
        criterion: Criterion,
        lam: float,
        *,
        gamma: float = 0.9,
        alpha: float = 1.0,
        init: Init = "first_batch",
        max_weight: float | None = None,
        uniform: float = 0.0,
        target_ess: float | None = None,
        lam_rate: float = 1.0,
        rescale: bool | None = None,
        check_finite: bool = True,
        sync: bool | None = None,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        if not callable(criterion):
            raise TypeError(f"criterion must be callable, got {type(criterion).__name__}")
        reduction = getattr(criterion, "reduction", "none")
        if reduction != "none":
            raise ValueError(
                f"criterion has reduction={reduction!r}; ABSGD weights each sample, so build "
                "it with reduction='none' (for example nn.CrossEntropyLoss(reduction='none'))"
            )
        self.criterion = criterion
        self.weighting = ABWeighting(
            lam,
            gamma=gamma,
            alpha=alpha,
            init=init,
            max_weight=max_weight,
            uniform=uniform,
            target_ess=target_ess,
            lam_rate=lam_rate,
            rescale=rescale,
            check_finite=check_finite,
            sync=sync,
            process_group=process_group,
        )

    @property
    def lam(self) -> float:
        """Temperature λ in force in the wrapped weighting (settable, for schedules)."""
        return self.weighting.lam

    @lam.setter
    def lam(self, value: float) -> None:
        self.weighting.lam = value

    @property
    def last_weights(self) -> Tensor | None:
        """Detached weights ``p`` of the last batch."""
        return self.weighting.last_weights

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        losses = self.criterion(outputs, targets)
        if losses.dim() != 1 or losses.shape[0] != outputs.shape[0]:
            raise ValueError(
                f"criterion returned shape {tuple(losses.shape)} for a batch of "
                f"{outputs.shape[0]}; it must return one loss per sample (reduction='none')"
            )
        return self.weighting(losses)
