r"""ABSGD in PyTorch Lightning.

Put a :class:`absgd.integrations.ScheduledObjective` in your ``LightningModule`` as a
submodule and use it as the training loss; add :class:`ABSGDCallback` to the ``Trainer``::

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = ...
            self.criterion = ScheduledObjective(lam=1.0, switch_epoch=1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.criterion(self.net(x), y)

    trainer = L.Trainer(max_epochs=3, callbacks=[ABSGDCallback()])

What each part gives (Qi et al., "Attentional-Biased Stochastic Gradient Descent", TMLR 2023,
arXiv 2012.06951):

- **λ by epoch**: the callback sets every ``ScheduledObjective`` of the module to
  ``trainer.current_epoch`` at the start of each training epoch.
- **Logging**: after each training batch it logs ``absgd_lam`` and ``absgd_ess`` (the λ in
  force and the effective sample size of the batch's weights, over the global batch under
  ddp) with ``LightningModule.log``.
- **Checkpoints**: the objective is a submodule, so its state (the moving-average normaliser,
  the smoothed λ) is in the module's ``state_dict`` and in every Lightning checkpoint;
  ``trainer.fit(..., ckpt_path=...)`` continues exactly.
- **Distributed**: under the ``ddp`` strategies the normaliser is all-reduced over the
  processes, so N processes compute what one process computes on the global batch.
- **Validation**: in eval mode the objective returns the plain mean loss and leaves the ABSGD
  state alone.
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "absgd.integrations.lightning needs PyTorch Lightning; install it with "
        "pip install 'torch-absgd[lightning]'"
    ) from exc

from absgd.integrations.objective import ScheduledObjective

__all__ = ["ABSGDCallback"]


def _objectives(module: LightningModule) -> list[ScheduledObjective]:
    return [m for m in module.modules() if isinstance(m, ScheduledObjective)]


class ABSGDCallback(Callback):
    """Sets the λ schedule of the module's ``ScheduledObjective`` s by epoch and logs them.

    Args:
        log: log ``absgd_lam`` and ``absgd_ess`` after every training batch (with
            ``on_step=True, on_epoch=False``; the name gets a suffix when the module holds
            several objectives).
    """

    def __init__(self, log: bool = True) -> None:
        self.log = log

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and not _objectives(pl_module):
            raise ValueError(
                "ABSGDCallback found no ScheduledObjective in the LightningModule: make one "
                "an attribute of the module (e.g. self.criterion = ScheduledObjective(...)) "
                "and use it as the training loss"
            )

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for objective in _objectives(pl_module):
            objective.set_epoch(trainer.current_epoch)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if not self.log:
            return
        objectives = _objectives(pl_module)
        for k, objective in enumerate(objectives):
            suffix = "" if len(objectives) == 1 else f"_{k}"
            for name, value in objective.metrics().items():
                pl_module.log(f"{name}{suffix}", value, on_step=True, on_epoch=False)
