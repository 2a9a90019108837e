"""Where and how a run computes: the device, seeding, mixed precision, and the record of the
environment that ``final.json`` keeps."""

from __future__ import annotations

import contextlib
import os
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

import absgd

__all__ = [
    "autocast",
    "cpu_description",
    "describe_environment",
    "resolve_device",
    "seed_everything",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU; anything else as given (checked to exist)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but no CUDA device is available; use cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"train.device={name} but MPS is not available; use cpu or auto")
    return device


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_description() -> dict[str, str]:
    """The CPU as it bears on the numbers: its model name (``/proc/cpuinfo`` on Linux, else
    ``platform.processor()`` or the architecture) and the vector instruction set torch's CPU
    kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``, e.g. ``AVX512``). The
    same code, config and seed can train a different model on another CPU, because the
    kernels sum in another order; two runs are comparable bit for bit only where these agree."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def describe_environment(device: torch.device) -> dict[str, Any]:
    return {
        "absgd": absgd.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        **cpu_description(),
    }
