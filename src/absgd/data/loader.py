"""Batch loading: whole-batch tensors for in-memory data, a ``DataLoader`` for lazy datasets.

An epoch's order is a pure function of ``(seed, epoch)``: a permutation of the dataset (or the
indices of a :class:`ClassAwareSampler`, or ``0 … N-1`` without shuffling). It is cut into
*global* batches of ``batch_size · world_size`` samples; rank ``r`` takes the ``r``-th
``batch_size`` slice of each. So ``world_size`` processes with batch ``B`` see, step by step,
exactly the batches of one process with batch ``B · world_size``, and the augmentation
parameters of global step ``k`` come from a generator seeded with ``(seed, epoch, k)`` and are
sliced the same way. With ``drop_last=False`` and ``world_size > 1`` the order is padded by
repeating its first indices up to a multiple of ``world_size`` (every rank gets as many
samples at every step, as collective operations require).

The loader's position is ``(epoch, step)``: :meth:`BatchLoader.state_dict` saves it and
:meth:`BatchLoader.load_state_dict` resumes mid-epoch with the same batches and the same
augmentations as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from absgd.data._util import derive_seed
from absgd.data.augment import BatchAugment, to_nchw
from absgd.data.dataset import ArrayDataset
from absgd.data.samplers import SAMPLING_MODES, ClassAwareSampler

__all__ = ["BatchLoader", "epoch_order", "shard_steps", "steps_per_epoch"]

_ORDER_STREAM = 0x0D3
_AUGMENT_STREAM = 0xA06
_WORKER_STREAM = 0x3B1


def epoch_order(
    num_samples: int,
    seed: int,
    epoch: int,
    *,
    shuffle: bool = True,
    sampler: ClassAwareSampler | None = None,
) -> np.ndarray:
    """The global sample order of an epoch: ``sampler``'s indices, else a permutation seeded
    by ``(seed, epoch)`` (``shuffle``), else ``arange(num_samples)``."""
    if sampler is not None:
        return sampler.epoch_indices(seed, epoch)
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    rng = np.random.default_rng(derive_seed(seed, epoch, _ORDER_STREAM))
    return rng.permutation(num_samples).astype(np.int64)


def _check_shard(batch_size: int, rank: int, world_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def steps_per_epoch(
    num_samples: int, batch_size: int, world_size: int = 1, drop_last: bool = False
) -> int:
    """Steps per epoch (equal on every rank) for ``num_samples`` samples in the order.

    >>> steps_per_epoch(10, 4), steps_per_epoch(10, 4, drop_last=True), steps_per_epoch(10, 2, 2)
    (3, 2, 3)
    """
    _check_shard(batch_size, 0, world_size)
    step = batch_size * world_size
    if drop_last:
        return num_samples // step
    padded = -(-num_samples // world_size) * world_size
    return -(-padded // step)


def shard_steps(
    order: np.ndarray,
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """Rank ``rank``'s indices at every step of an epoch with global order ``order``.

    >>> [s.tolist() for s in shard_steps(np.arange(9), 2, rank=0, world_size=2)]
    [[0, 1], [4, 5], [8]]
    >>> [s.tolist() for s in shard_steps(np.arange(9), 2, rank=1, world_size=2)]  # padded
    [[2, 3], [6, 7], [0]]
    """
    _check_shard(batch_size, rank, world_size)
    order = np.asarray(order, dtype=np.int64)
    total = steps_per_epoch(len(order), batch_size, world_size, drop_last)
    if not drop_last and world_size > 1 and len(order) % world_size:
        order = np.resize(order, -(-len(order) // world_size) * world_size)  # wraps around
    step = batch_size * world_size
    out = []
    for k in range(total):
        chunk = order[k * step : (k + 1) * step]
        local = len(chunk) // world_size
        out.append(chunk[rank * local : (rank + 1) * local])
    return out


class BatchLoader:
    """Iterate ``(x, y)`` batches of an in-memory or lazy dataset; resumable and shardable.

    In-memory data (an :class:`ArrayDataset`, whose ``(N, H, W, C)`` images become
    ``(N, C, H, W)``, or a pair of tensors used as given) is stored once as tensors on
    ``data_device`` (default ``device``); each batch is one ``index_select`` followed by
    ``augment`` on ``device``, with no per-image Python work. A ``torch.utils.data.Dataset``
    (e.g. :class:`ListFileDataset`) is read through a ``DataLoader`` with ``num_workers``
    workers fed with the same per-step indices, and ``augment`` is applied to each collated
    batch on ``device``.

    Args:
        data: :class:`ArrayDataset`, ``(x, y)`` tensors, or a map-style ``Dataset``.
        batch_size: samples per step and rank.
        shuffle: permute each epoch (ignored when ``sampler`` is given).
        sampler: a :class:`ClassAwareSampler` or one of its mode names
            (``"uniform"``, ``"sqrt"``, ``"class_balanced"``).
        augment: :class:`BatchAugment` applied to every batch; ``None`` yields stored values.
        drop_last: drop the last incomplete global batch.
        seed: seeds the order, the sampler and the augmentation.
        device: where batches are delivered (default: where the data is).
        rank, world_size: this process's shard (see the module docstring).
        num_workers, pin_memory: for lazy datasets, passed to the ``DataLoader``.
        labels: labels of a lazy dataset for ``sampler`` (default ``data.labels``).

    Iterating yields the remaining batches of the current epoch, then moves to the next epoch;
    ``state_dict()`` after the update on a batch and ``load_state_dict`` continue from there.
    """

    def __init__(
        self,
        data: ArrayDataset | tuple[torch.Tensor, torch.Tensor] | Dataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        sampler: ClassAwareSampler | str | None = None,
        augment: BatchAugment | None = None,
        drop_last: bool = False,
        seed: int = 0,
        device: str | torch.device | None = None,
        data_device: str | torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
        labels: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        _check_shard(batch_size, rank, world_size)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.shuffle, self.drop_last, self.augment = shuffle, drop_last, augment
        self.seed, self.epoch, self.step = int(seed), 0, 0
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.device = torch.device(device) if device is not None else None
        self.dataset: Dataset | None = None
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None

        if isinstance(data, ArrayDataset):
            x = to_nchw(data.x) if data.x.ndim == 4 else torch.as_tensor(data.x)
            y = torch.as_tensor(data.y)
            label_array: Any = data.y
            num_classes: int | None = data.num_classes
        elif isinstance(data, tuple) and len(data) == 2:
            x, y = torch.as_tensor(data[0]), torch.as_tensor(data[1]).long()
            if len(x) != len(y):
                raise ValueError(f"x has {len(x)} samples, y has {len(y)}")
            label_array, num_classes = y.cpu().numpy(), None
        elif isinstance(data, Dataset):
            self.dataset = data
            label_array = labels if labels is not None else getattr(data, "labels", None)
            num_classes = getattr(data, "num_classes", None)
            self.num_data = len(data)  # type: ignore[arg-type]
        else:
            raise TypeError(
                f"data must be an ArrayDataset, an (x, y) tuple of tensors or a torch Dataset, "
                f"got {type(data).__name__}"
            )
        if self.dataset is None:
            store = torch.device(data_device) if data_device is not None else self.device
            self._x = x.to(store) if store is not None else x
            self._y = y.to(store) if store is not None else y
            self.num_data = len(y)

        if isinstance(sampler, str):
            if sampler not in SAMPLING_MODES:
                raise ValueError(
                    f"sampler must be one of {sorted(SAMPLING_MODES)}, got {sampler!r}"
                )
            if label_array is None:
                raise ValueError("a class-aware sampler needs labels= for this dataset")
            sampler = ClassAwareSampler(label_array, sampler, num_classes=num_classes)
        if sampler is not None and len(sampler.labels) != self.num_data:
            raise ValueError(
                f"the sampler has {len(sampler.labels)} labels, the data {self.num_data} samples"
            )
        self.sampler = sampler
        if len(self) == 0:
            raise ValueError(
                f"no batch to serve: {self.samples_per_epoch} samples per epoch, batch_size="
                f"{batch_size}, world_size={world_size}, drop_last={drop_last}"
            )

    # -- order -------------------------------------------------------------------------------
    @property
    def samples_per_epoch(self) -> int:
        return len(self.sampler) if self.sampler is not None else self.num_data

    def __len__(self) -> int:
        return steps_per_epoch(
            self.samples_per_epoch, self.batch_size, self.world_size, self.drop_last
        )

    def steps(self, epoch: int) -> list[np.ndarray]:
        """This rank's dataset indices at every step of ``epoch``."""
        order = epoch_order(
            self.num_data, self.seed, epoch, shuffle=self.shuffle, sampler=self.sampler
        )
        return shard_steps(
            order,
            self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            drop_last=self.drop_last,
        )

    # -- batches -----------------------------------------------------------------------------
    def _augment(self, xb: torch.Tensor, epoch: int, step: int) -> torch.Tensor:
        aug = self.augment
        if aug is None:
            return xb
        params = None
        if aug.is_random:
            gen = torch.Generator().manual_seed(
                derive_seed(self.seed, epoch, step, _AUGMENT_STREAM)
            )
            n = len(xb)
            params = aug.sample(n * self.world_size, gen)[self.rank * n : (self.rank + 1) * n]
        return aug.apply(xb, params)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device is None:
            return t
        # Asynchronous only towards an accelerator, from pinned host memory or another device.
        asynchronous = self.device.type != "cpu" and (self.pin_memory or t.device.type != "cpu")
        return t.to(self.device, non_blocking=asynchronous)

    def epoch_batches(
        self, epoch: int, start_step: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` from ``start_step`` on (does not move the loader's position)."""
        steps = self.steps(epoch)
        if self.dataset is None:
            assert self._x is not None and self._y is not None
            for k in range(start_step, len(steps)):
                idx = torch.from_numpy(steps[k]).to(self._x.device)
                xb = self._to_device(self._x.index_select(0, idx))
                yb = self._to_device(self._y.index_select(0, idx))
                yield self._augment(xb, epoch, k), yb
            return
        if start_step >= len(steps):
            return
        loader = DataLoader(
            self.dataset,
            batch_sampler=[s.tolist() for s in steps[start_step:]],
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch, _WORKER_STREAM)),
        )
        for k, (xb, yb) in enumerate(loader, start_step):
            yield self._augment(self._to_device(xb), epoch, k), self._to_device(yb)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.step >= len(self):
            self.epoch, self.step = self.epoch + 1, 0
        epoch = self.epoch
        for batch in self.epoch_batches(epoch, self.step):
            self.step += 1
            yield batch
        self.epoch, self.step = epoch + 1, 0

    # -- position ----------------------------------------------------------------------------
    def set_epoch(self, epoch: int, step: int = 0) -> None:
        """Position the loader at ``step`` of ``epoch`` (the next iteration starts there)."""
        if epoch < 0 or step < 0:
            raise ValueError(f"epoch and step must be >= 0, got {epoch=}, {step=}")
        self.epoch, self.step = int(epoch), int(step)

    def state_dict(self) -> dict[str, int]:
        """Everything needed to resume: the seed and position, plus the sharding it assumes."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "step": self.step,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "samples_per_epoch": self.samples_per_epoch,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore a :meth:`state_dict`; the global batch (``batch_size · world_size``) and the
        epoch length must match. The number of processes may differ: step ``k`` of an epoch is
        the same global batch whatever the sharding, so a run can resume on more or fewer
        ranks."""
        saved_global = int(state["batch_size"]) * int(state.get("world_size", 1))
        if saved_global != self.batch_size * self.world_size:
            raise ValueError(
                f"cannot resume: the saved global batch is {saved_global} "
                f"(batch_size={state['batch_size']} × world_size={state.get('world_size', 1)}) "
                f"but this loader's is {self.batch_size * self.world_size} "
                f"(batch_size={self.batch_size} × world_size={self.world_size})"
            )
        if (
            "samples_per_epoch" in state
            and int(state["samples_per_epoch"]) != self.samples_per_epoch
        ):
            raise ValueError(
                f"cannot resume: saved samples_per_epoch={state['samples_per_epoch']} but this "
                f"loader has samples_per_epoch={self.samples_per_epoch}"
            )
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]), int(state["step"]))
