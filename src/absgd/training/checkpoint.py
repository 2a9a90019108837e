"""Checkpoints: everything a resume needs, written atomically, read back safely.

A checkpoint is one ``torch.save`` file holding a mapping with a format marker and version,
the resolved config, the position (epoch and step within it), the model, optimiser, objective
(ABSGD state) and gradient-scaler states, the random-number-generator states, the partial
statistics of an interrupted epoch and the history of finished epochs. It is written to a
temporary file and renamed into place, so a crash or Ctrl-C leaves the previous checkpoint
intact. It is loaded with ``torch.load(weights_only=True)``: no code from the file runs.
A truncated or foreign file raises :class:`CheckpointError`; it is never silently ignored.
:func:`initialise_model` starts a new run from the weights of another (``model.init_from``).
"""

from __future__ import annotations

import io
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from absgd.fileio import atomic_write

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT",
    "MODEL_NAME",
    "CheckpointError",
    "capture_rng",
    "initialise_model",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

FORMAT = "absgd-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
"""The selected model of a finished run, in its directory."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, truncated, corrupt or of another format)."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically to ``path``."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    with atomic_write(path) as fh:
        fh.write(buffer.getbuffer())


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (a run directory works too)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        saved = path.parent / "config.yaml"
        restart = (
            f"; the run stopped before its first checkpoint: start it again with "
            f"absgd train --config {saved} --out {path.parent}"
            if saved.is_file()
            else ""
        )
        raise CheckpointError(
            f"no checkpoint at {path}; a run directory holds one ({CHECKPOINT_NAME}) after its "
            f"first epoch{restart}"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
    ) as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}: {err}); it may be "
            "truncated or corrupt. Restore it from a copy or start a new run without --resume"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an absgd checkpoint (no {FORMAT!r} marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}; this absgd reads "
            f"version {VERSION}"
        )
    return state


def initialise_model(model: nn.Module, source: str, reset_classifier: bool) -> None:
    """Load the weights of ``source`` (a ``model.pt``, a checkpoint, or a run directory holding
    either) into ``model`` (``model.init_from``); with ``reset_classifier`` the classifier
    keeps its fresh initialisation and every other weight must fit."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / MODEL_NAME if (path / MODEL_NAME).is_file() else path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"model.init_from={source}: no model.pt or {CHECKPOINT_NAME} found there"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"model.init_from={source}: cannot read {path} ({err})") from None
    if isinstance(state, dict) and "model" in state and "format" in state:
        state = state["model"]
    if reset_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith("classifier.")] + list(unexpected)
        if bad:
            raise ValueError(f"model.init_from={source} does not fit this model: {bad[:5]}")
        model.reset_classifier()  # type: ignore[operator]
    else:
        model.load_state_dict(state)


def capture_rng() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    # the legacy global generator is an MT19937: its state is the legacy tuple
    np_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Restore generator states captured by :func:`capture_rng`."""
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
