"""The hyperparameters of :class:`~absgd.sklearn.ABSGDClassifier`: their checks (each error
names the parameter, the bad value and what is allowed) and the class weights they ask for."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from absgd.class_weights import effective_number_weights
from absgd.losses import LOSSES
from absgd.sklearn._data import hidden_sizes, is_int, is_real, resolve_device
from absgd.temperature import validate_target_ess
from absgd.weighting import validate_lam

if TYPE_CHECKING:
    from absgd.sklearn._estimator import ABSGDClassifier

__all__ = ["DTYPES", "check_params", "class_weights"]

SOLVERS = ("lbfgs", "sgd", "adam")
LR_SCHEDULES = ("adaptive", "constant")
PLACEMENTS = ("inside", "outside")
CLASS_WEIGHT_SCHEMES = ("balanced", "effective_number")
SCORINGS = ("balanced_accuracy", "accuracy")
"""``early_stopping``'s validation scores."""
DTYPES = (np.float64, np.float32)


def check_params(est: ABSGDClassifier) -> dict[str, Any]:
    """Validate the hyperparameters; return the resolved ones."""
    out: dict[str, Any] = {"hidden": hidden_sizes(est.hidden_layer_sizes)}
    out["lam"] = validate_lam(est.lam)
    if not (is_real(est.gamma) and 0.0 < est.gamma <= 1.0):
        raise ValueError(f"gamma must be in (0, 1], got {est.gamma!r}")
    if est.target_ess is not None:
        validate_target_ess(est.target_ess)
        if math.isfinite(out["lam"]) and abs(out["lam"]) != 1.0:
            warnings.warn(
                f"lam={est.lam!r} gives only the direction while target_ess="
                f"{est.target_ess!r} sets the temperature; pass target_ess=None to train "
                f"with lam={est.lam!r}",
                UserWarning,
                stacklevel=3,
            )
    if est.lam_schedule is not None and not (
        is_real(est.lam_schedule) and 0.0 < est.lam_schedule < 1.0
    ):
        raise ValueError(
            "lam_schedule must be None or a fraction in (0, 1) of max_iter trained as "
            f"plain SGD before switching to lam, got {est.lam_schedule!r}"
        )
    if not isinstance(est.loss, str):
        raise ValueError(f"loss must be the name of a registered loss, got {est.loss!r}")
    LOSSES.get(est.loss)  # ValueError naming the valid losses
    if est.loss_options is not None and not isinstance(est.loss_options, Mapping):
        raise ValueError(f"loss_options must be None or a dict, got {est.loss_options!r}")
    if "reduction" in (est.loss_options or {}):
        raise ValueError("loss_options may not set reduction: the estimator reduces itself")
    cw = est.class_weight
    if not (cw is None or isinstance(cw, Mapping) or cw in CLASS_WEIGHT_SCHEMES):
        raise ValueError(
            f"class_weight must be None, 'balanced', 'effective_number' or a dict "
            f"{{label: weight}}, got {cw!r}"
        )
    if not (is_real(est.beta) and 0.0 <= est.beta < 1.0):
        raise ValueError(f"beta must be in [0, 1), got {est.beta!r}")
    if est.placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {est.placement!r}")
    alpha = est.alpha
    if alpha != "auto" and not (is_real(alpha) and 0 <= float(alpha) < math.inf):
        raise ValueError(f"alpha must be 'auto' or a finite number >= 0, got {alpha!r}")
    if est.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {est.solver!r}")
    lr = est.learning_rate
    if not (is_real(lr) and 0 < lr < math.inf):
        raise ValueError(f"learning_rate must be a finite number > 0, got {lr!r}")
    if est.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {est.lr_schedule!r}")
    if not (is_real(est.momentum) and 0.0 <= est.momentum < 1.0):
        raise ValueError(f"momentum must be in [0, 1), got {est.momentum!r}")
    for name in ("max_iter", "batch_size", "n_iter_no_change"):
        value = getattr(est, name)
        if not (is_int(value) and value >= 1):
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (is_real(est.validation_fraction) and 0.0 < est.validation_fraction < 1.0):
        raise ValueError(f"validation_fraction must be in (0, 1), got {est.validation_fraction!r}")
    if not (is_real(est.tol) and 0 <= est.tol < math.inf):
        raise ValueError(f"tol must be a finite number >= 0, got {est.tol!r}")
    if est.scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {est.scoring!r}")
    if est.early_stopping and est.solver == "lbfgs":
        raise ValueError(
            "early_stopping applies to the mini-batch solvers (solver='sgd' or 'adam'); "
            "solver='lbfgs' stops at the optimum of the training objective"
        )
    out["device"] = resolve_device(est.device)
    return out


def class_weights(
    est: ABSGDClassifier, classes: np.ndarray, counts: np.ndarray
) -> np.ndarray | None:
    """Per-class weights ``c`` for the training counts (``None`` without class weights)."""
    cw = est.class_weight
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
    raw = effective_number_weights(counts, est.beta).double().numpy()
    return raw * (n / float((raw * counts).sum()))  # training samples average weight 1
