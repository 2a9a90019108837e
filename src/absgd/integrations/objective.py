r"""The loss a trainer integration computes: ABSGD with λ scheduled by epoch.

:class:`ScheduledObjective` is an :class:`absgd.Objective` (per-sample loss, optional class
weights inside or outside the exponent, :class:`absgd.ABWeighting`) plus a λ schedule of the
epoch — by default the two-stage schedule of Qi et al., "Attentional-Biased Stochastic
Gradient Descent", TMLR 2023 (arXiv 2012.06951): plain SGD (λ = ∞) before ``switch_epoch``,
then ``lam``. It is an ``nn.Module`` whose ``state_dict()`` holds the ABSGD normaliser (and the
smoothed λ of ``target_ess``), so a checkpoint of it resumes exactly; under
``torch.distributed`` the weighting's statistic is all-reduced, so N processes compute what
one process computes on the global batch.

In eval mode (``.eval()``) it returns the plain mean loss and leaves the ABSGD state alone, so
a trainer's evaluation loop does not move the normaliser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from absgd.class_weights import ClassWeightSchedule, StaticWeights
from absgd.losses import build_loss
from absgd.objective import ClassWeightNorm, Objective, Placement
from absgd.schedules import Constant, Schedule, two_stage
from absgd.weighting import ABWeighting

__all__ = ["ScheduledObjective"]


class ScheduledObjective(torch.nn.Module):
    """ABSGD on a per-sample loss, with λ a function of the (0-based) epoch.

    Args:
        lam: λ after the switch (``math.inf``: plain training; ``< 0``: label noise). With
            ``target_ess`` only its sign counts.
        switch_epoch: plain training (λ = ∞) for epochs ``< switch_epoch``; ``None`` or 0:
            ``lam`` from the start.
        target_ess: solve λ per batch for this normalised effective sample size instead
            (:mod:`absgd.temperature`).
        loss: a name of :data:`absgd.losses.LOSSES` (default cross-entropy).
        loss_options: keyword options of the loss.
        class_weights: one fixed weight per class, or a class-weight schedule of the epoch
            (e.g. :class:`absgd.class_weights.DRW`), or ``None``.
        placement: ``"inside"`` (the weights enter the exponent) or ``"outside"``.
        normalize_class_weights: divide by the batch mean of the class weights (as
            ``cross_entropy(weight=...)``); ``"weighted"`` by their mean under ABSGD's
            weights; ``False`` gives the raw ``Σ p_i c_i l_i``.
        schedule: any λ schedule of the epoch (:mod:`absgd.schedules`), instead of ``lam`` and
            ``switch_epoch``.
        weighting_options: further options of :class:`absgd.ABWeighting` (``gamma``,
            ``alpha``, ``init``, ``lam_rate``, ``rescale``, ``max_weight``, ``uniform``,
            ``sync`` ...).

    Example:
        >>> objective = ScheduledObjective(lam=1.0, switch_epoch=2)
        >>> objective.set_epoch(0), objective.set_epoch(2)
        (inf, 1.0)
        >>> loss = objective(torch.randn(8, 3), torch.randint(0, 3, (8,)))
    """

    def __init__(
        self,
        lam: float = 1.0,
        *,
        switch_epoch: float | None = None,
        target_ess: float | None = None,
        loss: str = "ce",
        loss_options: Mapping[str, Any] | None = None,
        class_weights: Sequence[float] | Tensor | ClassWeightSchedule | None = None,
        placement: Placement = "inside",
        normalize_class_weights: ClassWeightNorm = True,
        schedule: Schedule | None = None,
        weighting_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if schedule is None:
            schedule = Constant(lam) if not switch_epoch else two_stage(lam, switch=switch_epoch)
        self.schedule = schedule
        options = dict(weighting_options or {})
        class_weighting: ClassWeightSchedule | None = None
        if isinstance(class_weights, (Sequence, Tensor)):
            class_weighting = StaticWeights(tuple(float(w) for w in class_weights))
        elif class_weights is not None:
            class_weighting = class_weights
        loss_options = dict(loss_options or {})
        loss_options["reduction"] = "none"
        self.objective = Objective(
            build_loss(loss, **loss_options),
            class_weighting=class_weighting,
            weighting=ABWeighting(schedule(0), target_ess=target_ess, **options),
            placement=placement,
            normalize_class_weights=normalize_class_weights,
        )
        self.epoch: float = 0.0

    @property
    def weighting(self) -> ABWeighting:
        weighting = self.objective.weighting
        assert isinstance(weighting, ABWeighting)
        return weighting

    @property
    def lam(self) -> float:
        """The λ in force (with ``target_ess``: solved on the last batch)."""
        return float(self.weighting.lam)

    def set_epoch(self, epoch: float) -> float:
        """Apply the schedule for ``epoch`` (0-based); returns the λ it sets."""
        self.epoch = float(epoch)
        self.objective.set_epoch(epoch)
        lam = float(self.schedule(epoch))
        self.weighting.lam = lam
        return lam

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if not self.training:
            return self.objective.loss(logits, targets).to(torch.float32).mean()
        return self.objective(logits, targets)

    def metrics(self) -> dict[str, float]:
        """``absgd_lam`` (the λ in force) and ``absgd_ess`` (ESS of the last batch's weights,
        over the global batch under ``torch.distributed``: a collective, every rank calls it).
        """
        ess = self.weighting.global_effective_sample_size()
        return {"absgd_lam": self.lam, "absgd_ess": 1.0 if ess is None else float(ess)}

    def extra_repr(self) -> str:
        return f"schedule={self.schedule!r}, epoch={self.epoch:g}"
