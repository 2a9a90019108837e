"""Multi-process training on ``torch.distributed``: set-up from ``torchrun``, sharding, agreement.

``torchrun --nproc_per_node N -m absgd train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; :func:`setup` then joins the process group
(``nccl`` on CUDA, ``gloo`` on the CPU) with a timeout, so that a rank that dies makes the
others fail with an error instead of waiting forever. Everything that must be identical on
every rank (the long-tailed subset, the validation split, label noise, the epoch order) is
built from the config's seeds, not from the rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from absgd.data import ArrayDataset

__all__ = [
    "DistContext",
    "agree",
    "broadcast_object",
    "broadcast_state",
    "launched_by_torchrun",
    "run_on_main",
    "setup",
    "shard_for_evaluation",
    "teardown",
]


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run (``world_size == 1``: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process launch (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str, timeout_s: float) -> tuple[DistContext, str]:
    """Join the process group if launched by ``torchrun``; return the context and the device.

    ``device_name`` is the config's ``train.device``; with several processes on CUDA, each
    uses ``cuda:LOCAL_RANK``.
    """
    if not launched_by_torchrun():
        return DistContext(), device_name
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (
        device_name == "auto" and torch.cuda.is_available()
    )
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={device_name} but this node has no CUDA device")
        if local >= torch.cuda.device_count():
            raise RuntimeError(
                f"local rank {local} has no GPU: this node has {torch.cuda.device_count()}; "
                "launch at most that many processes per node (--nproc_per_node)"
            )
        device_name = f"cuda:{local}"
        torch.cuda.set_device(local)
    elif device_name == "mps":
        raise RuntimeError("multi-process training supports cpu (gloo) and cuda (nccl), not mps")
    else:
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if use_cuda else "gloo",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=timeout_s),
        )
    return DistContext(rank, world, local), device_name


def teardown() -> None:
    """Leave the process group (after a barrier, so no rank exits while others still talk)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def agree(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """``True`` on every rank if ``flag`` is true on any (a stop request, for example)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def broadcast_object(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (pickled; for checkpoints and small objects)."""
    if not ctx.enabled:
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_state(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers into ``module`` on every rank."""
    if not ctx.enabled:
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def shard_for_evaluation(data: Any, ctx: DistContext) -> Any:
    """This rank's part of an evaluation split: samples ``rank, rank + W, rank + 2W, ...``.

    Every sample is evaluated by exactly one rank (no padding, no duplicates), so summing the
    confusion counts over ranks gives exactly the single-process metrics.
    """
    if not ctx.enabled:
        return data
    if isinstance(data, ArrayDataset):
        return data.subset(np.arange(ctx.rank, len(data), ctx.world_size))
    if isinstance(data, Dataset):
        indices = range(ctx.rank, len(data), ctx.world_size)  # type: ignore[arg-type]
        return Subset(data, list(indices))
    raise TypeError(f"cannot shard evaluation data of type {type(data).__name__}")


def run_on_main(ctx: DistContext, fn: Any) -> Any:
    """Run ``fn()`` on rank 0 only and give every rank its result — or its exception, so a
    failure there (a missing file, say) stops every rank instead of leaving them waiting."""
    if not ctx.enabled:
        return fn()
    result: Any = None
    error: BaseException | None = None
    if ctx.is_main:
        try:
            result = fn()
        except Exception as err:
            error = err
    result, error = broadcast_object((result, error), ctx)
    if error is not None:
        raise error
    return result
