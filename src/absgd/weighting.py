r"""Attentional-biased sample weighting: the method of ABSGD.

Qi, Xu, Yin, Jin, Yang, "Attentional-Biased Stochastic Gradient Descent", TMLR 2023
(arXiv 2012.06951), Algorithm 1.

For per-sample losses :math:`l_1, \dots, l_B` of a mini-batch, temperature λ, moving-average
rate γ ∈ (0, 1] and scale α > 0::

    m_t   = mean_i exp(l_i / λ)                        batch statistic
    s_t   = (1 - γ) s_{t-1} + γ · α · m_t              moving-average normaliser
    p_i   = exp(l_i / λ) / (B · s_t)                   attentional weight (detached)
    loss  = Σ_i p_i · l_i                              one backward pass, as plain SGD

It is the stochastic solver of the KL-regularised distributionally robust objective
``min_w max_p Σ p_i l_i - λ KL(p, 1/n)`` for λ > 0 (hard and minority samples weigh more) and
of the min-min version for λ < 0 (high-loss, likely mislabelled samples weigh less).
λ = ∞ is plain SGD: every weight is exactly ``1/B``.

Numerics. Everything is done in log space in float32 whatever the loss dtype::

    log m_t = logsumexp(l/λ) - log B
    log s_t = logaddexp(log(1-γ) + log s_{t-1},  log γ + log α + log m_t)
    p_i     = exp(l_i/λ - log s_t) / B

Since ``log s_t ≥ log(γ α) + max_i l_i/λ - log B``, every weight is at most ``1/(γ α)``: no
overflow for any loss scale or λ.

Differences from the authors' implementation
--------------------------------------------
* Log-space arithmetic: the reference exponentiates ``l/λ`` directly, which overflows to
  inf/NaN once ``l/λ`` exceeds about 88 in float32 (for example λ = 0.1 and a loss of 9).
* Initialisation: the reference starts from ``s_0 = 0`` so the first weights sum to ``1/(γα)``;
  the default here, ``init="first_batch"``, sets ``s_1 = α m_1`` so they sum to ``1/α``.
  ``init="zero"`` reproduces the reference exactly.
* State: the reference keeps ``s`` as a tensor attached to the autograd graph of past batches;
  here it is a detached buffer saved by ``state_dict()`` so a resumed run continues exactly.
* λ = ∞ is ``math.inf``, not "any λ ≥ 200"; while λ = ∞ the normaliser is cleared, so the
  first batch after a two-stage switch initialises it afresh (with ``init="zero"`` this is the
  reference's behaviour at its milestone).
* Multi-process: the batch statistic is all-reduced so every rank holds the same ``s_t``.
* The authors' noisy-label code adds ``1/B`` to every weight (``uniform=1`` here); their
  long-tailed code does not (the default ``uniform=0``).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from absgd.temperature import solve_lam, validate_target_ess

__all__ = [
    "ABState",
    "ABWeighting",
    "NonFiniteLossError",
    "WeightingStep",
    "ab_weights",
    "effective_sample_size",
    "validate_lam",
]


class NonFiniteLossError(ValueError):
    """A batch of per-sample losses held NaN or infinite values (the state is unchanged)."""


Init = Literal["first_batch", "zero"]
_INITS = ("first_batch", "zero")


class ABState(NamedTuple):
    """The normaliser state: ``log s = log_s_ref + log_s_delta``, and a batch count.

    ``log s`` is kept as a reference point (the largest ``l/λ`` of the last batch) plus a
    small offset, so float32 keeps it to full relative precision even when ``l/λ`` is huge
    (a loss of 1e4 with λ = 0.01 gives ``l/λ = 1e6``, where a float32 has an ulp of 0.06).
    """

    log_s_ref: Tensor
    """Reference point of ``log s`` (float32 scalar)."""
    log_s_delta: Tensor
    """``log s - log_s_ref`` (float32 scalar; ``-inf`` means ``s = 0``)."""
    step: Tensor
    """Number of batches in the moving average (int64 scalar); 0 means not initialised."""
    lam: Tensor | None = None
    """The λ that ``log s`` was computed at (float32 scalar; NaN or ``None``: unknown). When
    the next batch comes with another λ of the same sign, the average is carried over to it
    as ``log s ← log s · λ_old / λ_new`` (see :func:`ab_weights`)."""

    @classmethod
    def initial(cls, device: torch.device | str | None = None) -> ABState:
        """``s = 0``, ``step = 0``, no λ yet."""
        return cls(
            torch.zeros((), dtype=torch.float32, device=device),
            torch.full((), -math.inf, dtype=torch.float32, device=device),
            torch.zeros((), dtype=torch.int64, device=device),
            torch.full((), math.nan, dtype=torch.float32, device=device),
        )

    def log_s(self) -> Tensor:
        """``log s_t`` as one float32 scalar (rounded where ``|log s|`` is large)."""
        return self.log_s_ref + self.log_s_delta


class WeightingStep(NamedTuple):
    """Result of one weighting step: the weights and the new normaliser state."""

    weights: Tensor
    """Detached weights ``p_i`` (float32, shape ``(B,)``)."""
    state: ABState
    """The state after this batch (equal to the input state if the batch was refused)."""
    nonfinite: Tensor
    """``True`` if the (global) batch has a NaN or infinite loss; the state is then unchanged."""


def validate_lam(lam: float) -> float:
    """Return λ as a float, or raise ``ValueError`` if it is 0 or NaN.

    λ may be any non-zero real number or ±``math.inf`` (``-inf`` is treated like ``+inf``:
    uniform weights).
    """
    try:
        if isinstance(lam, bool):
            raise TypeError
        value = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lam must be a non-zero real number or math.inf, got {lam!r}") from None
    if value == 0.0 or math.isnan(value):
        raise ValueError(
            f"lam must be a non-zero real number or math.inf, got {lam!r}: "
            "lam > 0 up-weights hard samples (imbalance), lam < 0 down-weights them "
            "(label noise), lam = math.inf is plain SGD"
        )
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate_options(
    gamma: float, alpha: float, init: str, max_weight: float | None, uniform: float = 0.0
) -> None:
    if not (_is_number(gamma) and 0.0 < gamma <= 1.0):
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if not (_is_number(alpha) and alpha > 0.0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    if max_weight is not None and not (
        _is_number(max_weight) and max_weight > 0.0 and not math.isnan(max_weight)
    ):
        raise ValueError(f"max_weight must be None or a number > 0, got {max_weight!r}")
    if not (_is_number(uniform) and 0.0 <= uniform < math.inf):
        raise ValueError(f"uniform must be a finite number >= 0, got {uniform!r}")


def _check_losses(losses: Tensor) -> None:
    if not isinstance(losses, Tensor):
        raise TypeError(
            f"losses must be a torch.Tensor of per-sample losses, got {type(losses).__name__}"
        )
    if losses.dim() != 1:
        raise ValueError(
            f"expected a 1-D tensor of per-sample losses, got shape {tuple(losses.shape)}; "
            "build the criterion with reduction='none' (for example "
            "nn.CrossEntropyLoss(reduction='none')) so it returns one loss per sample"
        )
    if losses.numel() == 0:
        raise ValueError("got an empty batch of losses; ABSGD needs at least one sample")
    if not (losses.is_floating_point()):
        raise TypeError(f"losses must be a floating-point tensor, got dtype {losses.dtype}")


def _batch_statistic(
    z: Tensor, group: dist.ProcessGroup | None, sync: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """``(M, log mean exp(z - M), whether some entry is NaN or infinite)`` with ``M = max z``.

    A batch with a non-finite entry gives a meaningless statistic; the caller refuses it by
    the flag (true on every rank if true on one). With ``sync`` the statistic is reduced over
    every rank of ``group``: the global max, then the sums of ``exp(z - M)``, the flags and
    the batch sizes, so the result is that of one process holding the concatenated batch.
    """
    shift = z.max()
    if sync:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX, group=group)
    sum_exp = torch.exp(z - shift).sum()
    # One NaN or ±inf makes the sum non-finite: a cheap test of the whole batch.
    bad = torch.isfinite(z.sum()).logical_not_()
    if not sync:
        return shift, torch.log(sum_exp) - math.log(z.numel()), bad
    stats = torch.stack([sum_exp, bad.to(z.dtype), torch.full_like(sum_exp, z.numel())])
    dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=group)
    return shift, torch.log(stats[0]) - torch.log(stats[2]), stats[1] > 0


def ab_weights(
    losses: Tensor,
    lam: float | Tensor,
    state: ABState,
    *,
    gamma: float = 0.9,
    alpha: float = 1.0,
    init: Init = "first_batch",
    max_weight: float | None = None,
    uniform: float = 0.0,
    group: dist.ProcessGroup | None = None,
    sync: bool = False,
) -> WeightingStep:
    r"""One ABSGD weighting step as a pure function (no state is modified).

    Args:
        losses: per-sample losses, shape ``(B,)``, any floating dtype. Only their values are
            used (they are detached here).
        lam: temperature λ (non-zero, may be negative; ``math.inf`` gives ``1/B`` and returns
            the state unchanged). A float32 scalar tensor is accepted too (a λ computed on the
            device, e.g. by :func:`absgd.temperature.solve_lam`).
        state: the normaliser before this batch (:meth:`ABState.initial` to start). With
            ``state.step == 0`` and ``init="first_batch"`` the normaliser is set to
            ``α m_t``; with ``init="zero"`` the update runs from whatever ``s`` holds
            (``s = 0`` initially). If ``state.lam`` is another λ of the same sign, the
            average is first carried over to this one, ``log s ← log s · state.lam / λ``
            (exact when the losses are equal, and it keeps ``λ log s``, the entropic risk
            the average estimates, continuous); a λ of the other sign restarts it.
        gamma, alpha, init, max_weight, uniform: see :class:`ABWeighting`.
        group, sync: with ``sync=True`` the batch statistic is all-reduced over ``group``.

    Returns:
        :class:`WeightingStep` with detached float32 weights and the new state. If the batch
        has a non-finite loss, the returned state equals the input state.

    Example:
        >>> import torch
        >>> losses = torch.tensor([0.1, 2.0, 0.5, 0.4])
        >>> out = ab_weights(losses, 1.0, ABState.initial())
        >>> round(out.weights.sum().item(), 6)  # first batch, alpha = 1: weights sum to 1
        1.0
        >>> bool(out.weights.argmax() == 1)  # the hardest sample weighs most for lam > 0
        True
        >>> int(out.state.step)
        1
    """
    if not isinstance(lam, Tensor):
        lam = validate_lam(lam)
    _validate_options(gamma, alpha, init, max_weight, uniform)
    _check_losses(losses)
    return _weighting_step(losses, lam, state, gamma, alpha, init, max_weight, group, sync, uniform)


def _weighting_step(
    losses: Tensor,
    lam: float | Tensor,
    state: ABState,
    gamma: float,
    alpha: float,
    init: str,
    max_weight: float | None,
    group: dist.ProcessGroup | None,
    sync: bool,
    uniform: float = 0.0,
) -> WeightingStep:
    """:func:`ab_weights` without the argument checks (the module checks them once)."""
    batch = losses.numel()
    if not isinstance(lam, Tensor) and math.isinf(lam):
        weights = torch.full((batch,), 1.0 / batch, dtype=torch.float32, device=losses.device)
        bad = torch.isfinite(losses.detach().sum()).logical_not_()
        return WeightingStep(weights, state, bad)

    lam_t = torch.as_tensor(lam, dtype=torch.float32, device=losses.device)
    z = losses.detach().to(torch.float32) / lam_t
    shift, log_m, bad = _batch_statistic(z, group, sync)
    # Carry the average over to this λ (a ratio of exactly 1 when λ has not moved).
    old = state.lam if state.lam is not None else torch.full_like(lam_t, math.nan)
    known = torch.isfinite(old) & torch.isfinite(lam_t)
    flipped = known & (old * lam_t < 0)
    ratio = torch.where(known & ~flipped, old / lam_t, torch.ones_like(lam_t))
    # Everything below is relative to M = max z, so it stays small and exact in float32.
    log_m = log_m + math.log(alpha)  # log(α m_t) - M
    prev = (state.log_s_ref * ratio - shift) + state.log_s_delta * ratio  # log s_{t-1} - M
    prev = torch.where(flipped, torch.full_like(prev, -math.inf), prev)
    decay = math.log1p(-gamma) if gamma < 1.0 else -math.inf
    delta = torch.logaddexp(prev + decay, log_m + math.log(gamma))
    steps = torch.where(flipped, torch.zeros_like(state.step), state.step)
    if init == "first_batch":
        delta = torch.where(steps == 0, log_m, delta)

    ok = bad.logical_not()
    new_state = ABState(
        torch.where(ok, shift, state.log_s_ref),
        torch.where(ok, delta, state.log_s_delta),
        torch.where(ok, steps + 1, state.step),
        torch.where(ok, lam_t, old),
    )
    weights = torch.exp((z - shift) - delta).div_(batch)
    if max_weight is not None:
        weights = weights.clamp_(max=max_weight / batch)
    if uniform:
        weights = weights.add_(uniform / batch)
    return WeightingStep(weights, new_state, bad)


def effective_sample_size(weights: Tensor) -> Tensor:
    r"""Normalised effective sample size ``(Σ p)² / (B · Σ p²)`` in ``[0, 1]``.

    1 means uniform weights (plain SGD); ``1/B`` means one sample carries all the weight; 0
    means none does: every weight underflowed to 0 (a batch far below the moving average at a
    tiny ``|λ|``) and the batch gives no gradient.

    >>> effective_sample_size(torch.tensor([0.25, 0.25, 0.25, 0.25])).item()
    1.0
    >>> effective_sample_size(torch.tensor([1.0, 0.0, 0.0, 0.0])).item()
    0.25
    >>> effective_sample_size(torch.zeros(4)).item()
    0.0
    """
    if weights.numel() == 0:
        raise ValueError("the effective sample size of an empty batch is undefined")
    w = weights.detach().to(torch.float32)
    # ESS is scale-free: dividing by the largest |p| keeps Σ p² from under- or overflowing
    top = w.abs().amax()
    w = w / torch.where(top > 0, top, torch.ones_like(top))
    ess = w.sum() ** 2 / (w.numel() * (w * w).sum())
    return torch.where(top > 0, ess, torch.zeros_like(ess))


class ABWeighting(nn.Module):
    r"""Stateful ABSGD weighting: per-sample losses in, weighted scalar loss out.

    ``forward(losses)`` returns ``Σ_i p_i · l_i`` with detached weights
    ``p_i = exp(l_i/λ) / (B · s_t)`` (plus ``u/B`` with ``uniform=u``) and updates the
    moving-average normaliser
    ``s_t = (1-γ) s_{t-1} + γ α mean_i exp(l_i/λ)`` (see the module docstring for the maths and
    the differences from the authors' code). Back-propagating the result gives
    ``Σ_i p_i ∇l_i``: one backward pass, the cost of plain SGD. Pair it with
    :class:`absgd.ABSGD` (momentum SGD) or :class:`absgd.ABAdam`.

    **Target effective sample size.** With ``target_ess=e`` the temperature is not fixed: each
    batch's ``|λ_b|`` is solved so that its weights have normalised effective sample size
    ``e`` (:func:`absgd.temperature.solve_lam`, over the global batch under
    ``torch.distributed``); by default (``lam_rate=1``) every batch uses its own ``λ_b``, so
    every batch's weights have ESS ``e``, the per-batch constrained form of the DRO problem.
    ``lam_rate=ρ < 1`` smooths λ across batches in log space instead,
    ``log|λ_t| = (1-ρ) log|λ_{t-1}| + ρ log|λ_b|`` (the first batch after a reset takes
    ``λ_b`` as it is); the batches' ESS then scatters around ``e`` and averages below it
    (0.79 per epoch for ``e = 0.9`` at ρ = 0.1 on Fashion-MNIST-LT). ``lam`` then
    gives only the direction: its sign (> 0 imbalance, < 0 label noise), or ``math.inf`` for
    plain SGD (the first stage of a two-stage run). The choice is scale-free: losses times
    ``k > 0`` or plus a constant give the same weights. When λ moves, the moving average is
    carried over to the new λ (:func:`ab_weights`), so the weights keep summing to about
    ``1/α``.

    **Step size.** Weighting concentrates the step on high-loss samples, whose gradients are
    large: with ``rescale=True`` the returned loss is multiplied by the detached ratio
    ``mean_i l_i / Σ_i p_i l_i``, so its value (and the size of the step) is the unweighted
    mean loss's while its gradient direction stays ``Σ p_i ∇l_i``. It is the default with
    ``target_ess`` and λ > 0 (off otherwise: the authors' form). On Fashion-MNIST-LT
    (docs/results.md, section 6) target 0.7 without it collapsed after the switch on LDAM-DRW
    and CB-DRW in every seed, and with it never did; clipping the gradient norm instead
    (``rescale=False`` with ``clip_grad_norm_`` at 5) also prevented the collapse and lost
    less accuracy, but the clip level depends on the model and loss, so it is left to the
    training loop. With λ < 0 the weight moves onto low losses, so the ratio exceeds 1 and
    grows as the model fits them: rescaled, targets 0.7 and 0.5 and λ = −1 collapsed the whole
    model onto one class under label noise, and unrescaled no run did (docs/results.md,
    section 8), so there the default is off.

    Args:
        lam: temperature λ. ``λ > 0`` favours high-loss samples (imbalance; the paper uses
            values around 1 to 5 for CIFAR-LT with cross-entropy), ``λ < 0`` discounts them
            (label noise), ``math.inf`` is plain SGD. Can be changed between steps
            (``module.lam = ...``). With ``target_ess`` only its sign (or ∞) is used.
        gamma: moving-average rate γ ∈ (0, 1]; 1 normalises by the current batch only.
        alpha: scale α > 0 of the batch mean in the update (the authors' ``abalpha``); the
            weights then sum to about ``1/α`` (``1/α + u`` with ``uniform``), which rescales
            the effective learning rate.
        init: ``"first_batch"`` (default) initialises ``s`` with the first batch so weights
            sum to ``1/α`` from the start; ``"zero"`` starts from ``s_0 = 0`` as the
            authors' code does.
        max_weight: optional clip of ``B · p_i`` (the weight relative to uniform); it clips
            the attentional part, before ``uniform`` is added.
        uniform: ``u ≥ 0`` added as ``u/B`` to every weight while λ is finite, so the step is
            the attentional one plus ``u`` times the plain mean loss (default 0: pure ABSGD)
            and the weights sum to about ``1/α + u``. The authors' noisy-label code uses
            ``u = 1`` (``p = exp(l/λ)/(B s) + 1/B``): no sample's weight falls below the
            uniform one even with λ < 0. Not with ``target_ess`` (the added weight would
            move the effective sample size off the target); with ``rescale`` the whole
            weighted sum is scaled to the mean loss.
        target_ess: ``None`` (fixed λ) or the normalised effective sample size ``e ∈ (0, 1]``
            the weights should have (0.5: half the batch carries the weight; 1: plain SGD).
        lam_rate: smoothing rate ρ ∈ (0, 1] of ``log|λ|`` with ``target_ess`` (the default 1:
            every batch exactly at the target; 0.1 averages λ over about 10 batches).
        rescale: scale the weighted loss to the mean loss (see above); ``None``: on with
            ``target_ess`` and λ > 0, off otherwise (decided at each step from the current
            sign of λ).
        check_finite: raise ``ValueError`` on a NaN/inf loss (one host synchronisation per
            step; under ``torch.distributed`` the flag is reduced over the ranks, also at
            λ = ∞, so every rank raises together). With ``False`` there is no check and no
            synchronisation; a non-finite batch still leaves the state unchanged but the
            returned loss is non-finite.
        sync: all-reduce the batch statistic over ``process_group`` so every rank holds the
            same ``s_t`` (and solves the same λ). ``None`` (default) syncs whenever
            ``torch.distributed`` is initialised. Each rank divides by its local batch size,
            so with equal local batches DDP's gradient averaging gives exactly the
            single-process gradient on the concatenated global batch.
        process_group: the group to reduce over (default: the world).

    State (buffers, in ``state_dict()``, moved by ``.to(device)``, kept in float32 by
    ``.to(dtype)``): ``log_s_ref`` and ``log_s_delta`` (``log s_t`` is their sum, see
    :class:`ABState`), ``step`` (batches in the average since the last reset), ``s_lam`` (the
    λ of the average), ``lam_value`` (λ as set) and ``log_abs_lam`` (the smoothed ``log|λ|``
    of ``target_ess``; NaN before its first batch).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = nn.Linear(4, 3)
        >>> criterion = nn.CrossEntropyLoss(reduction="none")
        >>> weighting = ABWeighting(lam=1.0)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> loss = weighting(criterion(model(x), y))
        >>> loss.backward()
        >>> weighting.last_weights.shape
        torch.Size([8])
        >>> round(weighting.last_weights.sum().item(), 5)
        1.0
        >>> auto = ABWeighting(lam=1.0, target_ess=0.5)  # λ from the batch: half of it counts
        >>> _ = auto(criterion(model(x), y))
        >>> round(auto.last_effective_sample_size.item(), 2)
        0.5
    """

    log_s_ref: Tensor
    log_s_delta: Tensor
    step: Tensor
    s_lam: Tensor
    lam_value: Tensor
    log_abs_lam: Tensor

    def __init__(
        self,
        lam: float,
        *,
        gamma: float = 0.9,
        alpha: float = 1.0,
        init: Init = "first_batch",
        max_weight: float | None = None,
        uniform: float = 0.0,
        target_ess: float | None = None,
        lam_rate: float = 1.0,
        rescale: bool | None = None,
        check_finite: bool = True,
        sync: bool | None = None,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        _validate_options(gamma, alpha, init, max_weight, uniform)
        if target_ess is not None:
            target_ess = validate_target_ess(target_ess)
            if uniform:
                raise ValueError(
                    f"uniform={uniform!r} cannot be combined with target_ess={target_ess!r}: "
                    "the added uniform weight moves the effective sample size off the target; "
                    "use one or the other"
                )
        if not (_is_number(lam_rate) and 0.0 < lam_rate <= 1.0):
            raise ValueError(f"lam_rate must be in (0, 1], got {lam_rate!r}")
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.init = init
        self.max_weight = None if max_weight is None else float(max_weight)
        self.uniform = float(uniform)
        self.target_ess = target_ess
        self.lam_rate = float(lam_rate)
        self.rescale = rescale  # validated by the property's setter
        self.check_finite = bool(check_finite)
        self.sync = sync
        self.process_group = process_group
        self._lam = validate_lam(lam)
        initial = ABState.initial()
        self.register_buffer("log_s_ref", initial.log_s_ref)
        self.register_buffer("log_s_delta", initial.log_s_delta)
        self.register_buffer("step", initial.step)
        self.register_buffer("s_lam", initial.lam)
        self.register_buffer("lam_value", torch.tensor(self._lam, dtype=torch.float32))
        self.register_buffer("log_abs_lam", torch.full((), math.nan, dtype=torch.float32))
        self._register_load_state_dict_pre_hook(_fill_new_buffers, with_module=True)
        self.register_load_state_dict_post_hook(_refresh_lam_mirror)
        self.last_weights: Tensor | None = None
        self.last_rescale: Tensor | None = None
        """The detached factor the last :meth:`weighted_sum` multiplied by (``rescale``), or
        ``None`` if it did not rescale."""

    # -- λ ------------------------------------------------------------------------------
    @property
    def lam(self) -> float:
        """Temperature λ in force. Fixed λ: the value set. With ``target_ess``: the smoothed
        λ after the last batch (``±inf`` before the first, and while the direction is ∞)."""
        if self.target_ess is None or math.isinf(self._lam):
            return self._lam
        magnitude = math.exp(float(self.log_abs_lam))  # NaN before the first batch
        return math.copysign(magnitude if math.isfinite(magnitude) else math.inf, self._lam)

    @lam.setter
    def lam(self, value: float) -> None:
        value = validate_lam(value)
        if self.target_ess is not None and value * self._lam < 0:
            self.log_abs_lam.fill_(math.nan)  # the other direction: solve afresh
        self._lam = value
        self.lam_value.fill_(self._lam)

    # -- state --------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the moving average (and the smoothed λ of ``target_ess``); the next batch
        initialises them."""
        self.log_s_ref.zero_()
        self.log_s_delta.fill_(-math.inf)
        self.step.zero_()
        self.s_lam.fill_(math.nan)
        self.log_abs_lam.fill_(math.nan)

    @property
    def state(self) -> ABState:
        """The current normaliser state (the buffers themselves, not copies)."""
        return ABState(self.log_s_ref, self.log_s_delta, self.step, self.s_lam)

    @property
    def log_normalizer(self) -> Tensor:
        """``log s_t`` (float32 scalar; ``-inf`` before the first finite-λ batch)."""
        return self.state.log_s()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # Buffers follow device moves but keep their dtype: ``module.half()`` or
        # ``.to(torch.bfloat16)`` must not round the normaliser.
        originals = dict(self._buffers)
        super()._apply(fn, recurse)
        for name, original in originals.items():
            moved = self._buffers[name]
            if original is not None and moved is not None and moved.dtype != original.dtype:
                self._buffers[name] = original.to(device=moved.device)
        return self

    # -- forward ------------------------------------------------------------------------
    def _should_sync(self) -> bool:
        if self.sync is None:
            return dist.is_available() and dist.is_initialized()
        return self.sync

    def _lam_in_force(self, losses: Tensor, sync: bool) -> tuple[float | Tensor, Tensor | None]:
        """The λ for this batch and, with ``target_ess``, the new smoothed ``log|λ|``."""
        if self.target_ess is None:
            return self._lam, None
        sign = 1.0 if self._lam > 0 else -1.0
        log_b = torch.log(
            solve_lam(losses, self.target_ess, sign=sign, sync=sync, group=self.process_group)
        )
        prev = self.log_abs_lam
        fresh = ~torch.isfinite(prev)
        smoothed = prev + self.lam_rate * (log_b - prev)
        # An all-equal batch (λ_b = ∞) says nothing about the scale: keep the λ in force.
        new = torch.where(fresh, log_b, torch.where(torch.isfinite(log_b), smoothed, prev))
        return sign * torch.exp(new), new

    def weights(self, losses: Tensor) -> Tensor:
        """Update the state with this batch and return its detached weights ``p``."""
        _check_losses(losses)
        infinite = math.isinf(self._lam)
        sync = self._should_sync()
        if infinite:
            # Plain SGD; the moving average of exp(l/λ) is meaningless for λ = ∞, so it is
            # cleared and the first finite-λ batch re-initialises it.
            self.reset()
        lam, log_abs_lam = (self._lam, None) if infinite else self._lam_in_force(losses, sync)
        result = _weighting_step(
            losses,
            lam,
            self.state,
            self.gamma,
            self.alpha,
            self.init,
            self.max_weight,
            self.process_group,
            sync and not infinite,
            self.uniform,
        )
        nonfinite = result.nonfinite
        if self.check_finite and infinite and sync:
            # No statistic was reduced at λ = ∞: reduce the flag alone, so that a NaN on one
            # rank stops every rank here instead of leaving the others waiting in backward.
            flag = nonfinite.to(torch.float32)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.process_group)
            nonfinite = flag > 0
        if self.check_finite and bool(nonfinite):
            # The flag is global when synchronised, so every rank raises together.
            local = int(torch.isfinite(losses.detach()).logical_not_().sum())
            raise NonFiniteLossError(
                f"per-sample losses are NaN or infinite ({local} of {losses.numel()} in this "
                "process's batch, or in another process's); the ABSGD state was left "
                "unchanged. Check the learning rate, the inputs and the loss, or pass "
                "check_finite=False to let the caller handle it (for example a GradScaler "
                "skipping the step)"
            )
        self.log_s_ref, self.log_s_delta, self.step, s_lam = result.state
        assert s_lam is not None
        self.s_lam = s_lam
        if log_abs_lam is not None:
            self.log_abs_lam = torch.where(result.nonfinite, self.log_abs_lam, log_abs_lam)
        self.last_weights = result.weights
        return result.weights

    @property
    def rescale(self) -> bool:
        """Whether the weighted loss is scaled to the mean loss; by default with ``target_ess``
        and λ > 0 (with λ < 0 the ratio ``mean l / Σ p l`` exceeds 1 and would enlarge the
        step)."""
        if self._rescale is not None:
            return self._rescale
        return self.target_ess is not None and self._lam > 0

    @rescale.setter
    def rescale(self, value: bool | None) -> None:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"rescale must be True, False or None, got {value!r}")
        self._rescale = value

    def weighted_sum(self, values: Tensor, weights: Tensor) -> Tensor:
        """``Σ_i p_i v_i`` in float32, times the detached ``mean v / Σ p v`` when ``rescale``
        (both over the global batch when synchronised, so every rank scales alike)."""
        values = values.to(torch.float32)
        total = (weights * values).sum()
        self.last_rescale = None
        if not self.rescale or math.isinf(self._lam):
            return total
        stats = torch.stack([values.detach().mean(), total.detach()])
        if self._should_sync():
            dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=self.process_group)
        ratio = torch.where(stats[1] > 0, stats[0] / stats[1], torch.ones_like(stats[0]))
        self.last_rescale = ratio
        return total * ratio

    def forward(self, losses: Tensor) -> Tensor:
        """Return ``Σ_i p_i · l_i`` (float32 scalar) for per-sample ``losses`` of shape ``(B,)``
        (rescaled to the mean loss when ``rescale``)."""
        return self.weighted_sum(losses, self.weights(losses))

    # -- diagnostics --------------------------------------------------------------------
    @property
    def last_effective_sample_size(self) -> Tensor | None:
        """Normalised ESS of the last batch's weights (see :func:`effective_sample_size`)."""
        return None if self.last_weights is None else effective_sample_size(self.last_weights)

    def global_effective_sample_size(self) -> Tensor | None:
        """Normalised ESS of the last global batch's weights: when the weighting synchronises
        (``torch.distributed``), of the union of every rank's last batch, which share one
        normaliser, so the value does not depend on the number of processes; then it is a
        collective that every rank must call. Otherwise :attr:`last_effective_sample_size`."""
        if self.last_weights is None or not self._should_sync():
            return self.last_effective_sample_size
        w = self.last_weights.detach()
        w = w.to(torch.float32 if w.device.type == "mps" else torch.float64)
        top = w.abs().amax()
        dist.all_reduce(top, op=dist.ReduceOp.MAX, group=self.process_group)
        w = w / torch.where(top > 0, top, torch.ones_like(top))  # as effective_sample_size
        stats = torch.stack([w.sum(), (w * w).sum(), torch.full_like(top, w.numel())])
        dist.all_reduce(stats, op=dist.ReduceOp.SUM, group=self.process_group)
        total, squares, size = stats.unbind()
        ess = total * total / (size * torch.where(squares > 0, squares, torch.ones_like(squares)))
        return torch.where(squares > 0, ess, torch.zeros_like(ess)).to(torch.float32)

    @property
    def last_max_weight(self) -> Tensor | None:
        """Largest ``B · p_i`` of the last batch (1 for uniform weights)."""
        if self.last_weights is None:
            return None
        return self.last_weights.max() * self.last_weights.numel()

    def extra_repr(self) -> str:
        parts = [f"lam={self._lam}", f"gamma={self.gamma}", f"alpha={self.alpha}"]
        parts.append(f"init={self.init!r}")
        if self.max_weight is not None:
            parts.append(f"max_weight={self.max_weight}")
        if self.uniform:
            parts.append(f"uniform={self.uniform}")
        if self.target_ess is not None:
            parts.append(f"target_ess={self.target_ess}, lam_rate={self.lam_rate}")
        if self.rescale:
            parts.append("rescale=True")
        return ", ".join(parts)


_NEW_BUFFERS = {"s_lam": math.nan, "log_abs_lam": math.nan}


def _fill_new_buffers(
    module: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_: object
) -> None:
    """State saved before ``s_lam`` / ``log_abs_lam`` existed loads with them unknown (NaN)."""
    for name, value in _NEW_BUFFERS.items():
        state_dict.setdefault(prefix + name, torch.tensor(value, dtype=torch.float32))


def _refresh_lam_mirror(module: nn.Module, incompatible_keys: object) -> None:
    assert isinstance(module, ABWeighting)
    module._lam = validate_lam(float(module.lam_value))
