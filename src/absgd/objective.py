r"""The training objective: a per-sample loss, class weights and a per-sample weighting, composed.

For a batch with per-sample losses ``l_i``, class weights ``c_i = w_{y_i}`` (1 without class
weighting) and per-sample weights ``q_i`` (``1/B`` without a sample weighting; ABSGD's
``p_i``; RGD's ``r_i / B``)::

    objective = Σ_i q_i · c_i · l_i  /  mean_i c_i

Where the class weight sits relative to ABSGD is an explicit choice (``placement``):

- ``"inside"`` (default; the authors' code): ``q`` is computed from the class-weighted losses
  ``c_i l_i``, i.e. ``p_i ∝ exp(c_i l_i / λ)``;
- ``"outside"``: ``q`` is computed from the unweighted ``l_i`` and the class weight multiplies
  afterwards: ``c_i · p_i · l_i``.

How the class weights are normalised (``normalize_class_weights``):

- ``True`` (default): divide by the batch mean of ``c``. The plain objective (``q = 1/B``) is
  then the weighted mean ``Σ c_i l_i / Σ c_i`` of ``torch.nn.functional.cross_entropy(
  weight=...)`` — the LDAM-DRW and class-balanced baselines — and ABSGD with λ = ∞ equals
  that baseline. With a sharp λ, though, ``q`` moves onto rare-class samples whose
  ``c_i / mean c`` is large (about 23 for the rarest class of CIFAR-10-LT at ratio 100), and
  the objective grows with it.
- ``"weighted"``: divide by the ``q``-weighted mean ``c̄_q = Σ q_i c_i / Σ q_i``, so that::

      objective = (Σ_i q_i) · Σ_i (q_i c_i / Σ_j q_j c_j) · l_i

  is ``Σ q`` times a convex combination of the losses, as ABSGD without class weights is:
  the gradient's direction is that of ``True``, its scale no longer grows with ``c``. Equal
  to ``True`` for uniform ``q`` (so λ = ∞ is still the baseline) and without a weighting.
  Meant for a fixed λ: with the target-ESS form's rescaling the step is already the base's.
- ``False``: the raw ``Σ q_i c_i l_i``, as in the ABSGD authors' code.

With a sample weighting, :attr:`Objective.last_step_scale` is the sum of the coefficients the
last batch's objective put on its per-sample losses, ``Σ_i q_i c_i · r / n`` (``r`` the
weighting's rescale factor, ``last_rescale``, 1 if it does not rescale; ``n`` the normaliser
above: ``mean c``, ``Σ q c / Σ q`` or 1): 1 for a mean or a class-weighted mean, so with
``True`` or ``"weighted"`` it is the step relative to the base's at equal per-sample gradients
(with ``False`` relative to a plain mean: it includes the class weights' own mean). ABSGD's
weights sum to about ``1/α + u`` (``u`` its ``uniform`` option); ``"weighted"`` keeps the
scale at ``Σ q · r``, while the batch mean multiplies it by ``Σ q c / (Σ q · mean c)``, which
grows as the weights move onto the samples of large ``c``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from absgd.class_weights import ClassWeightSchedule, build_class_weighting
from absgd.losses import build_loss
from absgd.registry import Registry
from absgd.rgd import RGDWeighting
from absgd.weighting import ABWeighting

__all__ = ["SAMPLE_WEIGHTINGS", "Objective", "build_objective"]

Placement = Literal["inside", "outside"]
PLACEMENTS = ("inside", "outside")
ClassWeightNorm = bool | Literal["weighted"]
CLASS_WEIGHT_NORMS = (True, False, "weighted")


class SampleWeighting(Protocol):
    """What the objective needs of a per-sample weighting (:class:`absgd.ABWeighting`,
    :class:`absgd.rgd.RGDWeighting`): detached weights of a batch, and how to sum with them."""

    last_weights: Tensor | None

    def weights(self, losses: Tensor) -> Tensor: ...

    def weighted_sum(self, values: Tensor, weights: Tensor) -> Tensor: ...

    def __call__(self, losses: Tensor) -> Tensor: ...


class Objective(nn.Module):
    """``loss`` (per sample) × class weights (a schedule of the epoch) × ``weighting``.

    Args:
        loss: a module returning one loss per sample (``reduction="none"``).
        class_weighting: a class-weight schedule ``epoch -> weights | None`` (see
            :mod:`absgd.class_weights`) or ``None``; call :meth:`set_epoch` at the start of
            every epoch so deferred schemes (DRW) switch on time.
        weighting: a per-sample weighting (:class:`absgd.ABWeighting`,
            :class:`absgd.rgd.RGDWeighting`) or ``None`` for uniform ``1/B``.
        placement: ``"inside"`` or ``"outside"`` (see the module docstring).
        normalize_class_weights: ``True`` divides by the batch mean of the class weights,
            ``"weighted"`` by their mean under the sample weights ``q``, ``False`` not at all
            (see the module docstring).
        sync: average the class weights over the global batch of all processes (default:
            whenever ``torch.distributed`` is initialised).

    Example:
        >>> obj = build_objective("ldam", class_counts=[500, 50, 5], class_weighting="drw",
        ...                       class_weighting_options={"switch": 2}, weighting="absgd",
        ...                       weighting_options={"lam": 1.0})
        >>> obj.set_epoch(0)
        >>> loss = obj(torch.randn(8, 3), torch.tensor([0, 0, 0, 0, 1, 1, 2, 0]))
        >>> loss.shape
        torch.Size([])
    """

    class_weight: Tensor | None
    last_step_scale: Tensor | None
    """The sum of the last batch's coefficients on its per-sample losses (detached; ``None``
    without a sample weighting): see the module docstring."""

    def __init__(
        self,
        loss: nn.Module,
        *,
        class_weighting: ClassWeightSchedule | None = None,
        weighting: nn.Module | None = None,
        placement: Placement = "inside",
        normalize_class_weights: ClassWeightNorm = True,
        sync: bool | None = None,
    ) -> None:
        super().__init__()
        if getattr(loss, "reduction", "none") != "none":
            raise ValueError(
                f"the objective needs per-sample losses; got a loss with "
                f"reduction={loss.reduction!r}, build it with reduction='none'"
            )
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.loss = loss
        self.class_weighting = class_weighting
        self.weighting = cast("SampleWeighting | None", weighting)
        self.placement = placement
        if not (isinstance(normalize_class_weights, bool) or normalize_class_weights == "weighted"):
            raise ValueError(
                f"normalize_class_weights must be one of {CLASS_WEIGHT_NORMS}, got "
                f"{normalize_class_weights!r}"
            )
        self.normalize_class_weights: ClassWeightNorm = normalize_class_weights
        self.sync = sync
        # Not persistent: it is a pure function of the epoch, restored by set_epoch on resume.
        self.register_buffer("class_weight", None, persistent=False)
        self.last_step_scale = None
        self.epoch: float = 0.0
        self.set_epoch(0)

    def set_epoch(self, epoch: float) -> None:
        """Apply the class-weight schedule for ``epoch`` (0-based)."""
        self.epoch = epoch
        weights = None if self.class_weighting is None else self.class_weighting(epoch)
        if weights is not None:
            device = self.class_weight.device if self.class_weight is not None else None
            weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
        self.class_weight = weights

    @property
    def last_weights(self) -> Tensor | None:
        """The per-sample weights ``q`` of the last batch (``None`` without a weighting)."""
        return None if self.weighting is None else self.weighting.last_weights

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        losses = self.loss(logits, target).to(torch.float32)
        if losses.dim() != 1 or losses.shape[0] != target.shape[0]:
            raise ValueError(
                f"the loss returned shape {tuple(losses.shape)} for a batch of "
                f"{target.shape[0]}; it must return one loss per sample (reduction='none')"
            )
        w = self.weighting
        if self.class_weight is None:
            if w is None:
                return losses.mean()
            total = w(losses)  # no class weights (c = 1)
            assert w.last_weights is not None
            self.last_step_scale = self._step_scale(w.last_weights.sum(), None)
            return total
        c = self.class_weight.to(losses.device)[target.long()]
        weighted = c * losses
        q: Tensor | None = None
        if w is None:
            total = weighted.mean()
        else:
            q = w.weights(weighted if self.placement == "inside" else losses)
            total = w.weighted_sum(weighted, q)
        normaliser = self._normaliser(c, q)
        if q is not None:
            self.last_step_scale = self._step_scale((q * c).sum(), normaliser)
        return total if normaliser is None else total / normaliser

    def _normaliser(self, c: Tensor, q: Tensor | None) -> Tensor | None:
        """What the class-weighted sum is divided by (``None``: nothing)."""
        if self.normalize_class_weights is False:
            return None
        by = q if self.normalize_class_weights == "weighted" else None
        return self._mean_class_weight(c, by)

    def _step_scale(self, mass: Tensor, normaliser: Tensor | None) -> Tensor:
        """``mass · r / n``: the coefficient sum of the module docstring (detached)."""
        assert self.weighting is not None
        scale = mass.detach().to(torch.float32)
        # a weighting without ``last_rescale`` (written before it existed) does not rescale
        rescale = getattr(self.weighting, "last_rescale", None)
        if rescale is not None:
            scale = scale * rescale
        return scale if normaliser is None else scale / normaliser.detach()

    def _mean_class_weight(self, c: Tensor, q: Tensor | None = None) -> Tensor:
        """Mean of ``c`` over the batch (``Σ q c / Σ q`` with sample weights ``q``); over the
        global batch when processes are synchronised, so that DDP's gradient average equals
        the single-process gradient."""
        q = torch.ones_like(c) if q is None else q.detach().to(c.dtype)
        stats = torch.stack([(q * c).sum(), q.sum()])
        if self.sync if self.sync is not None else dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats, op=dist.ReduceOp.SUM)
        # q is positive; should every weight underflow, fall back to the plain mean.
        return torch.where(stats[1] > 0, stats[0] / stats[1], c.mean())

    def extra_repr(self) -> str:
        return f"placement={self.placement!r}, class_weighting={self.class_weighting!r}"


SAMPLE_WEIGHTINGS: Registry = Registry("sample weighting")


@SAMPLE_WEIGHTINGS.register("none")
def _no_weighting() -> None:
    return None


@SAMPLE_WEIGHTINGS.register("absgd")
def _absgd(
    *,
    lam: float,
    gamma: float = 0.9,
    alpha: float = 1.0,
    init: str = "first_batch",
    max_weight: float | None = None,
    uniform: float = 0.0,
    target_ess: float | None = None,
    lam_rate: float = 1.0,
    rescale: bool | None = None,
    check_finite: bool = True,
    sync: bool | None = None,
) -> ABWeighting:
    return ABWeighting(
        lam,
        gamma=gamma,
        alpha=alpha,
        init=init,  # type: ignore[arg-type]
        max_weight=max_weight,
        uniform=uniform,
        target_ess=target_ess,
        lam_rate=lam_rate,
        rescale=rescale,
        check_finite=check_finite,
        sync=sync,
    )


@SAMPLE_WEIGHTINGS.register("rgd")
def _rgd(*, tau: float = 1.0, normalize: bool = False) -> RGDWeighting:
    return RGDWeighting(tau, normalize=normalize)


def build_objective(
    loss: str = "ce",
    *,
    class_counts: Sequence[int] | np.ndarray | Tensor | None = None,
    class_weighting: str = "none",
    weighting: str = "none",
    placement: Placement = "inside",
    normalize_class_weights: ClassWeightNorm = True,
    loss_options: dict[str, Any] | None = None,
    class_weighting_options: dict[str, Any] | None = None,
    weighting_options: dict[str, Any] | None = None,
) -> Objective:
    """Compose an :class:`Objective` from registered names, as a config names them.

    ``loss`` is a name of :data:`absgd.losses.LOSSES`, ``class_weighting`` of
    :data:`absgd.class_weights.CLASS_WEIGHTINGS` (``none``, ``class_balanced``, ``drw``,
    ``inverse``, ``inverse_sqrt``) and ``weighting`` of :data:`SAMPLE_WEIGHTINGS`
    (``none``, ``absgd``, ``rgd``). ABSGD needs ``weighting_options={"lam": ...}``
    (``math.inf`` for a two-stage run that starts as plain SGD).
    """
    loss_options = dict(loss_options or {})
    if loss_options.get("reduction", "none") != "none":
        raise ValueError("loss_options may not set reduction: the objective reduces itself")
    loss_options["reduction"] = "none"
    built_loss = build_loss(loss, class_counts=class_counts, **loss_options)
    schedule = build_class_weighting(
        class_weighting, class_counts=class_counts, **(class_weighting_options or {})
    )
    options = dict(weighting_options or {})
    if weighting == "absgd" and "lam" not in options:
        raise ValueError(
            "weighting 'absgd' needs weighting_options={'lam': ...} (λ > 0 for imbalance, "
            f"λ < 0 for label noise, {math.inf} for plain SGD)"
        )
    sample_weighting = SAMPLE_WEIGHTINGS.build(weighting, **options)
    return Objective(
        built_loss,
        class_weighting=schedule,
        weighting=sample_weighting,
        placement=placement,
        normalize_class_weights=normalize_class_weights,
    )
