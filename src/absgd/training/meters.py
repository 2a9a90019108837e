"""The training statistics of one epoch: loss, ABSGD's mean weight per class, the effective
sample size of its weights and the objective's step scale."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from absgd.metrics import ClassWeightMeter, EffectiveSampleSizeMeter, MeanMeter, to_jsonable
from absgd.training.distributed import DistContext

__all__ = ["EpochMeters"]


@dataclass
class EpochMeters:
    """Training statistics of the current epoch, kept on the device (no per-step sync)."""

    num_classes: int
    device: torch.device
    loss_sum: torch.Tensor = field(init=False)
    samples: torch.Tensor = field(init=False)
    weights: ClassWeightMeter = field(init=False)
    ess: EffectiveSampleSizeMeter = field(init=False)
    step_scale: MeanMeter = field(init=False)

    def __post_init__(self) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.samples = torch.zeros((), dtype=torch.int64, device=self.device)
        self.weights = ClassWeightMeter(self.num_classes, relative=True, device=self.device)
        self.ess = EffectiveSampleSizeMeter(device=self.device)
        self.step_scale = MeanMeter(device=self.device)

    def update(
        self,
        loss: torch.Tensor,
        y: torch.Tensor,
        weights: torch.Tensor | None,
        step_scale: torch.Tensor | None = None,
    ) -> None:
        """Add a batch: its objective, labels, sample weights and the objective's step scale
        (:attr:`absgd.Objective.last_step_scale`; ``None`` where there is none)."""
        self.loss_sum += loss.detach().double() * y.shape[0]
        self.samples += y.shape[0]
        if weights is not None:
            self.weights.update(weights, y)
            self.ess.update(weights)
        if step_scale is not None:
            self.step_scale.update(step_scale)

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_sum": self.loss_sum,
            "samples": self.samples,
            "weights": self.weights.state_dict(),
            "ess": self.ess.state_dict(),
            "step_scale": self.step_scale.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_sum = state["loss_sum"].to(self.device)
        self.samples = state["samples"].to(self.device)
        self.weights.load_state_dict(state["weights"])
        self.ess.load_state_dict(state["ess"])
        if "step_scale" in state:  # a checkpoint saved before the step scale was recorded
            self.step_scale.load_state_dict(state["step_scale"])

    def all_reduce(self, ctx: DistContext) -> None:
        """Sum the statistics over every rank (a collective; a no-op in one process)."""
        if not ctx.enabled:
            return
        totals = torch.stack([self.loss_sum, self.samples.double()])
        dist.all_reduce(totals)
        self.loss_sum, self.samples = totals[0], totals[1].long()
        self.weights.all_reduce()
        self.ess.all_reduce()
        self.step_scale.all_reduce()

    def summary(self) -> dict[str, Any]:
        n = int(self.samples)
        out: dict[str, Any] = {"train_loss": float(self.loss_sum) / n if n else math.nan}
        ess = self.ess.compute()
        if not math.isnan(ess):
            out["mean_weight_per_class"] = to_jsonable(self.weights.compute())
            out["effective_sample_size"] = ess
        step_scale = self.step_scale.compute()
        if not math.isnan(step_scale):
            out["step_scale"] = step_scale
        return out
