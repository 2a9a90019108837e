"""The estimator class of :mod:`absgd.sklearn` (parameters, fit, partial_fit, prediction)."""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from absgd.losses import LOSSES, build_loss
from absgd.optim import ABSGD, ABAdam
from absgd.sklearn._data import (
    Rows,
    check_sample_weight,
    encode,
    factors,
    to_cpu,
)
from absgd.sklearn._full_batch import fit_lbfgs
from absgd.sklearn._minibatch import fit_minibatch
from absgd.sklearn._network import build_network, layer_shapes, logits, module_device
from absgd.sklearn._params import DTYPES, check_params, class_weights
from absgd.sklearn._solvers import train_epoch
from absgd.weighting import ABWeighting

__all__ = ["ABSGDClassifier"]


def _stochastic(estimator: ABSGDClassifier) -> bool:
    """``partial_fit`` exists for the mini-batch solvers only."""
    if estimator.solver == "lbfgs":
        raise AttributeError(
            "partial_fit needs a mini-batch solver: set solver='sgd' or solver='adam' "
            "(solver='lbfgs' uses the whole data set at every step)"
        )
    return True


class ABSGDClassifier(ClassifierMixin, BaseEstimator):
    r"""Linear model or MLP trained on the ABSGD objective, with the scikit-learn API.

    The objective is the KL-regularised distributionally robust risk of the weighted
    per-sample losses ``v_i = ω_i c_{y_i} l_i`` (sample weight × class weight × loss)::

        R_λ(w) = λ log mean_i exp(v_i(w) / λ) + (α/2) Σ ‖W‖²

    (:func:`absgd.risk.entropic_risk`): for λ > 0 a smooth maximum that weighs hard samples
    — in imbalanced data, those of the rare classes — more, without knowing the class prior;
    λ < 0 a smooth minimum that discounts high-loss (likely mislabelled) samples; ``math.inf``
    the plain weighted mean. Its gradient is ``Σ_i p_i ∇v_i`` with the attentional weights
    ``p = softmax(v/λ)``. Qi et al., "Attentional-Biased Stochastic Gradient Descent", TMLR
    2023 (arXiv 2012.06951). This is ``placement="inside"``; the default ``"outside"`` takes
    the same risk of the losses ``l_i`` over the training set re-weighted by ``ω_i c_{y_i}``
    (see ``placement``).

    Three solvers reach it:

    - ``"lbfgs"`` (default): the whole training set at every step, in float64, to the
      optimum (convex for a linear model and λ > 0). For data that fits in memory.
    - ``"sgd"``: ABSGD itself, momentum SGD on mini-batches with ``p_i = exp(v_i/λ) / (B s_t)``
      and ``s_t`` a moving average (rate γ) of ``mean exp(v/λ)`` (:class:`absgd.ABWeighting`).
    - ``"adam"``: ABAdam, the same weights with Adam steps.

    The mini-batch solvers allow ``partial_fit`` (streams); the module docstring of
    :mod:`absgd.sklearn` states their batching and random-number conventions exactly.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=()
        Widths of ReLU hidden layers; ``()`` is a linear (multinomial logistic) model.
    lam : float, default=1.0
        Temperature λ, on the scale of the loss (non-zero; ``math.inf`` for no attentional
        weighting). With ``target_ess`` set (the default) only its sign is used: +1 favours
        hard samples (imbalance), -1 discounts them (label noise), ``math.inf`` turns the
        weighting off. To set λ itself, pass ``target_ess=None``. Can be changed between
        ``partial_fit`` calls with ``set_params``.
    gamma : float, default=0.9
        Moving-average rate γ in (0, 1] of the normaliser ``s_t`` (mini-batch solvers).
    target_ess : float or None, default=0.9
        λ set from the data: solved so that the attentional weights have this normalised
        effective sample size in (0, 1] (0.9: mild, the scale-free default chosen on the
        development tables of ``benchmarks/tabular.py``; 0.5: half the samples carry the
        weight). Mini-batch solvers solve it on every batch and, with λ > 0, rescale the
        step to the mean loss (:class:`absgd.ABWeighting`). ``"lbfgs"`` solves it on the
        whole training set: from the λ = ∞ optimum, a secant search on ``log |λ|`` over
        warm-started optima until the ESS at the optimum is within 0.01 of the target (at
        most 8 optima; a linear model's fit costs about 1.5 plain ones, as the warm starts
        are short).
        ``lam_`` and ``ess_`` report the outcome.
        ``None``: use ``lam`` as given.
    lam_schedule : float or None, default=None
        Two stages: a fraction ``f`` in (0, 1) trains the first ``k = round(f · max_iter)``
        epochs (``"lbfgs"``: iterations; at most ``max_iter - 1``) with λ = ∞, then ``lam``
        (:func:`absgd.schedules.two_stage`). ``None``: ``lam`` from the start. ``fit`` only.
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
    placement : {"inside", "outside"}, default="outside"
        Where the sample and class weights ``u_i = ω_i c_{y_i}`` sit relative to the
        attentional weights. ``"outside"`` computes ``p`` from ``l_i`` and steps on
        ``Σ_i p_i u_i l_i`` (full batch: ``ū · λ log Σ q_i exp(l_i/λ)`` with ``q ∝ u``, the
        tilted risk of the re-weighted data). ``"inside"`` (as the class weights of the
        authors' code) computes ``p`` from ``u_i l_i``, so a weight also sharpens that
        sample's temperature to ``λ / u_i``; on the development tables it cost 0.3–2.3
        points of balanced accuracy on top of balanced class weights.
    alpha : float or "auto", default="auto"
        L2 penalty ``(α/2) Σ ‖W‖²`` on the weight matrices (not the biases), added to the
        mean-loss objective, in every solver. ``"auto"``: ``LogisticRegression()``'s penalty
        (``C=1``) for the ``n`` training rows of ``fit``, ``1/n`` (``2/n`` for two classes:
        this estimator has two outputs, whose difference is LogisticRegression's single
        weight vector, so ``‖W‖² = ‖w‖²/2``); ``1e-4`` in ``partial_fit``, which has no data
        size. ``LogisticRegression(C=C)`` corresponds to ``alpha = 1/(C·n)`` (``2/(C·n)``).
    solver : {"lbfgs", "sgd", "adam"}, default="lbfgs"
        See above. ``"sgd"`` is :class:`absgd.ABSGD`, ``"adam"`` :class:`absgd.ABAdam`.
    learning_rate : float, default=0.01
        Initial learning rate of the mini-batch solvers.
    lr_schedule : {"adaptive", "constant"}, default="adaptive"
        Mini-batch solvers. ``"adaptive"``: when the epoch objective has not improved by
        ``tol`` for ``n_iter_no_change`` epochs, divide the learning rate by 5 (at most 3
        times; the next such plateau ends training). ``"constant"``: the first plateau ends
        training.
    momentum : float, default=0.9
        Momentum of ``"sgd"``.
    max_iter : int, default=200
        Epochs of the mini-batch solvers, iterations of ``"lbfgs"`` (per round with
        ``target_ess``). Reaching it before the stopping rule holds raises a
        ``ConvergenceWarning``.
    batch_size : int, default=64
        Mini-batch size ``B`` of the mini-batch solvers.
    shuffle : bool, default=True
        Shuffle the training rows every epoch of ``fit`` (``partial_fit`` never shuffles).
    early_stopping : bool, default=False
        Mini-batch solvers: hold out a stratified ``validation_fraction`` of the training
        data and stop when its ``scoring`` has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, keeping the best epoch's parameters (instead of the
        training-objective rule). With ``lam_schedule`` the count starts at the switch.
    scoring : {"balanced_accuracy", "accuracy"}, default="balanced_accuracy"
        The validation score of ``early_stopping`` (these two names only; ``score`` stays
        plain accuracy). ``"balanced_accuracy"``: every class counts the same.
        ``"accuracy"``: on the stratified split, approximately accuracy at the training class
        prior (each class's share rounded, at least one row; ``sample_weight`` not applied),
        for a deployment that keeps the training skew (on skewed data, ABSGD's balanced gains
        were paid for in the large classes; docs/results.md §7).
    validation_fraction : float, default=0.1
        Fraction of each class held out (at least one sample of every class with two or
        more samples; a class with one sample stays in training).
    n_iter_no_change : int, default=10
        Patience of the stopping rules, in epochs.
    tol : float, default=1e-4
        ``"lbfgs"``: the largest gradient component at convergence. Mini-batch solvers: the
        least improvement of the epoch objective (or of the validation score, with
        ``early_stopping``) that counts.
    warm_start : bool, default=False
        ``fit`` continues from the fitted parameters and ABSGD normaliser (with a fresh
        optimiser and its own λ schedule) instead of re-initialising; the classes and the
        architecture must not change.
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when available).
    random_state : int, RandomState or None, default=None
        Seeds the initialisation, the validation split and the shuffling.
    verbose : int, default=0
        Print one line per epoch (``"lbfgs"``: per stage) when > 0.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when ``X`` had string column names (e.g. a DataFrame).
    model_ : torch.nn.Sequential
        The network (``n_classes`` outputs; 2 for binary problems), float32, on ``device``.
    weighting_ : absgd.ABWeighting
        The ABSGD weighting and its normaliser state (continued by ``partial_fit``).
    optimizer_state_ : dict or None
        ``{"solver": ..., "state": optimizer.state_dict()}`` of the mini-batch solvers.
    class_weight_ : ndarray of shape (n_classes,) or None
        The class weights ``c`` used.
    class_counts_ : ndarray of shape (n_classes,)
        Training samples per class: of the last ``fit`` (its training part), or accumulated
        over ``partial_fit`` calls.
    alpha_ : float
        The penalty used (``alpha``, or what ``"auto"`` resolved to).
    lam_ : float
        The λ in force at the end (the solved one with ``target_ess``).
    ess_ : float
        Normalised effective sample size of ``softmax(v/λ)`` over the training set at the
        end of ``fit`` (1: uniform weights; the fraction of the data carrying the weight).
    n_iter_ : int
        Epochs (``"lbfgs"``: iterations, all rounds) run by the last ``fit``, plus one per
        ``partial_fit`` call.
    t_ : int
        Training samples processed by the mini-batch solvers since initialisation.
    loss_curve_ : list of float
        The training objective: the mean step objective of every epoch or ``partial_fit``
        call (mini-batch), or the full objective after every iteration (``"lbfgs"``).
    validation_scores_ : list of float or None
        The validation ``scoring`` of every epoch (``early_stopping=True``).
    best_validation_score_ : float or None
        The best of ``validation_scores_``.

    Notes
    -----
    Predictions are computed in float64 (the float32 parameters, upcast), so they do not
    depend on how rows are grouped. ``predict_proba`` is the softmax of the logits; ABSGD,
    class weights and logit-adjusting losses shift it away from the training prior, so
    calibrate it (``CalibratedClassifierCV``) if you need probabilities rather than ranks.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.metrics import balanced_accuracy_score
    >>> X, y = make_classification(n_samples=600, weights=[0.95], random_state=0)
    >>> clf = ABSGDClassifier(class_weight="balanced", random_state=0).fit(X, y)
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
        target_ess: float | None = 0.9,
        lam_schedule: float | None = None,
        loss: str = "ce",
        loss_options: dict[str, Any] | None = None,
        class_weight: str | Mapping[Any, float] | None = None,
        beta: float = 0.9999,
        placement: str = "outside",
        alpha: float | str = "auto",
        solver: str = "lbfgs",
        learning_rate: float = 0.01,
        lr_schedule: str = "adaptive",
        momentum: float = 0.9,
        max_iter: int = 200,
        batch_size: int = 64,
        shuffle: bool = True,
        early_stopping: bool = False,
        scoring: str = "balanced_accuracy",
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
        self.alpha = alpha
        self.solver = solver
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.scoring = scoring
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
            state["optimizer_state_"] = to_cpu(state["optimizer_state_"])
        return state

    # -- building blocks ----------------------------------------------------------------------

    def _resolve_alpha(self, n_train: int | None) -> float:
        """The penalty in use: ``alpha``, or for ``"auto"`` LogisticRegression's (``C=1``)."""
        if self.alpha != "auto":
            return float(self.alpha)
        if n_train is None:  # partial_fit: a stream has no size
            return 1e-4
        return (2.0 if len(self.classes_) == 2 else 1.0) / n_train

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

    def _make_optimizer(self, model: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
        lr = self.learning_rate if lr is None else lr
        if self.solver == "sgd":
            return ABSGD(model.parameters(), lr=lr, momentum=self.momentum)
        return ABAdam(model.parameters(), lr=lr)

    def _restore_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimiser of the previous call (same solver) with the current hyperparameters."""
        optimizer = self._make_optimizer(model)
        saved = getattr(self, "optimizer_state_", None)
        if saved is not None and saved["solver"] == self.solver:
            optimizer.load_state_dict(saved["state"])
            for group in optimizer.param_groups:
                group["lr"] = self.learning_rate
                if self.solver == "sgd":
                    group["momentum"] = self.momentum
        return optimizer

    def _check_architecture(self, hidden: tuple[int, ...]) -> None:
        widths = (self.n_features_in_, *hidden, len(self.classes_))
        expected = list(itertools.pairwise(widths))
        if layer_shapes(self.model_) != expected:
            raise ValueError(
                f"hidden_layer_sizes={hidden} does not match the fitted network (layers "
                f"{layer_shapes(self.model_)}); fit with warm_start=False to start afresh"
            )

    def _start(
        self, classes: np.ndarray, n_features: int, hidden: tuple[int, ...], seed: int
    ) -> None:
        """Fresh fitted state: a new network, ABSGD normaliser and optimiser."""
        self.classes_ = classes
        self.model_ = build_network(n_features, hidden, len(classes), seed)
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

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ABSGDClassifier:
        """Train to the stopping rule of the solver, or ``max_iter``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            ``"lbfgs"`` densifies a sparse X; the mini-batch solvers densify one batch at a
            time.
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights ``ω_i``; they multiply each sample's loss, inside the ABSGD
            weighting by default (see ``placement``).

        Returns
        -------
        self
        """
        params = check_params(self)
        warm = bool(self.warm_start) and self.__sklearn_is_fitted__()
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=DTYPES, reset=not warm)
        check_classification_targets(y)
        sw = check_sample_weight(sample_weight, X.shape[0])
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
        y_idx = encode(classes, y)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        train_idx, val_idx = np.arange(len(y_idx)), None
        if self.early_stopping:
            train_idx, val_idx = self._split(y_idx, len(classes), rng)
        counts = np.bincount(y_idx[train_idx], minlength=len(classes))
        class_w = class_weights(self, classes, counts)
        loss_fn = self._make_loss(counts)

        if not warm:
            self._start(classes, X.shape[1], params["hidden"], seed)
        self.class_counts_ = counts
        self.class_weight_ = class_w
        self.alpha_ = self._resolve_alpha(len(train_idx))
        self.n_iter_ = 0
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = None if val_idx is None else []
        self.best_validation_score_: float | None = None
        device = params["device"]
        self.model_.to(device)
        self.weighting_.to(device)
        loss_fn.to(device)
        switch = 0
        if self.lam_schedule is not None:
            switch = min(round(self.lam_schedule * self.max_iter), self.max_iter - 1)

        if self.solver == "lbfgs":
            converged = fit_lbfgs(self, X, y_idx, sw, class_w, loss_fn, params["lam"], switch)
        else:
            converged = fit_minibatch(
                self,
                X,
                y_idx,
                sw,
                class_w,
                train_idx,
                val_idx,
                loss_fn,
                params["lam"],
                switch,
                rng,
            )
        if not converged:
            unit = "iterations" if self.solver == "lbfgs" else "epochs"
            warnings.warn(
                f"{type(self).__name__} reached max_iter={self.max_iter} {unit} before "
                f"converging (solver={self.solver!r}); increase max_iter, or tol",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.weighting_.last_weights = None
        return self

    @available_if(_stochastic)
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
        params = check_params(self)
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
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=DTYPES, reset=first)
        check_classification_targets(y)
        sw = check_sample_weight(sample_weight, X.shape[0])
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
        y_idx = encode(all_classes, y)
        class_w = class_weights(self, all_classes, np.bincount(y_idx))  # None or a dict here
        loss_fn = self._make_loss(None)
        if first:
            rng = check_random_state(self.random_state)
            self._start(all_classes, X.shape[1], params["hidden"], int(rng.randint(2**31 - 1)))
            self.ess_ = 1.0
            self.class_counts_ = np.zeros(len(all_classes), dtype=np.int64)
            self.n_iter_ = 0
            self.loss_curve_ = []
            self.validation_scores_ = None
            self.best_validation_score_ = None
        self.class_counts_ = self.class_counts_ + np.bincount(y_idx, minlength=len(all_classes))
        self.class_weight_ = class_w
        self.alpha_ = self._resolve_alpha(None)

        device = params["device"]
        self.model_.to(device)
        self.weighting_.to(device)
        loss_fn.to(device)
        rows = Rows(X, device)
        y_t = torch.from_numpy(y_idx).to(device)
        u_t = factors(y_idx, sw, class_w, device)
        optimizer = self._restore_optimizer(self.model_)
        self.weighting_.lam = params["lam"]
        self.weighting_.gamma = float(self.gamma)
        loss, seen = train_epoch(
            self.model_,
            self.weighting_,
            rows,
            y_t,
            u_t,
            np.arange(len(y_idx)),
            self.batch_size,
            loss_fn,
            optimizer,
            self.placement,
            self.alpha_,
        )
        self.t_ += seen
        self.lam_ = float(self.weighting_.lam)
        self.loss_curve_.append(loss)
        self.n_iter_ += 1
        if self.verbose:
            print(f"partial_fit call {self.n_iter_}: lam={params['lam']:g}, loss={loss:.5f}")
        self.optimizer_state_ = {"solver": self.solver, "state": optimizer.state_dict()}
        self.weighting_.last_weights = None
        return self

    # -- prediction ---------------------------------------------------------------------------

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits, shape (n_samples, n_classes); for 2 classes the log-odds ``z_1 - z_0``.

        Computed in float64 (the trained float32 parameters, upcast), so a row's score does
        not depend on the other rows it is predicted with.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=DTYPES, reset=False)
        device = module_device(self.model_)
        rows = Rows(X, device, torch.float64, preload=False)
        z = logits(self.model_, rows, X.shape[0], torch.float64).numpy()
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
