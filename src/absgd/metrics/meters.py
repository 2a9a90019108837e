r"""Streaming accumulators that stay on the device: no host synchronisation per update.

Each ``update`` only launches tensor operations on the inputs' device (no ``.item()``,
``.tolist()``, ``.cpu()``, ``bincount`` or data-dependent shapes), so an evaluation or training
loop on a GPU is not stalled batch by batch; ``compute()`` copies the state to the host once.
Invalid labels are counted on the device and reported by ``compute()``.

- :class:`ConfusionMeter`: confusion matrix (or, for thousands of classes, per-class counts
  only) and top-5 count → the :func:`~absgd.metrics.evaluate` dict;
- :class:`ClassWeightMeter`: mean ABSGD weight of each class (:func:`mean_weight_per_class`
  batch by batch);
- :class:`EffectiveSampleSizeMeter`: mean over batches of the normalised effective sample size
  ``(Σ p)² / (B Σ p²)`` of the ABSGD weights (1 = uniform, ``1/B`` = one sample has it all);
- :class:`MeanMeter`: mean of one number per batch (e.g. the objective's step scale,
  :attr:`absgd.Objective.last_step_scale`), over the batches of every rank.

All four have ``reset()``; ``state_dict()`` / ``load_state_dict()`` (an exact mid-epoch
resume); and ``all_reduce(group)``, which sums the state over the ranks of a
``torch.distributed`` process group (every rank must call it), so ``compute()`` then gives the
metrics of the whole, sharded evaluation set.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from absgd.metrics._checks import ArrayLike, check_num_classes, labels, same_length, to_numpy
from absgd.metrics.classification import summarize

__all__ = [
    "ClassWeightMeter",
    "ConfusionMeter",
    "EffectiveSampleSizeMeter",
    "MeanMeter",
    "NaNLogitsError",
    "mean_weight_per_class",
]


class NaNLogitsError(ValueError):
    """Logits passed to a :class:`ConfusionMeter` held NaN (a diverged model, usually)."""


def mean_weight_per_class(weights: ArrayLike, y: ArrayLike, num_classes: int) -> np.ndarray:
    """``float64 (C,)`` mean of ``weights`` over the samples of each class; NaN for a class
    with no sample.

    With the ABSGD weights of a batch (``ABWeighting.last_weights``) this shows which classes
    the method up-weights (λ > 0) or discounts (λ < 0); multiply by the batch size to compare
    with the uniform weight 1.

    >>> mean_weight_per_class([0.1, 0.3, 0.6], [0, 0, 2], 3)
    array([0.2, nan, 0.6])
    """
    c = check_num_classes(num_classes)
    w = to_numpy(weights).astype(np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights must be 1-D (one per sample), got shape {w.shape}")
    t = labels(y, "y", c)
    same_length(w, t, "weights", "y")
    sums = np.bincount(t, weights=w, minlength=c)
    counts = np.bincount(t, minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _as_tensor(x: ArrayLike) -> Tensor:
    return x.detach() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def _check_int(t: Tensor, name: str) -> None:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices, got dtype {t.dtype}")


def _state_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _same_count_on_every_rank(count: Tensor, group: dist.ProcessGroup | None, what: str) -> int:
    """The number of batches this rank added since the last all-reduce, checked to be the same
    on every rank of ``group`` (a collective): ``what`` needs one batch per rank per step."""
    counts = torch.stack([count, -count])
    dist.all_reduce(counts, op=dist.ReduceOp.MAX, group=group)
    most, fewest = int(counts[0]), -int(counts[1])
    if most != fewest:
        raise ValueError(
            f"the ranks added {fewest} to {most} batches since the last all_reduce; {what} "
            "needs the same number on every rank"
        )
    return most


def _fold_in_order(total: Tensor, values: Tensor) -> Tensor:
    """``((total + v_1) + v_2) + …``, one value at a time in the order given. A float sum
    depends on its order; folded this way, a meter saved after any batch and resumed ends on
    the bits of one that never stopped (on the CPU, whose scan is sequential; a GPU scan may
    associate otherwise)."""
    return torch.cat([total.reshape(1), values.to(total.dtype)]).cumsum(0)[-1]


class _Meter:
    """Lazily allocated device state (a list of tensors) with reset, all-reduce and
    ``state_dict`` / ``load_state_dict`` for exact resumption."""

    def __init__(self, device: torch.device | str | None) -> None:
        self._device = None if device is None else torch.device(device)
        self._state: list[Tensor] | None = None

    def _new_state(self, device: torch.device) -> list[Tensor]:
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """Constructor options that a saved state must match."""
        return {}

    def _ensure(self, device: torch.device) -> list[Tensor]:
        if self._state is None:
            self._device = self._device or device
            self._state = self._new_state(self._device)
        return self._state

    def reset(self) -> None:
        """Forget everything accumulated (the device is kept)."""
        if self._state is not None:
            for t in self._state:
                t.zero_()

    def state_dict(self) -> dict[str, Any]:
        """The accumulated state (copies of the device tensors) and the options it needs;
        loadable with ``torch.load(..., weights_only=True)``."""
        state = None if self._state is None else [t.detach().clone() for t in self._state]
        return {**self._config(), "state": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the tensors go to this meter's device (or stay where
        they are if it has none yet). Options that differ raise ``ValueError``."""
        for key, value in self._config().items():
            if state_dict.get(key) != value:
                raise ValueError(
                    f"cannot load a {type(self).__name__} state with {key}="
                    f"{state_dict.get(key)!r} into one with {key}={value!r}"
                )
        tensors = state_dict["state"]
        if tensors is None:
            self._state = None
            return
        device = self._device or tensors[0].device
        fresh = self._new_state(device)
        shapes = [tuple(t.shape) for t in tensors]
        if shapes != [tuple(t.shape) for t in fresh]:
            raise ValueError(
                f"{type(self).__name__} state has shapes {shapes}, expected "
                f"{[tuple(t.shape) for t in fresh]}"
            )
        for target, saved in zip(fresh, tensors, strict=True):
            target.copy_(saved.detach())
        self._state, self._device = fresh, device

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> None:
        """Sum the state over every rank of ``group`` (a collective: every rank must call it,
        with the same ``num_classes``). The state lives on the meter's device, which must
        suit the backend (CUDA for NCCL)."""
        for t in self._state_to_reduce():
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)

    def _state_to_reduce(self) -> list[Tensor]:
        """The state, allocated on the meter's device if no batch has been added yet."""
        if self._state is None:
            if self._device is None:
                raise ValueError(
                    "this meter has no state yet; call update() first or create it with "
                    "device=... so that all_reduce() knows where to allocate it"
                )
            self._ensure(self._device)
        assert self._state is not None
        return self._state


class ConfusionMeter(_Meter):
    """Accumulate a confusion matrix (and the top-5 count for logits with ``C > 5``) batch
    by batch on the device; :meth:`compute` returns the :func:`~absgd.metrics.evaluate` dict.

    Args:
        num_classes: ``C``.
        full_matrix: keep the ``C × C`` matrix. With ``False`` only the per-class correct,
            true and predicted counts are kept (``3C`` integers instead of ``C²``: use it for
            thousands of classes, e.g. iNaturalist's 8,142), which give every metric but the
            matrix itself.
        device: where the state lives; by default the device of the first ``update``'s
            outputs. Later inputs are moved there.

    >>> meter = ConfusionMeter(3)
    >>> meter.update(torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]]), torch.tensor([0, 1]))
    >>> meter.update(torch.tensor([2]), torch.tensor([2]))  # predicted labels work too
    >>> out = meter.compute()
    >>> out["top1"], out["per_class_accuracy"], out["top5"]
    (0.6666666666666666, [1.0, 0.0, 1.0], None)
    """

    # after the counts: [invalid samples, top-5 correct, rows with NaN, samples given as
    # logits, a junk slot that absorbs scatter entries that count nothing]
    _INVALID, _TOP5, _NAN, _LOGITS, _JUNK = range(5)

    def __init__(
        self,
        num_classes: int,
        *,
        full_matrix: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(device)
        self.num_classes = check_num_classes(num_classes)
        self.full_matrix = bool(full_matrix)
        self._body = self.num_classes**2 if self.full_matrix else 3 * self.num_classes

    def _new_state(self, device: torch.device) -> list[Tensor]:
        return [torch.zeros(self._body + 5, dtype=torch.int64, device=device)]

    def _config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "full_matrix": self.full_matrix}

    def update(self, logits_or_preds: ArrayLike, y: ArrayLike) -> None:
        """Add a batch: logits ``(N, C)`` (prediction = first ``argmax``) or predicted class
        indices ``(N,)``, and the true class indices ``(N,)``."""
        c = self.num_classes
        out = _as_tensor(logits_or_preds)
        target = _as_tensor(y)
        _check_int(target, "y")
        if target.dim() != 1:
            raise ValueError(f"y must be 1-D, got shape {tuple(target.shape)}")
        if out.dim() not in (1, 2) or (out.dim() == 2 and out.shape[1] != c):
            raise ValueError(
                f"expected logits (N, {c}) or predicted labels (N,), got shape {tuple(out.shape)}"
            )
        if out.shape[0] != target.shape[0]:
            raise ValueError(
                f"logits_or_preds and y differ in length: {out.shape[0]} != {target.shape[0]}"
            )
        if out.dim() == 1:
            _check_int(out, "predicted labels")
        (state,) = self._ensure(out.device)
        out = out.to(self._device, non_blocking=True)
        target = target.to(self._device, non_blocking=True).long()
        pred = out.argmax(1) if out.dim() == 2 else out.long()
        valid = (target >= 0) & (target < c) & (pred >= 0) & (pred < c)
        tail = self._body

        def slot(where: Tensor, index: Tensor, other: int) -> Tensor:
            return torch.where(where, index, torch.full_like(index, tail + other))

        if self.full_matrix:
            index = slot(valid, target * c + pred, self._INVALID)
        else:
            index = torch.cat(
                [
                    slot(valid & (pred == target), target, self._JUNK),
                    slot(valid, c + target, self._INVALID),
                    slot(valid, 2 * c + pred, self._JUNK),
                ]
            )
        state.scatter_add_(0, index, torch.ones_like(index))
        if out.dim() == 2:
            state[tail + self._LOGITS] += target.shape[0]
            state[tail + self._NAN] += out.isnan().any(1).sum()
            if c > 5:
                safe = torch.where(valid, target, torch.zeros_like(target))
                true_score = out.gather(1, safe[:, None])
                before = torch.arange(c, device=out.device) < safe[:, None]
                rank = (out > true_score).sum(1) + ((out == true_score) & before).sum(1)
                state[tail + self._TOP5] += ((rank < 5) & valid).sum()

    def _host_state(self) -> tuple[np.ndarray, np.ndarray]:
        if self._state is None:
            return np.zeros(self._body, dtype=np.int64), np.zeros(5, dtype=np.int64)
        host = self._state[0].cpu().numpy()
        body, tail = host[: self._body], host[self._body :]
        if tail[self._INVALID]:
            raise ValueError(
                f"{int(tail[self._INVALID])} labels or predictions outside "
                f"[0, {self.num_classes}) (num_classes = {self.num_classes}) were passed to "
                "update()"
            )
        if tail[self._NAN]:
            raise NaNLogitsError(f"the logits had NaN in {int(tail[self._NAN])} rows")
        return body, tail

    def confusion_matrix(self) -> np.ndarray:
        """``int64 (C, C)``, rows true, columns predicted (one host synchronisation)."""
        if not self.full_matrix:
            raise ValueError("this meter was created with full_matrix=False: no matrix is kept")
        c = self.num_classes
        return self._host_state()[0].reshape(c, c).copy()

    def compute(
        self,
        train_class_counts: ArrayLike | None = None,
        *,
        many: float = 100,
        few: float = 20,
        with_confusion_matrix: bool | None = None,
    ) -> dict[str, Any]:
        """The :func:`~absgd.metrics.evaluate` dict of everything added so far (one host
        synchronisation). ``top5`` is ``None`` unless ``C > 5`` and every batch was given as
        logits. The matrix is included if kept, unless ``with_confusion_matrix=False``."""
        c = self.num_classes
        body, tail = self._host_state()
        if with_confusion_matrix and not self.full_matrix:
            raise ValueError("this meter was created with full_matrix=False: no matrix is kept")
        matrix = None
        if self.full_matrix:
            cm = body.reshape(c, c)
            correct, true, pred = np.diag(cm).copy(), cm.sum(1), cm.sum(0)
            if with_confusion_matrix is not False:
                matrix = cm
        else:
            correct, true, pred = body[:c], body[c : 2 * c], body[2 * c :]
        n = int(true.sum())
        top5 = int(tail[self._TOP5]) if c > 5 and n > 0 and tail[self._LOGITS] == n else None
        return summarize(correct, true, pred, top5, train_class_counts, many, few, matrix)


class ClassWeightMeter(_Meter):
    """Mean ABSGD weight of each class over many batches (e.g. an epoch), on the device.

    Args:
        num_classes: ``C``.
        relative: multiply each batch's weights by its size ``B`` first, so 1 means the
            uniform weight ``1/B`` of plain SGD and batches of different sizes are comparable.
        device: where the state lives (default: the first ``update``'s weights' device).

    >>> meter = ClassWeightMeter(2, relative=True)
    >>> meter.update(torch.tensor([0.1, 0.1, 0.8]), torch.tensor([0, 0, 1]))
    >>> meter.compute().round(6)
    array([0.3, 2.4])
    """

    def __init__(
        self, num_classes: int, *, relative: bool = False, device: torch.device | str | None = None
    ) -> None:
        super().__init__(device)
        self.num_classes = check_num_classes(num_classes)
        self.relative = bool(relative)

    def _new_state(self, device: torch.device) -> list[Tensor]:
        # weight sums and counts; slot C collects samples with labels outside [0, C)
        dtype = _state_dtype(device)
        c = self.num_classes + 1
        return [
            torch.zeros(c, dtype=dtype, device=device),
            torch.zeros(c, dtype=dtype, device=device),
        ]

    def _config(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "relative": self.relative}

    def update(self, weights: ArrayLike, y: ArrayLike) -> None:
        """Add a batch of per-sample weights ``(B,)`` and their labels ``(B,)``."""
        w = _as_tensor(weights)
        target = _as_tensor(y)
        _check_int(target, "y")
        if w.dim() != 1 or target.dim() != 1 or w.shape[0] != target.shape[0]:
            raise ValueError(
                "weights and y must be 1-D and of equal length, got shapes "
                f"{tuple(w.shape)} and {tuple(target.shape)}"
            )
        sums, counts = self._ensure(w.device)
        w = w.to(self._device, dtype=sums.dtype, non_blocking=True)
        if self.relative:
            w = w * w.shape[0]
        target = target.to(self._device, non_blocking=True).long()
        c = self.num_classes
        valid = (target >= 0) & (target < c)
        index = torch.where(valid, target, torch.full_like(target, c))
        sums.scatter_add_(0, index, w)
        counts.scatter_add_(0, index, torch.ones_like(w))

    def compute(self) -> np.ndarray:
        """``float64 (C,)`` mean weight per class; NaN for classes not seen."""
        c = self.num_classes
        if self._state is None:
            return np.full(c, np.nan)
        sums, counts = (t.cpu().double().numpy() for t in self._state)
        if counts[c]:
            raise ValueError(
                f"{int(counts[c])} labels outside [0, {c}) (num_classes = {c}) were passed "
                "to update()"
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts[:c] > 0, sums[:c] / counts[:c], np.nan)


class EffectiveSampleSizeMeter(_Meter):
    """Mean over batches of the normalised effective sample size ``(Σ p)² / (B Σ p²)`` of the
    per-sample weights ``p`` (see :func:`absgd.effective_sample_size`), on the device; a batch
    whose weights are all 0 counts as 0.

    Under torch.distributed, :meth:`all_reduce` computes each step's ESS over the global batch
    (the union of the ranks' batches, which share one normaliser), so the value does not depend
    on the number of processes. Every rank must then have added the same number of batches.

    >>> meter = EffectiveSampleSizeMeter()
    >>> meter.update(torch.full((4,), 0.25))  # uniform: 1
    >>> meter.update(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # one sample: 1/4
    >>> meter.update(torch.zeros(4))  # no sample: 0
    >>> meter.compute()
    0.4166666666666667
    """

    def __init__(self, *, device: torch.device | str | None = None) -> None:
        super().__init__(device)
        self._steps: list[Tensor] = []  # [Σ p, Σ p², B] of each batch not yet folded in

    def _new_state(self, device: torch.device) -> list[Tensor]:
        return [torch.zeros(2, dtype=_state_dtype(device), device=device)]  # [Σ ESS, batches]

    def update(self, weights: ArrayLike) -> None:
        """Add one batch of per-sample weights ``(B,)``, ``B >= 1``."""
        w = _as_tensor(weights)
        if w.dim() != 1 or w.shape[0] == 0:
            raise ValueError(f"weights must be a non-empty 1-D tensor, got shape {tuple(w.shape)}")
        (state,) = self._ensure(w.device)
        w = w.to(self._device, dtype=state.dtype, non_blocking=True)
        size = torch.full((), float(w.shape[0]), dtype=state.dtype, device=state.device)
        self._steps.append(torch.stack([w.sum(), (w * w).sum(), size]))

    @staticmethod
    def _ess(sums: Tensor) -> Tensor:
        """ESS of batches from their ``[Σ p, Σ p², B]`` rows (0 where every weight is 0)."""
        total, squares, size = sums.unbind(-1)
        positive = squares > 0
        ess = total * total / (size * torch.where(positive, squares, torch.ones_like(squares)))
        return torch.where(positive, ess, torch.zeros_like(ess))

    def _folded(self, state: Tensor) -> Tensor:
        """``state`` plus this rank's batches not yet folded in, each taken on its own and
        added in order."""
        if not self._steps:
            return state
        ess = self._ess(torch.stack(self._steps))
        total = _fold_in_order(state[0], ess)
        return torch.stack([total, state[1] + len(self._steps)])

    def reset(self) -> None:
        super().reset()
        self._steps.clear()

    def state_dict(self) -> dict[str, Any]:
        """The accumulated state, this rank's batches folded in (call :meth:`all_reduce`
        first in a multi-process run)."""
        state = None if self._state is None else [self._folded(self._state[0]).detach().clone()]
        return {**self._config(), "state": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._steps.clear()

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> None:
        """Fold in each batch's ESS over the global batch, then sum the state over the ranks
        (a collective; every rank must have added the same number of batches)."""
        (state,) = self._state_to_reduce()
        count = torch.tensor(float(len(self._steps)), dtype=state.dtype, device=state.device)
        most = _same_count_on_every_rank(count, group, "the ESS of a global batch")
        if most:
            sums = torch.stack(self._steps)
            dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
            ess = self._ess(sums)
            world = dist.get_world_size(group)
            # every rank adds its 1/world share, so that the sum below counts each batch once
            state[0] = _fold_in_order(state[0], ess / world)
            state[1] += most / world
            self._steps.clear()
        dist.all_reduce(state, op=dist.ReduceOp.SUM, group=group)

    def compute(self) -> float:
        """Mean normalised ESS over the batches added (NaN if none)."""
        if self._state is None:
            return math.nan
        total, batches = self._folded(self._state[0]).cpu().tolist()
        return total / batches if batches else math.nan


class MeanMeter(_Meter):
    """Mean of one number per batch, on the device, the numbers added in the order they came
    (so that a resumed meter ends on the bits of one that never stopped). Under
    torch.distributed, :meth:`all_reduce` makes it the mean over the global steps of the mean
    over the ranks (for a per-rank quantity that the gradient average averages, such as the
    objective's step scale, the value of the global batch), so it does not depend on the number
    of processes. Every rank must then have added the same number of batches.

    >>> meter = MeanMeter()
    >>> meter.update(torch.tensor(1.0))
    >>> meter.update(torch.tensor(2.5))
    >>> meter.compute()
    1.75
    """

    def __init__(self, *, device: torch.device | str | None = None) -> None:
        super().__init__(device)
        self._values: list[Tensor] = []  # this rank's numbers not yet folded in

    def _new_state(self, device: torch.device) -> list[Tensor]:
        return [torch.zeros(2, dtype=_state_dtype(device), device=device)]  # [Σ value, batches]

    def update(self, value: ArrayLike) -> None:
        """Add one batch's number (a scalar)."""
        v = _as_tensor(value)
        if v.numel() != 1:
            raise ValueError(f"value must be a single number, got shape {tuple(v.shape)}")
        (state,) = self._ensure(v.device)
        # a copy: the caller may change its tensor in place after this call
        v = v.reshape(()).to(self._device, dtype=state.dtype, non_blocking=True, copy=True)
        self._values.append(v)

    def _folded(self, state: Tensor) -> Tensor:
        if not self._values:
            return state
        total = _fold_in_order(state[0], torch.stack(self._values))
        return torch.stack([total, state[1] + len(self._values)])

    def reset(self) -> None:
        super().reset()
        self._values.clear()

    def state_dict(self) -> dict[str, Any]:
        """The accumulated state, this rank's batches folded in (call :meth:`all_reduce`
        first in a multi-process run)."""
        state = None if self._state is None else [self._folded(self._state[0]).detach().clone()]
        return {**self._config(), "state": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        tensors = state_dict["state"]
        if tensors is not None and len(tensors) == 2:
            # saved before the numbers were folded in order: [Σ folded, batches] and the
            # unfolded rest (zero in every saved state)
            state_dict = {**state_dict, "state": [tensors[0] + tensors[1]]}
        super().load_state_dict(state_dict)
        self._values.clear()

    def all_reduce(self, group: dist.ProcessGroup | None = None) -> None:
        """Fold in each rank's numbers as its ``1/world`` share of the global steps, then sum
        over the ranks (a collective)."""
        (state,) = self._state_to_reduce()
        count = torch.tensor(float(len(self._values)), dtype=state.dtype, device=state.device)
        _same_count_on_every_rank(count, group, "the mean over global steps")
        world = dist.get_world_size(group)
        if self._values:
            state[0] = _fold_in_order(state[0], torch.stack(self._values) / world)
            state[1] += len(self._values) / world
            self._values.clear()
        dist.all_reduce(state, op=dist.ReduceOp.SUM, group=group)

    def compute(self) -> float:
        """The mean over the batches added (NaN if none)."""
        if self._state is None:
            return math.nan
        total, batches = self._folded(self._state[0]).cpu().tolist()
        return total / batches if batches else math.nan
