r"""ABSGD as a scikit-learn classifier, for tabular data and frozen embeddings.

:class:`ABSGDClassifier` trains a linear model (default) or a ReLU MLP with ABSGD (momentum
SGD) or ABAdam on the attentional-biased objective of Qi, Xu, Yin, Jin, Yang,
"Attentional-Biased Stochastic Gradient Descent", TMLR 2023 (arXiv 2012.06951), behind the
scikit-learn API: ``fit`` / ``partial_fit`` / ``predict_proba`` / ``Pipeline`` /
``GridSearchCV``. scikit-learn (>= 1.6) is needed by this module only: ``import absgd`` does not
import it.

The objective. For a mini-batch of ``B`` samples with per-sample losses ``l_i`` (any loss of
:data:`absgd.losses.LOSSES`), sample weights ``ω_i`` and class weights ``c_{y_i}`` (both 1 by
default), ABSGD sees the weighted losses ``v_i = ω_i c_{y_i} l_i`` (``placement="inside"``,
the default: the weights sit in the exponent, as the class weights of the authors' code)::

    s_t  = (1 - γ) s_{t-1} + γ · mean_i exp(v_i / λ)     moving-average normaliser
    p_i  = exp(v_i / λ) / (B · s_t)                      detached attentional weight
    step on  Σ_i p_i · v_i                               one backward pass

With ``placement="outside"`` the weights ``p_i`` come from ``l_i`` instead and the step is on
the same ``Σ_i p_i · v_i``. λ > 0 up-weights hard samples, hence those of rare classes; λ < 0
down-weights them (label noise); ``lam=math.inf`` is plain mini-batch SGD/Adam on
``mean_i v_i``. Nothing is normalised by the mean weight (as in
:class:`sklearn.linear_model.SGDClassifier`), so weights rescale the step; the
``"balanced"`` and ``"effective_number"`` class weights average 1 over the training samples.

Batching (what makes ``fit`` and ``partial_fit`` comparable). ``fit`` runs ``max_iter``
epochs; each epoch visits the training rows in a random order (``shuffle=True``) or in the
given order (``shuffle=False``) in consecutive mini-batches of ``batch_size`` rows, the last
one possibly smaller. ``partial_fit(X, y)`` is one pass over ``X`` in the given order with the
same batching, continuing the model, the ABSGD normaliser and the optimiser state. So with
``shuffle=False`` and ``early_stopping=False``, ``fit(X, y)`` with ``max_iter=1`` equals
``partial_fit`` over consecutive chunks of ``X`` whose sizes are multiples of ``batch_size``.

Randomness. ``rng = sklearn.utils.check_random_state(random_state)``; ``fit`` draws, in this
order, ``seed = rng.randint(2**31 - 1)``, the validation split (``early_stopping=True``) and
one permutation of the training rows per epoch (``shuffle=True``). The parameters are initialised,
layer by layer, weight then bias, uniformly in ``±1/sqrt(fan_in)`` (the distribution of
``torch.nn.Linear``) from ``torch.Generator().manual_seed(seed)``; the global torch and numpy
random states are left alone. ``partial_fit`` draws only ``seed``, on its first call.
"""

from __future__ import annotations

import copy
import itertools
import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.special import expit, log_expit, log_softmax, softmax
from torch import Tensor, nn

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "absgd.sklearn needs scikit-learn >= 1.6; install it with "
        "pip install 'torch-absgd[sklearn]'"
    ) from exc

from absgd.class_weights import effective_number_weights
from absgd.losses import LOSSES, build_loss
from absgd.optim import ABSGD, ABAdam
from absgd.schedules import Constant, Schedule, two_stage
from absgd.temperature import validate_target_ess
from absgd.weighting import ABWeighting, validate_lam

__all__ = ["ABSGDClassifier"]

_SOLVERS = ("sgd", "adam")
_PLACEMENTS = ("inside", "outside")
_CLASS_WEIGHT_SCHEMES = ("balanced", "effective_number")
_DTYPES = (np.float64, np.float32)
_PREDICT_CHUNK = 8192  # rows per chunk at prediction time


# -- small helpers ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _hidden_sizes(value: object) -> tuple[int, ...]:
    sizes = (value,) if _is_int(value) else value
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ValueError(
            f"hidden_layer_sizes must be a tuple of positive ints (() for a linear model), "
            f"got {value!r}"
        )
    sizes = tuple(sizes)  # type: ignore[arg-type]
    if not all(_is_int(h) and h > 0 for h in sizes):
        raise ValueError(
            f"hidden_layer_sizes must be a tuple of positive ints (() for a linear model), "
            f"got {value!r}"
        )
    return tuple(int(h) for h in sizes)


def _resolve_device(device: object) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)  # type: ignore[call-overload]
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:<index>', 'auto' or a torch.device, "
            f"got {device!r}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return resolved


def _check_sample_weight(sample_weight: object, n_samples: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    try:
        sw = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("sample_weight must be an array of numbers") from None
    if sw.ndim == 0:
        sw = np.full(n_samples, float(sw))
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},) to match X, got {sw.shape}")
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight must be finite (no NaN or infinity)")
    if (sw < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not sw.any():
        raise ValueError(
            "sample_weight must contain at least one non-zero weight; all weights are zero"
        )
    return sw


def _build_network(
    n_features: int, hidden: tuple[int, ...], n_outputs: int, seed: int
) -> nn.Sequential:
    """Linear layers with ReLU between them, initialised from ``Generator(seed)`` only."""
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    width = n_features
    for size in (*hidden, n_outputs):
        layer = torch.nn.utils.skip_init(nn.Linear, width, size)  # no global RNG draw
        bound = 1.0 / math.sqrt(width)
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
        layers += [layer, nn.ReLU()]
        width = size
    return nn.Sequential(*layers[:-1])


def _layer_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def _module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _to_cpu(tree: Any) -> Any:
    """A copy of ``tree`` (dicts, lists, tuples, tensors) with every tensor on the CPU."""
    if isinstance(tree, Tensor):
        return tree.detach().to("cpu")
    if isinstance(tree, dict):
        return {k: _to_cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_cpu(v) for v in tree)
    return tree


def _encode(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of ``y`` in the sorted ``classes``; ``ValueError`` naming any unknown label."""
    try:
        idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        known = np.asarray(classes[idx] == y, dtype=bool)
    except TypeError:  # labels of another type than the classes
        idx, known = np.zeros(len(y), dtype=np.int64), np.zeros(len(y), dtype=bool)
    if not known.all():
        unknown = sorted({str(v) for v in np.asarray(y)[~known]})
        raise ValueError(
            f"y contains labels {unknown} that are not in classes {classes.tolist()}; pass "
            "every label the data can contain in classes= on the first call to partial_fit"
        )
    return idx.astype(np.int64)


def _factors(
    y_idx: np.ndarray, sw: np.ndarray | None, class_w: np.ndarray | None, device: torch.device
) -> Tensor | None:
    """``u_i = ω_i · c_{y_i}`` as float32 on ``device`` (``None``: no weights at all)."""
    if sw is None and class_w is None:
        return None
    u = np.ones(len(y_idx)) if class_w is None else class_w[y_idx]
    if sw is not None:
        u = u * sw
    return torch.from_numpy(u.astype(np.float32)).to(device)


def _batches(order: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class _Rows:
    """Rows of X as tensors of ``dtype`` on ``device``.

    With ``preload`` a dense X is converted and moved once (training); otherwise rows are
    converted chunk by chunk (prediction, and sparse X, densified one mini-batch at a time).
    """

    def __init__(
        self,
        X: np.ndarray | sp.spmatrix,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        preload: bool = True,
    ) -> None:
        self.X, self.device, self.dtype = X, device, dtype
        self.np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self.tensor: Tensor | None = None
        if preload and not sp.issparse(X):
            arr = np.ascontiguousarray(X, dtype=self.np_dtype)
            if not arr.flags.writeable:  # torch.from_numpy wants writable memory
                arr = arr.copy()
            self.tensor = torch.from_numpy(arr).to(device)

    def __call__(self, idx: np.ndarray) -> Tensor:
        if self.tensor is not None:
            return self.tensor[torch.from_numpy(idx).to(self.device)]
        part = self.X[idx]
        if sp.issparse(part):
            part = part.toarray()
        part = np.ascontiguousarray(part, dtype=self.np_dtype)
        return torch.from_numpy(part).to(self.device)


# -- the estimator ---------------------------------------------------------------------------


class ABSGDClassifier(ClassifierMixin, BaseEstimator):
    r"""Linear model or MLP trained with ABSGD / ABAdam, with the scikit-learn API.

    Each step weighs the mini-batch samples by ``p_i = exp(v_i/λ) / (B s_t)`` with
    ``v_i = ω_i c_{y_i} l_i`` (sample weight × class weight × per-sample loss) and ``s_t`` a
    moving average (rate γ) of ``mean exp(v/λ)``, then takes a momentum-SGD (``solver="sgd"``,
    ABSGD) or Adam (``solver="adam"``, ABAdam) step on ``Σ p_i v_i``. This is the stochastic
    solver of ``min_w max_p Σ p_i v_i(w) − λ KL(p ‖ uniform)``: for λ > 0 hard samples — in
    imbalanced data, those of the rare classes — weigh more, without knowing the class
    prior. λ < 0 discounts high-loss (likely mislabelled) samples; ``math.inf`` is plain SGD.
    Reference: Qi et al., TMLR 2023, arXiv 2012.06951. The module docstring states the
    batching and random-number conventions exactly.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=()
        Widths of ReLU hidden layers; ``()`` is a linear (multinomial logistic) model.
    lam : float, default=1.0
        Temperature λ, on the scale of the loss (non-zero; ``math.inf`` for plain SGD). Can
        be changed between ``partial_fit`` calls with ``set_params``.
    gamma : float, default=0.9
        Moving-average rate γ in (0, 1] of the normaliser ``s_t``.
    target_ess : float or None, default=None
        Set λ from the data instead: each mini-batch's λ is solved so that its weights have
        this normalised effective sample size in (0, 1] (0.5: half the batch carries the
        weight), smoothed across batches, and the step is rescaled to the mean loss
        (:class:`absgd.ABWeighting`). ``lam`` then gives only the direction (its sign, or
        ``math.inf`` for plain SGD).
    lam_schedule : float or None, default=None
        Two-stage training ("step damping"): a fraction ``f`` in (0, 1) trains the first
        ``k = round(f · max_iter)`` epochs (at most ``max_iter - 1``) with λ = ∞ (plain
        SGD), then ``lam`` from epoch ``k`` on (:func:`absgd.schedules.two_stage`). ``None``:
        ``lam`` from the start. ``fit`` only.
    loss : str, default="ce"
        A per-sample loss of :data:`absgd.losses.LOSSES` (``ce``, ``focal``, ``ldam``,
        ``logit_adjusted``, ``balanced_softmax``, ``sce``, ``gce``, ``truncated_gce``).
    loss_options : dict or None, default=None
        Keyword options of the loss (e.g. ``{"gamma": 2.0}`` for ``focal``,
        ``{"scale": 1.0}`` for ``ldam`` on a linear model). The losses that need class
        counts get the training counts from ``fit``; ``{"class_counts": [...]}`` overrides
        them (and is required for them in ``partial_fit``).
    class_weight : None, "balanced", "effective_number" or dict, default=None
        Class weights ``c``. ``"balanced"``: ``n / (n_classes · n_c)``;
        ``"effective_number"``: ``(1-β)/(1-β^{n_c})`` (Cui et al., CVPR 2019) rescaled so
        the training samples average weight 1, like ``"balanced"``; a dict maps labels to
        weights (missing labels weigh 1). The two schemes need class counts, which a stream
        does not have: ``partial_fit`` accepts only ``None`` or a dict.
    beta : float, default=0.9999
        β of ``"effective_number"`` in [0, 1).
    placement : {"inside", "outside"}, default="inside"
        Where the sample and class weights ``u_i = ω_i c_{y_i}`` sit relative to ABSGD:
        ``"inside"`` (as the class weights of the authors' code) computes ``p`` from
        ``u_i l_i``, so a weight also sharpens that sample's temperature to ``λ / u_i``;
        ``"outside"`` computes ``p`` from ``l_i`` and steps on ``Σ_i p_i u_i l_i``.
    solver : {"sgd", "adam"}, default="adam"
        ``"sgd"``: :class:`absgd.ABSGD` (momentum SGD); ``"adam"``: :class:`absgd.ABAdam`.
        Adam is far less sensitive to the learning rate and the scale of the features.
    learning_rate : float, default=0.01
        Constant learning rate.
    momentum : float, default=0.9
        Momentum of ``"sgd"`` (ignored by ``"adam"``).
    weight_decay : float, default=0.0
        L2 penalty (of every parameter) applied by the optimiser.
    max_iter : int, default=100
        Epochs of ``fit`` (fewer with early stopping).
    batch_size : int, default=64
        Mini-batch size ``B``.
    shuffle : bool, default=True
        Shuffle the training rows every epoch of ``fit`` (``partial_fit`` never shuffles).
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the training data and stop when its
        balanced accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs; the
        best epoch's parameters are kept. With ``lam_schedule`` the count starts at the
        switch. ``fit`` only.
    validation_fraction : float, default=0.1
        Fraction of each class held out (at least one sample of every class with two or
        more samples; a class with one sample stays in training).
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    tol : float, default=1e-4
        Minimum improvement of the validation balanced accuracy.
    warm_start : bool, default=False
        ``fit`` continues from the fitted parameters and ABSGD normaliser (with a fresh
        optimiser and its own λ schedule) instead of re-initialising; the classes and the
        architecture must not change.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when available).
    random_state : int, RandomState or None, default=None
        Seeds the initialisation, the validation split and the shuffling.
    verbose : int, default=0
        Print one line per epoch when > 0.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` had string column names (e.g. a DataFrame).
    model_ : torch.nn.Sequential
        The network (``n_classes`` outputs; 2 for binary problems), on ``device``.
    weighting_ : absgd.ABWeighting
        The ABSGD weighting and its normaliser state.
    optimizer_state_ : dict
        ``{"solver": ..., "state": optimizer.state_dict()}``, continued by ``partial_fit``.
    class_weight_ : ndarray of shape (n_classes,) or None
        The class weights ``c`` used.
    class_counts_ : ndarray of shape (n_classes,)
        Training samples per class: of the last ``fit`` (its training part), or accumulated
        over ``partial_fit`` calls.
    n_iter_ : int
        Epochs run by the last ``fit``, plus one per ``partial_fit`` call.
    t_ : int
        Training samples processed since the model was initialised.
    loss_curve_ : list of float
        Mean per-sample loss ``l_i`` (before any weighting) of every epoch or
        ``partial_fit`` call, measured while training.
    validation_scores_ : list of float or None
        Validation balanced accuracy of every epoch (``early_stopping=True``).
    best_validation_score_ : float or None
        The best of ``validation_scores_``.

    Notes
    -----
    Predictions are computed in float64 (training runs in float32), so they do not depend
    on how rows are grouped. ``predict_proba`` is the softmax of the logits; ABSGD,
    class weights and logit-adjusting losses shift it away from the training prior, so
    calibrate it (``CalibratedClassifierCV``) if you need probabilities rather than ranks.

    Differences from the authors' code: the model, data handling and stopping rules are
    this estimator's; the weighting is :class:`absgd.ABWeighting` (see its notes).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.metrics import balanced_accuracy_score
    >>> X, y = make_classification(n_samples=600, weights=[0.95], random_state=0)
    >>> clf = ABSGDClassifier(lam=1.0, max_iter=20, random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).shape, clf.predict_proba(X[:3]).shape
    ((3,), (3, 2))
    >>> bool(balanced_accuracy_score(y, clf.predict(X)) > 0.7)
    True
    """

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = (),
        *,
        lam: float = 1.0,
        gamma: float = 0.9,
        target_ess: float | None = None,
        lam_schedule: float | None = None,
        loss: str = "ce",
        loss_options: dict[str, Any] | None = None,
        class_weight: str | Mapping[Any, float] | None = None,
        beta: float = 0.9999,
        placement: str = "inside",
        solver: str = "adam",
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        max_iter: int = 100,
        batch_size: int = 64,
        shuffle: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        warm_start: bool = False,
        device: str | torch.device = "cpu",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.lam = lam
        self.gamma = gamma
        self.target_ess = target_ess
        self.lam_schedule = lam_schedule
        self.loss = loss
        self.loss_options = loss_options
        self.class_weight = class_weight
        self.beta = beta
        self.placement = placement
        self.solver = solver
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- scikit-learn plumbing ----------------------------------------------------------------

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR rows are densified one mini-batch at a time
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __getstate__(self) -> dict[str, Any]:
        # Pickles hold CPU tensors, so a model trained on a GPU loads on any machine.
        state = dict(super().__getstate__())
        for key in ("model_", "weighting_"):
            module = state.get(key)
            if isinstance(module, nn.Module) and any(
                t.device.type != "cpu" for t in (*module.parameters(), *module.buffers())
            ):
                state[key] = copy.deepcopy(module).to("cpu")
        if "optimizer_state_" in state:
            state["optimizer_state_"] = _to_cpu(state["optimizer_state_"])
        return state

    # -- validation ---------------------------------------------------------------------------

    def _check_params(self) -> dict[str, Any]:
        """Validate the hyperparameters; return the resolved ones."""
        out: dict[str, Any] = {"hidden": _hidden_sizes(self.hidden_layer_sizes)}
        out["lam"] = validate_lam(self.lam)
        if not (_is_real(self.gamma) and 0.0 < self.gamma <= 1.0):
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.target_ess is not None:
            validate_target_ess(self.target_ess)
        if self.lam_schedule is not None and not (
            _is_real(self.lam_schedule) and 0.0 < self.lam_schedule < 1.0
        ):
            raise ValueError(
                "lam_schedule must be None or a fraction in (0, 1) of max_iter trained as "
                f"plain SGD before switching to lam, got {self.lam_schedule!r}"
            )
        if not isinstance(self.loss, str):
            raise ValueError(f"loss must be the name of a registered loss, got {self.loss!r}")
        LOSSES.get(self.loss)  # ValueError naming the valid losses
        if self.loss_options is not None and not isinstance(self.loss_options, Mapping):
            raise ValueError(f"loss_options must be None or a dict, got {self.loss_options!r}")
        if "reduction" in (self.loss_options or {}):
            raise ValueError("loss_options may not set reduction: the estimator reduces itself")
        cw = self.class_weight
        if not (cw is None or isinstance(cw, Mapping) or cw in _CLASS_WEIGHT_SCHEMES):
            raise ValueError(
                f"class_weight must be None, 'balanced', 'effective_number' or a dict "
                f"{{label: weight}}, got {cw!r}"
            )
        if not (_is_real(self.beta) and 0.0 <= self.beta < 1.0):
            raise ValueError(f"beta must be in [0, 1), got {self.beta!r}")
        if self.placement not in _PLACEMENTS:
            raise ValueError(f"placement must be one of {_PLACEMENTS}, got {self.placement!r}")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got {self.solver!r}")
        lr = self.learning_rate
        if not (_is_real(lr) and 0 < lr < math.inf):
            raise ValueError(f"learning_rate must be a finite number > 0, got {lr!r}")
        if not (_is_real(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not (_is_real(self.weight_decay) and 0 <= self.weight_decay < math.inf):
            raise ValueError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )
        for name in ("max_iter", "batch_size", "n_iter_no_change"):
            value = getattr(self, name)
            if not (_is_int(value) and value >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not (_is_real(self.validation_fraction) and 0.0 < self.validation_fraction < 1.0):
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}"
            )
        if not (_is_real(self.tol) and 0 <= self.tol < math.inf):
            raise ValueError(f"tol must be a finite number >= 0, got {self.tol!r}")
        out["device"] = _resolve_device(self.device)
        return out

    def _class_weights(self, classes: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
        """Per-class weights ``c`` for the training counts (``None`` without class weights)."""
        cw = self.class_weight
        if cw is None:
            return None
        if isinstance(cw, Mapping):
            known = set(classes.tolist())
            unknown = [k for k in cw if k not in known]
            if unknown:
                raise ValueError(
                    f"class_weight has labels {unknown} that are not classes {classes.tolist()}"
                )
            weights = np.array([float(cw.get(c, 1.0)) for c in classes.tolist()])
            if not (np.isfinite(weights).all() and (weights >= 0).all()):
                raise ValueError(f"class_weight values must be finite and >= 0, got {cw!r}")
            return weights
        n = counts.sum()
        if cw == "balanced":
            return n / (len(counts) * counts.astype(np.float64))
        raw = effective_number_weights(counts, self.beta).double().numpy()
        return raw * (n / float((raw * counts).sum()))  # training samples average weight 1

    # -- building blocks ----------------------------------------------------------------------

    def _make_loss(self, counts: np.ndarray | None) -> nn.Module:
        options = dict(self.loss_options or {})
        needs_counts = getattr(LOSSES.get(self.loss), "needs_class_counts", False)
        if needs_counts and counts is None and "class_counts" not in options:
            raise ValueError(
                f"loss {self.loss!r} needs the class counts, which a stream does not provide; "
                "give them as loss_options={'class_counts': [...]} (one per class of "
                "classes_), or use fit"
            )
        if needs_counts:
            options.setdefault("class_counts", counts)
        return build_loss(self.loss, reduction="none", **options)

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        if self.solver == "sgd":
            return ABSGD(
                model.parameters(),
                lr=self.learning_rate,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
            )
        return ABAdam(model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    def _restore_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimiser of the previous call (same solver) with the current hyperparameters."""
        optimizer = self._make_optimizer(model)
        saved = getattr(self, "optimizer_state_", None)
        if saved is not None and saved["solver"] == self.solver:
            optimizer.load_state_dict(saved["state"])
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate
                group["weight_decay"] = self.weight_decay
                if self.solver == "sgd":
                    group["momentum"] = self.momentum
        return optimizer

    def _check_architecture(self, hidden: tuple[int, ...]) -> None:
        widths = (self.n_features_in_, *hidden, len(self.classes_))
        expected = list(itertools.pairwise(widths))
        if _layer_shapes(self.model_) != expected:
            raise ValueError(
                f"hidden_layer_sizes={hidden} does not match the fitted network (layers "
                f"{_layer_shapes(self.model_)}); fit with warm_start=False to start afresh"
            )

    def _start(
        self, classes: np.ndarray, n_features: int, hidden: tuple[int, ...], seed: int
    ) -> None:
        """Fresh fitted state: a new network, ABSGD normaliser and optimiser."""
        self.classes_ = classes
        self.model_ = _build_network(n_features, hidden, len(classes), seed)
        self.weighting_ = ABWeighting(self.lam, gamma=self.gamma, target_ess=self.target_ess)
        self.optimizer_state_: dict[str, Any] | None = None
        self.t_ = 0

    def _split(
        self, y_idx: np.ndarray, n_classes: int, rng: np.random.RandomState
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stratified hold-out: ``round(f · n_c)`` rows of class c, clipped to [1, n_c - 1]."""
        train, val = [], []
        for c in range(n_classes):
            members = np.flatnonzero(y_idx == c)
            members = members[rng.permutation(len(members))]
            k = min(max(round(self.validation_fraction * len(members)), 1), len(members) - 1)
            val.append(members[:k])
            train.append(members[k:])
        train_idx, val_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
        if len(val_idx) == 0:
            raise ValueError(
                "early_stopping needs a validation set, but no class has 2 or more samples"
            )
        return train_idx, val_idx

    def _to_device(
        self,
        device: torch.device,
        loss_fn: nn.Module,
        X: Any,
        y_idx: np.ndarray,
        sw: np.ndarray | None,
        class_w: np.ndarray | None,
    ) -> tuple[_Rows, Tensor, Tensor | None]:
        """Move the model, the weighting and the loss to ``device``; the rows, targets and
        per-sample factors (sample × class weights) there."""
        self.model_.to(device)
        self.weighting_.to(device)
        loss_fn.to(device)
        rows = _Rows(X, device)
        y_t = torch.from_numpy(y_idx).to(device)
        return rows, y_t, _factors(y_idx, sw, class_w, device)

    def _train_epoch(
        self,
        rows: _Rows,
        y: Tensor,
        u: Tensor | None,
        order: np.ndarray,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        lam: float,
    ) -> float:
        """One pass over the rows ``order`` in mini-batches; returns the mean loss ``l_i``."""
        model, weighting = self.model_, self.weighting_
        weighting.lam = lam
        weighting.gamma = float(self.gamma)
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=y.device)
        for idx in _batches(order, self.batch_size):
            index = torch.from_numpy(idx).to(y.device)
            losses = loss_fn(model(rows(idx)), y[index])
            v = losses if u is None else losses * u[index]
            try:
                p = weighting.weights(v if self.placement == "inside" else losses)
            except ValueError as exc:
                raise ValueError(
                    "training diverged: a per-sample loss is NaN or infinite (that batch did "
                    "not update the model). Lower learning_rate, standardise X (e.g. "
                    "StandardScaler in a Pipeline) or use solver='adam'"
                ) from exc
            objective = weighting.weighted_sum(v, p)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            total += losses.detach().sum()
            self.t_ += len(idx)
        return float(total) / len(order)

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ABSGDClassifier:
        """Train for ``max_iter`` epochs (fewer with early stopping).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights ``ω_i``; they multiply each sample's loss, inside the ABSGD
            weighting by default (see ``placement``).

        Returns
        -------
        self
        """
        params = self._check_params()
        warm = bool(self.warm_start) and self.__sklearn_is_fitted__()
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=_DTYPES, reset=not warm)
        check_classification_targets(y)
        sw = _check_sample_weight(sample_weight, X.shape[0])
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes to train; "
                f"got 1 class ({classes[0]!r})"
            )
        if warm:
            if not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"warm_start=True needs the classes of the previous fit "
                    f"{self.classes_.tolist()}, got {classes.tolist()}; fit with "
                    "warm_start=False to start afresh"
                )
            self._check_architecture(params["hidden"])
        y_idx = _encode(classes, y)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train_idx, val_idx = np.arange(len(y_idx)), None
        if self.early_stopping:
            train_idx, val_idx = self._split(y_idx, len(classes), rng)
        counts = np.bincount(y_idx[train_idx], minlength=len(classes))
        class_w = self._class_weights(classes, counts)
        loss_fn = self._make_loss(counts)

        if not warm:
            self._start(classes, X.shape[1], params["hidden"], seed)
        self.class_counts_ = counts
        self.class_weight_ = class_w
        self.n_iter_ = 0
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = None if val_idx is None else []
        self.best_validation_score_: float | None = None

        device = params["device"]
        rows, y_t, u_t = self._to_device(device, loss_fn, X, y_idx, sw, class_w)
        val_rows = None if val_idx is None else _Rows(X[val_idx], device)
        optimizer = self._make_optimizer(self.model_)

        switch = 0
        lam_at: Schedule = Constant(params["lam"])
        if self.lam_schedule is not None:
            switch = min(round(self.lam_schedule * self.max_iter), self.max_iter - 1)
            lam_at = two_stage(params["lam"], switch=switch)
        best_score, best_params, stale = -math.inf, None, 0
        for epoch in range(self.max_iter):
            order = rng.permutation(train_idx) if self.shuffle else train_idx
            lam = lam_at(epoch)
            loss = self._train_epoch(rows, y_t, u_t, order, loss_fn, optimizer, lam)
            self.loss_curve_.append(loss)
            self.n_iter_ += 1
            message = f"epoch {epoch + 1}/{self.max_iter}: lam={lam:g}, loss={loss:.5f}"
            if val_rows is not None and val_idx is not None:
                score = self._balanced_accuracy(val_rows, y_idx[val_idx])
                self.validation_scores_.append(score)  # type: ignore[union-attr]
                message += f", validation balanced accuracy={score:.4f}"
                if epoch >= switch:  # the count starts when λ takes its final value
                    if score > best_score + self.tol:
                        best_score, stale = score, 0
                        best_params = copy.deepcopy(self.model_.state_dict())
                    else:
                        stale += 1
            if self.verbose:
                print(message)
            if stale >= self.n_iter_no_change:
                if self.verbose:
                    print(f"early stopping: no improvement for {stale} epochs")
                break
        if best_params is not None:
            self.model_.load_state_dict(best_params)
            self.best_validation_score_ = best_score
        self.optimizer_state_ = {"solver": self.solver, "state": optimizer.state_dict()}
        self.weighting_.last_weights = None
        return self

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> ABSGDClassifier:
        """One pass over ``(X, y)`` in the given order: online ABSGD on a stream.

        The model, the ABSGD normaliser and the optimiser state carry over between calls
        (and from a previous ``fit``); the batches are consecutive runs of ``batch_size``
        rows of ``X``. A stream has no class prior, so ``class_weight`` must be ``None`` or a
        dict and a loss that needs class counts needs ``loss_options={"class_counts": ...}``;
        ``lam_schedule`` must be ``None`` (switch λ with ``set_params(lam=...)`` between
        calls). ``shuffle`` and ``early_stopping`` do not apply.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            Every label the stream can contain; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        params = self._check_params()
        if self.lam_schedule is not None:
            raise ValueError(
                "lam_schedule is a fraction of the epochs of fit and a stream has no length; "
                "with partial_fit leave it None and switch yourself: start with "
                "lam=math.inf and call set_params(lam=...) when plain SGD has learnt enough"
            )
        if isinstance(self.class_weight, str):
            raise ValueError(
                f"class_weight={self.class_weight!r} needs the class frequencies, which a "
                "stream does not provide (ABSGD itself needs no class prior); with "
                "partial_fit use class_weight=None, or a dict {label: weight} (e.g. from "
                "sklearn.utils.class_weight.compute_class_weight on a representative sample)"
            )
        first = not self.__sklearn_is_fitted__()
        if first and classes is None:
            raise ValueError(
                "classes must be passed on the first call to partial_fit: every label the "
                "stream can contain"
            )
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=_DTYPES, reset=first)
        check_classification_targets(y)
        sw = _check_sample_weight(sample_weight, X.shape[0])
        if first:
            all_classes = np.unique(np.asarray(classes))
            if len(all_classes) < 2:
                raise ValueError(
                    f"classes must list at least 2 classes, got 1 class ({all_classes[0]!r})"
                )
        else:
            all_classes = self.classes_
            if classes is not None and not np.array_equal(np.unique(classes), all_classes):
                raise ValueError(
                    f"classes={np.unique(classes).tolist()} differs from the classes of the "
                    f"first call {all_classes.tolist()}"
                )
            self._check_architecture(params["hidden"])
        y_idx = _encode(all_classes, y)
        class_w = self._class_weights(all_classes, np.bincount(y_idx))  # None or a dict here
        loss_fn = self._make_loss(None)
        if first:
            rng = check_random_state(self.random_state)
            self._start(all_classes, X.shape[1], params["hidden"], int(rng.randint(2**31 - 1)))
            self.class_counts_ = np.zeros(len(all_classes), dtype=np.int64)
            self.n_iter_ = 0
            self.loss_curve_ = []
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self.class_counts_ = self.class_counts_ + np.bincount(y_idx, minlength=len(all_classes))
        self.class_weight_ = class_w

        device = params["device"]
        rows, y_t, u_t = self._to_device(device, loss_fn, X, y_idx, sw, class_w)
        optimizer = self._restore_optimizer(self.model_)
        order = np.arange(len(y_idx))
        loss = self._train_epoch(rows, y_t, u_t, order, loss_fn, optimizer, params["lam"])
        self.loss_curve_.append(loss)
        self.n_iter_ += 1
        if self.verbose:
            print(f"partial_fit call {self.n_iter_}: lam={params['lam']:g}, loss={loss:.5f}")
        self.optimizer_state_ = {"solver": self.solver, "state": optimizer.state_dict()}
        self.weighting_.last_weights = None
        return self

    # -- prediction ---------------------------------------------------------------------------

    def _logits(self, rows: _Rows, n_rows: int, dtype: torch.dtype) -> Tensor:
        """Logits of the first ``n_rows`` rows in ``dtype`` on the CPU, chunk by chunk."""
        linears = [m for m in self.model_ if isinstance(m, nn.Linear)]
        params = [(m.weight.detach().to(dtype), m.bias.detach().to(dtype)) for m in linears]
        chunks = []
        with torch.no_grad():
            for idx in _batches(np.arange(n_rows), _PREDICT_CHUNK):
                h = rows(idx)
                for k, (weight, bias) in enumerate(params):
                    h = F.linear(h, weight, bias)
                    if k < len(params) - 1:
                        h = torch.relu(h)
                chunks.append(h.to("cpu"))
        return torch.cat(chunks)

    def _balanced_accuracy(self, rows: _Rows, y_idx: np.ndarray) -> float:
        pred = self._logits(rows, len(y_idx), torch.float32).argmax(1).numpy()
        return float(np.mean([np.mean(pred[y_idx == c] == c) for c in np.unique(y_idx)]))

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits, shape (n_samples, n_classes); for 2 classes the log-odds ``z_1 - z_0``.

        Computed in float64 (the trained float32 parameters, upcast), so a row's score does
        not depend on the other rows it is predicted with.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=_DTYPES, reset=False)
        device = _module_device(self.model_)
        rows = _Rows(X, device, torch.float64, preload=False)
        z = self._logits(rows, X.shape[0], torch.float64).numpy()
        return z[:, 1] - z[:, 0] if len(self.classes_) == 2 else z

    def predict(self, X: Any) -> np.ndarray:
        """The class of the largest logit (positive log-odds for two classes)."""
        scores = self.decision_function(X)
        idx = (scores > 0).astype(np.int64) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes_[idx]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the logits, shape (n_samples, n_classes), columns as ``classes_``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.column_stack([expit(-scores), expit(scores)])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log-softmax of the logits, shape (n_samples, n_classes)."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.column_stack([log_expit(-scores), log_expit(scores)])
        return log_softmax(scores, axis=1)
