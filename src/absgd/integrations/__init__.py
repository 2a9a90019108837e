"""ABSGD inside the trainers people already use.

- :mod:`absgd.integrations.huggingface`: :class:`~absgd.integrations.huggingface.ABSGDTrainer`,
  a ``transformers.Trainer`` whose loss is ABSGD (``pip install 'torch-absgd[transformers]'``).
- :mod:`absgd.integrations.lightning`: :class:`~absgd.integrations.lightning.ABSGDCallback`
  for PyTorch Lightning (``pip install 'torch-absgd[lightning]'``).
- :class:`ScheduledObjective` (no extra needed): the loss both use, an
  :class:`absgd.Objective` with ABSGD and λ as a function of the epoch.

Importing ``absgd`` or this package imports neither library; each submodule imports its own.
"""

from __future__ import annotations

from absgd.integrations.objective import ScheduledObjective

__all__ = ["ScheduledObjective"]
