"""How a run stops early: Ctrl-C / SIGTERM between steps, and divergence."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["RunInterrupted", "TrainingDiverged", "diverged", "parameters_finite", "stop_requests"]


class RunInterrupted(KeyboardInterrupt):
    """Raised after Ctrl-C / SIGTERM once the checkpoint of the current step is written."""


class TrainingDiverged(RuntimeError):
    """The training loss, the model's parameters or its outputs became NaN or infinite. The run
    directory keeps the checkpoint of the last finished epoch (written before the divergence)."""


def diverged(epoch: int, step: int, what: str) -> TrainingDiverged:
    return TrainingDiverged(
        f"training diverged in epoch {epoch + 1} (step {step}): {what}. Lower optim.lr, use "
        "a larger |λ| (objective.lam) or clip gradients (optim.grad_clip)"
    )


def parameters_finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite (one host synchronisation)."""
    flags = [p.detach().isfinite().all() for p in model.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


@contextlib.contextmanager
def stop_requests() -> Iterator[Callable[[], bool]]:
    """Turn SIGINT / SIGTERM into a flag checked between steps; a second Ctrl-C is immediate."""
    requested = {"flag": False}

    def handler(signum: int, frame: Any) -> None:
        if requested["flag"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested["flag"] = True

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave the handlers alone
        previous.clear()
    try:
        yield lambda: requested["flag"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
