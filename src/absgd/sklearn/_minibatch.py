"""``solver="sgd"`` / ``"adam"`` in :meth:`~absgd.sklearn.ABSGDClassifier.fit`: epochs of
mini-batch ABSGD / ABAdam (two-stage λ with ``lam_schedule``) until the stopping rule, with
early stopping on a held-out split or the plateau rule on the training objective."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from absgd.schedules import Constant, Schedule, two_stage
from absgd.sklearn._data import Rows, factors
from absgd.sklearn._network import logits, module_device
from absgd.sklearn._solvers import Plateau, ess, exponent_inputs, train_epoch

if TYPE_CHECKING:
    from absgd.sklearn._estimator import ABSGDClassifier

__all__ = ["fit_minibatch", "training_ess", "validation_score"]


def fit_minibatch(
    est: ABSGDClassifier,
    X: Any,
    y_idx: np.ndarray,
    sw: np.ndarray | None,
    class_w: np.ndarray | None,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    loss_fn: nn.Module,
    lam: float,
    switch: int,
    rng: np.random.RandomState,
) -> bool:
    """Epochs of ABSGD / ABAdam to the stopping rule; returns whether it was reached."""
    device = module_device(est.model_)
    rows = Rows(X, device)
    y_t = torch.from_numpy(y_idx).to(device)
    u_t = factors(y_idx, sw, class_w, device)
    val_rows = None if val_idx is None else Rows(X[val_idx], device)
    lr = float(est.learning_rate)
    optimizer = est._make_optimizer(est.model_, lr)
    lam_at: Schedule = Constant(lam) if switch == 0 else two_stage(lam, switch=switch)
    plateau = Plateau(float(est.tol), est.n_iter_no_change, est.lr_schedule)
    best_score, best_params, stale = -math.inf, None, 0
    converged = False
    for epoch in range(est.max_iter):
        order = rng.permutation(train_idx) if est.shuffle else train_idx
        lam_now = lam_at(epoch)
        est.weighting_.lam = lam_now
        est.weighting_.gamma = float(est.gamma)
        value, seen = train_epoch(
            est.model_,
            est.weighting_,
            rows,
            y_t,
            u_t,
            order,
            est.batch_size,
            loss_fn,
            optimizer,
            est.placement,
            est.alpha_,
        )
        est.t_ += seen
        est.loss_curve_.append(value)
        est.n_iter_ += 1
        message = f"epoch {epoch + 1}/{est.max_iter}: lam={lam_now:g}, objective={value:.5f}"
        if val_rows is not None and val_idx is not None:
            score = validation_score(est.scoring, est.model_, val_rows, y_idx[val_idx])
            est.validation_scores_.append(score)  # type: ignore[union-attr]
            message += f", validation {est.scoring.replace('_', ' ')}={score:.4f}"
            if epoch >= switch:  # the count starts when λ takes its final value
                if score > best_score + est.tol:
                    best_score, stale = score, 0
                    best_params = copy.deepcopy(est.model_.state_dict())
                else:
                    stale += 1
            converged = stale >= est.n_iter_no_change
        elif epoch >= switch:
            action = plateau.update(value)
            if action == "cut":
                lr /= 5.0
                for group in optimizer.param_groups:
                    group["lr"] = lr
                message += f"; learning rate now {lr:g}"
            converged = action == "stop"
        if est.verbose:
            print(message)
        if converged:
            if est.verbose:
                print(
                    f"stopped: no improvement by tol={est.tol:g} for {est.n_iter_no_change} epochs"
                )
            break
    if best_params is not None:
        est.model_.load_state_dict(best_params)
        est.best_validation_score_ = best_score
    est.optimizer_state_ = {"solver": est.solver, "state": optimizer.state_dict()}
    est.lam_ = float(est.weighting_.lam)
    est.ess_ = training_ess(est, X, y_idx, sw, class_w, loss_fn, train_idx)
    return converged


def training_ess(
    est: ABSGDClassifier,
    X: Any,
    y_idx: np.ndarray,
    sw: np.ndarray | None,
    class_w: np.ndarray | None,
    loss_fn: nn.Module,
    rows: np.ndarray,
) -> float:
    """ESS of ``softmax(v/λ_)`` over the training ``rows`` at the fitted parameters."""
    if math.isinf(est.lam_) or math.isnan(est.lam_):
        return 1.0
    X, y_idx = X[rows], y_idx[rows]
    device = module_device(est.model_)
    z = logits(est.model_, Rows(X, device, preload=False), X.shape[0], torch.float32)
    u = factors(y_idx, None if sw is None else sw[rows], class_w, torch.device("cpu"))
    with torch.no_grad():
        losses = copy.deepcopy(loss_fn).to("cpu")(z, torch.from_numpy(y_idx))
    return ess(exponent_inputs(losses, u, est.placement).double().numpy(), est.lam_)


def validation_score(scoring: str, model: nn.Module, rows: Rows, y_idx: np.ndarray) -> float:
    """``early_stopping``'s score of ``model`` on ``rows``: ``"balanced_accuracy"`` (the mean
    over the classes present in ``y_idx`` of the recall of its argmax) or ``"accuracy"`` (the
    fraction of rows whose argmax is their label)."""
    pred = logits(model, rows, len(y_idx), torch.float32).argmax(1).numpy()
    if scoring == "accuracy":
        return float(np.mean(pred == y_idx))
    return float(np.mean([np.mean(pred[y_idx == c] == c) for c in np.unique(y_idx)]))
