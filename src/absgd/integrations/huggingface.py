r"""ABSGD in the Hugging Face ``transformers.Trainer``.

:class:`ABSGDTrainer` is a ``Trainer`` whose ``compute_loss`` is ABSGD (Qi et al.,
"Attentional-Biased Stochastic Gradient Descent", TMLR 2023, arXiv 2012.06951): the model's
logits go through a :class:`absgd.integrations.ScheduledObjective` (per-sample loss, class
weights inside or outside the exponent, λ or a target effective sample size, λ scheduled by
epoch). Everything else is the Trainer's own: the optimiser (momentum SGD is ABSGD proper;
AdamW gives the Adam variant), the learning-rate schedule, mixed precision, logging,
checkpoints and the distributed launch (``torchrun`` / ``accelerate launch``).

- **λ by epoch.** Before every training step the objective is set to the epoch
  ``floor(state.epoch)``, so a two-stage schedule switches at an epoch boundary.
- **Logging.** Every training log (each ``logging_steps``) gains ``absgd_lam`` (the λ in force)
  and ``absgd_ess`` (the effective sample size of the last batch's weights, over the global
  batch under DDP).
- **Checkpoints.** Each checkpoint folder gets ``absgd_state.pt``, the objective's state (the
  moving-average normaliser, the smoothed λ); ``train(resume_from_checkpoint=...)`` loads it,
  so a resumed run continues exactly.
- **Distributed.** Under the Trainer's DDP the normaliser is all-reduced over the processes:
  N processes compute what one process computes on the global batch (DDP averages the
  gradients; the weights are normalised by the global statistic).
- **Evaluation** uses the plain mean loss and leaves the ABSGD state alone.

The ABSGD "batch" is the per-device micro-batch (the global one under DDP). With gradient
accumulation each micro-batch is weighted on its own and the loss is divided by the number of
accumulation steps, as for a plain loss.

Example::

    from absgd.integrations import ScheduledObjective
    from absgd.integrations.huggingface import ABSGDTrainer

    trainer = ABSGDTrainer(
        model=model,
        args=TrainingArguments(output_dir="out", num_train_epochs=3, optim="sgd"),
        train_dataset=train,
        absgd=ScheduledObjective(lam=1.0, switch_epoch=1),
    )
    trainer.train()
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

try:
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "absgd.integrations.huggingface needs transformers (and accelerate); install them "
        "with pip install 'torch-absgd[transformers]'"
    ) from exc

from absgd.fileio import atomic_write
from absgd.integrations.objective import ScheduledObjective

__all__ = ["STATE_FILE", "ABSGDTrainer"]

STATE_FILE = "absgd_state.pt"


class ABSGDTrainer(Trainer):
    """A ``transformers.Trainer`` whose training loss is ABSGD.

    Args:
        *args, **kwargs: those of ``transformers.Trainer``.
        absgd: the objective (default: ``ScheduledObjective()``, cross-entropy with λ = 1
            from the first epoch).

    The model must return logits (``outputs.logits`` or the first output) and the batches
    must carry ``labels``.
    """

    def __init__(self, *args: Any, absgd: ScheduledObjective | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.absgd = absgd if absgd is not None else ScheduledObjective()
        # The ABSGD loss is a per-batch weighted sum, never normalised by num_items_in_batch:
        # the Trainer must divide it by the accumulation steps as it does a plain loss.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        if self.args.label_names is None and "labels" not in self.label_names:
            # A model whose forward() takes no labels still gets them kept in the batches.
            self.label_names = [*self.label_names, "labels"]
        self.add_callback(_SaveObjectiveState(self))

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Tensor | int | None = None,
    ) -> Tensor | tuple[Tensor, Any]:
        if "labels" not in inputs:
            raise ValueError(
                "ABSGDTrainer needs the labels in the batch (a 'labels' column); got the keys "
                f"{sorted(inputs)}"
            )
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        objective = self.absgd.to(logits.device)
        objective.train(model.training)
        if model.training:
            objective.set_epoch(math.floor(self.state.epoch or 0.0))
        loss = objective(logits, labels)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log
            logs = {**logs, **self.absgd.metrics()}
        super().log(logs, *args, **kwargs)

    def train(
        self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        """``Trainer.train``; on resume, the ABSGD state of the checkpoint is loaded too."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        if isinstance(checkpoint, (str, os.PathLike)):
            path = Path(checkpoint) / STATE_FILE
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing: the checkpoint was not written by ABSGDTrainer, so "
                    "the ABSGD normaliser cannot be restored (start without "
                    "resume_from_checkpoint, or from a checkpoint of ABSGDTrainer)"
                )
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.absgd.load_state_dict(state)
        return super().train(resume_from_checkpoint, *args, **kwargs)


class _SaveObjectiveState(TrainerCallback):
    """Writes the objective's state into every checkpoint folder (the main process only)."""

    def __init__(self, trainer: ABSGDTrainer) -> None:
        self.trainer = trainer

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        buffers = {k: v.detach().cpu() for k, v in self.trainer.absgd.state_dict().items()}
        with atomic_write(folder / STATE_FILE) as f:
            torch.save(buffers, f)
