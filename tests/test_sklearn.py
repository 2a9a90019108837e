"""absgd.sklearn.ABSGDClassifier: scikit-learn conventions, equivalences and imbalance."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

sklearn = pytest.importorskip("sklearn", minversion="1.8")

import scipy.sparse as sp  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_blobs, make_classification  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    StratifiedKFold,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import (  # noqa: E402
    check_class_weight_classifiers,
    parametrize_with_checks,
)

from absgd.sklearn import ABSGDClassifier, GuardedRefit  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    """The models here are tiny: one intra-op thread is faster and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(n=256, n_features=5, n_classes=3, seed=0, weights=None):
    X, y = make_classification(
        n_samples=n,
        n_features=n_features,
        n_informative=3,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        weights=weights,
        flip_y=0,
        random_state=seed,
    )
    return StandardScaler().fit_transform(X), y


def _params(est):
    return [p.detach().clone() for p in est.model_.parameters()]


def _assert_same_params(a, b):
    pa, pb = _params(a), _params(b)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb, strict=True):
        assert torch.equal(x, y)


# -- the scikit-learn estimator checks -------------------------------------------------------

_SAMPLE_WEIGHT_REASON = {
    "minibatch": (
        "mini-batch training: a row of weight k is one sample of one mini-batch, while k "
        "repeated rows are spread over several mini-batches (and, with a finite lam, sit in "
        "the exponent of the ABSGD weights differently), so the steps differ; scikit-learn "
        "marks SGDClassifier and MLPClassifier the same way"
    ),
    "lbfgs": (
        "a weight of k is k repeated rows only for the exact optimum with placement='outside' "
        "and a fixed lam: the default target_ess counts rows (the ESS of n rows, not of the "
        "total weight), placement='inside' puts the weight in the exponent (exp(k·l/lam)), "
        "and L-BFGS stops at tol, farther than the check's rtol of 1e-7"
    ),
}


def _expected_failed_checks(estimator):
    kind = "lbfgs" if estimator.solver == "lbfgs" else "minibatch"
    failed = {
        "check_sample_weight_equivalence_on_dense_data": _SAMPLE_WEIGHT_REASON[kind],
        "check_sample_weight_equivalence_on_sparse_data": _SAMPLE_WEIGHT_REASON[kind],
    }
    inside = estimator.placement == "inside" and not math.isinf(estimator.lam)
    if inside and kind == "minibatch":
        failed["check_class_weight_classifiers"] = (
            "with placement='inside' the class weight sits in the exponent: weights "
            "{0: 1000, 1: 1e-4} give p ∝ exp(1000·l/lam), all the weight on the single worst "
            "class-0 sample of very noisy data (a worst-case objective), which mini-batch steps "
            "estimate too noisily to predict class 0 on 87% of the test set; the exact "
            "solver (lbfgs), placement='outside' or lam=math.inf pass "
            "(test_class_weights_are_honoured_with_outside_placement_or_plain_sgd)"
        )
    return failed


CHECKED = [
    ABSGDClassifier(random_state=0),
    ABSGDClassifier(
        solver="adam", lam=1.0, target_ess=None, placement="inside", max_iter=20, random_state=0
    ),
    ABSGDClassifier(
        (8,),
        lam=2.0,
        solver="sgd",
        learning_rate=0.05,
        placement="outside",
        early_stopping=True,
        max_iter=20,
        random_state=0,
    ),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failed_checks, xfail_strict=True)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_class_weights_are_honoured_with_outside_placement_or_plain_sgd():
    check_class_weight_classifiers("ABSGDClassifier", ABSGDClassifier(placement="outside"))
    check_class_weight_classifiers("ABSGDClassifier", ABSGDClassifier(lam=math.inf))


def test_import_absgd_does_not_import_sklearn():
    code = "import sys, absgd; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- equivalences ----------------------------------------------------------------------------


def _reference_plain_sgd(X, y, *, hidden, lr, momentum, batch_size, epochs, random_state):
    """Unweighted mini-batch SGD in plain torch, following the documented conventions."""
    rng = np.random.RandomState(random_state)
    generator = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
    widths = [X.shape[1], *hidden, len(np.unique(y))]
    layers = []
    for fan_in, fan_out in itertools.pairwise(widths):
        bound = 1.0 / math.sqrt(fan_in)
        weight = (torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound
        bias = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
        layers.append((nn.Parameter(weight), nn.Parameter(bias)))
    params = [p for layer in layers for p in layer]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
    X_t, y_t = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            idx = torch.from_numpy(order[start : start + batch_size])
            h = X_t[idx]
            for k, (weight, bias) in enumerate(layers):
                h = F.linear(h, weight, bias)
                if k < len(layers) - 1:
                    h = F.relu(h)
            loss = F.cross_entropy(h, y_t[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return params


@pytest.mark.parametrize("hidden", [(), (16,)])
def test_infinite_lambda_without_weights_is_plain_sgd_exactly(hidden):
    X, y = _data(n=256)
    options = dict(lr=0.1, momentum=0.9, batch_size=32, epochs=3, random_state=7)
    reference = _reference_plain_sgd(X, y, hidden=hidden, **options)
    est = ABSGDClassifier(
        hidden,
        lam=math.inf,
        alpha=0.0,
        solver="sgd",
        learning_rate=0.1,
        momentum=0.9,
        batch_size=32,
        max_iter=3,
        random_state=7,
    ).fit(X, y)
    for ours, theirs in zip(_params(est), reference, strict=True):
        assert torch.equal(ours, theirs.detach())


def test_sample_and_class_weights_sit_inside_the_absgd_weights():
    # One full batch, one momentum-free SGD step, the ABSGD maths by hand in float64.
    X, y = _data(n=12, n_features=3, n_classes=2, seed=3)
    sw = np.linspace(0.5, 2.0, len(y))
    cw = {0: 1.0, 1: 3.0}
    lam, lr = 0.7, 0.5
    est = ABSGDClassifier(
        lam=lam,
        target_ess=None,
        class_weight=cw,
        placement="inside",
        alpha=0.0,
        solver="sgd",
        momentum=0.0,
        learning_rate=lr,
        batch_size=len(y),
        max_iter=1,
        shuffle=False,
        random_state=0,
    )
    init = ABSGDClassifier(max_iter=1, batch_size=len(y), alpha=0.0, random_state=0)
    init.set_params(learning_rate=1e-30, solver="sgd", momentum=0.0).fit(X, y)
    W0, b0 = (p.detach().double().numpy() for p in init.model_.parameters())
    est.fit(X, y, sample_weight=sw)

    z = X @ W0.T + b0
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    loss = -log_p[np.arange(len(y)), y]
    v = sw * np.array([cw[k] for k in y]) * loss
    p = np.exp(v / lam) / np.exp(v / lam).sum()  # first batch: the weights sum to 1
    dz = (np.exp(log_p) - np.eye(2)[y]) * (p * sw * np.array([cw[k] for k in y]))[:, None]
    W1, b1 = W0 - lr * dz.T @ X, b0 - lr * dz.sum(0)
    W, b = (p.detach().double().numpy() for p in est.model_.parameters())
    np.testing.assert_allclose(W, W1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b, b1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_over_chunks_equals_one_epoch_of_fit(solver):
    X, y = _data(n=300)
    sw = np.random.RandomState(0).uniform(0.5, 1.5, len(y))
    options = dict(
        hidden_layer_sizes=(8,),
        lam=0.5,
        class_weight={0: 1.0, 1: 2.0, 2: 0.5},
        solver=solver,
        alpha=1e-3,  # "auto" depends on the size of fit's data, which a stream does not have
        batch_size=32,
        random_state=3,
    )
    full = ABSGDClassifier(max_iter=1, shuffle=False, **options).fit(X, y, sample_weight=sw)
    stream = ABSGDClassifier(**options)
    for start, stop in [(0, 64), (64, 160), (160, 288), (288, 300)]:  # multiples of 32
        stream.partial_fit(X[start:stop], y[start:stop], np.unique(y), sw[start:stop])
    _assert_same_params(full, stream)
    assert torch.equal(full.weighting_.log_normalizer, stream.weighting_.log_normalizer)
    assert stream.t_ == full.t_ == 300 and stream.n_iter_ == 4

    # Two epochs of fit equal two passes of partial_fit over the whole data.
    two = ABSGDClassifier(max_iter=2, shuffle=False, **options).fit(X, y)
    passes = ABSGDClassifier(**options)
    passes.partial_fit(X, y, classes=np.unique(y)).partial_fit(X, y)
    _assert_same_params(two, passes)


def test_lam_schedule_is_plain_sgd_then_lam():
    X, y = _data(n=128)
    common = dict(solver="sgd", momentum=0.0, batch_size=32, shuffle=False, random_state=0)
    scheduled = ABSGDClassifier(lam=0.5, lam_schedule=0.5, max_iter=4, **common).fit(X, y)
    staged = ABSGDClassifier(lam=math.inf, max_iter=2, **common).fit(X, y)
    staged.set_params(lam=0.5, warm_start=True).fit(X, y)
    _assert_same_params(scheduled, staged)
    assert int(scheduled.weighting_.step) == 2 * 4  # the average restarted at the switch


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_sparse_input_trains_like_dense_input(solver):
    X, y = _data(n=100)
    X[np.abs(X) < 0.5] = 0.0
    dense = ABSGDClassifier(solver=solver, max_iter=3, random_state=0).fit(X, y)
    sparse = ABSGDClassifier(solver=solver, max_iter=3, random_state=0).fit(sp.csr_matrix(X), y)
    _assert_same_params(dense, sparse)
    np.testing.assert_array_equal(dense.predict_proba(X), sparse.predict_proba(sp.csr_array(X)))


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_sample_weight_of_ones_is_no_weight(solver):
    X, y = _data(n=100)
    a = ABSGDClassifier(solver=solver, max_iter=3, random_state=0).fit(X, y)
    ones = np.ones(len(y))
    b = ABSGDClassifier(solver=solver, max_iter=3, random_state=0).fit(X, y, sample_weight=ones)
    _assert_same_params(a, b)


# -- imbalance -------------------------------------------------------------------------------


def test_each_exact_solution_is_optimal_for_its_own_lambda():
    # F_λ = λ log mean exp(l/λ) + (α/2)‖W‖², by hand in float64 from the fitted parameters:
    # the λ = 0.3 solution is no worse than the plain one on F_0.3, and the plain one no
    # worse on F_∞ (the mean loss); the tilted one has the smaller largest loss.
    X, y = make_classification(
        n_samples=750,
        n_features=8,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        weights=[0.9, 0.07, 0.03],
        class_sep=1.0,
        flip_y=0.05,
        random_state=1,
    )
    X = StandardScaler().fit_transform(X)
    alpha = 1e-3
    plain = ABSGDClassifier(lam=math.inf, alpha=alpha, random_state=0).fit(X, y)
    tilted = ABSGDClassifier(lam=0.3, target_ess=None, alpha=alpha, random_state=0).fit(X, y)

    def objective(est, lam):
        z = est.decision_function(X)
        v = np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]
        W = est.model_[0].weight.detach().double().numpy()
        risk = v.mean() if math.isinf(lam) else lam * np.log(np.mean(np.exp(v / lam)))
        return risk + 0.5 * alpha * (W**2).sum(), v.max()

    assert objective(tilted, 0.3)[0] <= objective(plain, 0.3)[0] + 1e-6
    assert objective(plain, math.inf)[0] <= objective(tilted, math.inf)[0] + 1e-6
    assert objective(tilted, 0.3)[1] < objective(plain, 0.3)[1]


def test_class_weight_schemes():
    y = np.array([0] * 90 + [1] * 9 + [2] * 1)
    X = np.random.RandomState(0).normal(size=(len(y), 2))
    balanced = ABSGDClassifier(class_weight="balanced", max_iter=1).fit(X, y)
    np.testing.assert_allclose(balanced.class_weight_, 100 / (3 * np.array([90, 9, 1])))
    effective = ABSGDClassifier(class_weight="effective_number", max_iter=1).fit(X, y)
    counts = np.array([90, 9, 1])
    assert (effective.class_weight_ * counts).sum() == pytest.approx(100)  # average 1
    ratio = effective.class_weight_ / effective.class_weight_[0]
    e = (1 - 0.9999**counts) / (1 - 0.9999)
    np.testing.assert_allclose(ratio, e[0] / e, rtol=1e-5)
    partial = ABSGDClassifier(class_weight={2: 5.0}, max_iter=1).fit(X, y)
    np.testing.assert_array_equal(partial.class_weight_, [1.0, 1.0, 5.0])
    with pytest.raises(ValueError, match=r"labels \[7\] that are not classes"):
        ABSGDClassifier(class_weight={7: 1.0}).fit(X, y)


@pytest.mark.parametrize("loss", ["ldam", "logit_adjusted", "balanced_softmax"])
def test_losses_that_need_class_counts_get_them_from_fit(loss):
    # 96/18/6 samples; early stopping holds out round(0.1 · n_c) = 10/2/1 of them, so the
    # training counts are 86/16/5 — those, not the counts of all of y, must reach the loss.
    X, y = _data(n=120, weights=[0.8, 0.15, 0.05])
    assert np.bincount(y).tolist() == [96, 18, 6]
    options = {"scale": 1.0} if loss == "ldam" else {}
    common = {"loss": loss, "solver": "adam", "early_stopping": True, "max_iter": 3}
    common["random_state"] = 0
    est = ABSGDClassifier(loss_options=options, **common).fit(X, y)
    np.testing.assert_array_equal(est.class_counts_, [86, 16, 5])
    given = ABSGDClassifier(loss_options={**options, "class_counts": [86, 16, 5]}, **common)
    _assert_same_params(est, given.fit(X, y))
    wrong = ABSGDClassifier(loss_options={**options, "class_counts": [96, 18, 6]}, **common)
    assert not torch.equal(_params(est)[0], _params(wrong.fit(X, y))[0])


# -- scikit-learn usage ----------------------------------------------------------------------


def test_pipeline_and_grid_search_over_lam():
    X, y = _data(n=240, weights=[0.8, 0.15, 0.05], seed=1)
    grid_values = [math.inf, 1.0, 0.3]

    def pipe(**params):
        est = ABSGDClassifier(random_state=0, **params)
        return make_pipeline(StandardScaler(), est)

    grid = GridSearchCV(
        pipe(), {"absgdclassifier__lam": grid_values}, cv=3, scoring="balanced_accuracy"
    )
    grid.fit(X, y)
    # The same cross-validation by hand: GridSearchCV's cv=3 is an unshuffled 3-fold
    # stratified split; each fold trains a fresh pipeline.
    folds = list(StratifiedKFold(n_splits=3).split(X, y))
    scores = []
    for lam in grid_values:
        fold_scores = []
        for train, test in folds:
            model = pipe(lam=lam).fit(X[train], y[train])
            fold_scores.append(balanced_accuracy_score(y[test], model.predict(X[test])))
        scores.append(np.mean(fold_scores))
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"], scores, rtol=0, atol=1e-12)
    best = grid_values[int(np.argmax(scores))]
    assert grid.best_params_["absgdclassifier__lam"] == best
    refit = pipe(lam=best).fit(X, y)  # refit=True: the best λ trained on all of X
    np.testing.assert_array_equal(grid.predict_proba(X), refit.predict_proba(X))


def test_clone_pickle_and_continue_training_after_unpickling():
    X, y = _data(n=160)
    est = ABSGDClassifier((8,), lam=1.0, solver="adam", max_iter=3, random_state=0).fit(X, y)
    assert clone(est).get_params() == est.get_params()
    assert not hasattr(clone(est), "model_")
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict_proba(X), est.predict_proba(X))
    twin = copy.deepcopy(est)
    est.partial_fit(X[:64], y[:64])
    restored.partial_fit(X[:64], y[:64])  # the optimiser and ABSGD states were pickled too
    twin.partial_fit(X[:64], y[:64])
    _assert_same_params(est, restored)
    _assert_same_params(est, twin)


def test_string_labels_binary_and_multiclass_outputs():
    X, y = _data(n=120, n_classes=2)
    labels = np.array(["ham", "spam"])[y]
    est = ABSGDClassifier(random_state=0).fit(X, labels)
    np.testing.assert_array_equal(est.classes_, ["ham", "spam"])
    scores = est.decision_function(X)
    assert scores.shape == (120,)
    np.testing.assert_array_equal(est.predict(X), np.where(scores > 0, "spam", "ham"))
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(np.exp(est.predict_log_proba(X)), proba, rtol=1e-12)
    assert est.score(X, labels) > 0.8

    X3, y3 = _data(n=120, n_classes=3)
    names = np.array(["a", "b", "c"], dtype=object)[y3]
    est3 = ABSGDClassifier(random_state=0).fit(X3, names)
    assert est3.decision_function(X3).shape == (120, 3)
    np.testing.assert_allclose(est3.predict_proba(X3).sum(1), 1.0)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_reproducible_and_leaves_global_random_state_alone(solver):
    X, y = _data(n=100)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    a = ABSGDClassifier((8,), solver=solver, max_iter=3, random_state=5).fit(X, y)
    b = ABSGDClassifier((8,), solver=solver, max_iter=3, random_state=5).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    _assert_same_params(a, b)
    c = ABSGDClassifier((8,), solver=solver, max_iter=3, random_state=6).fit(X, y)
    assert not torch.equal(_params(a)[0], _params(c)[0])


def test_warm_start_continues_and_checks_compatibility():
    X, y = _data(n=100)
    est = ABSGDClassifier(lam=math.inf, solver="adam", max_iter=2, random_state=0).fit(X, y)
    before = _params(est)
    est.set_params(warm_start=True, lam=1.0, max_iter=1).fit(X, y)
    assert est.n_iter_ == 1 and est.t_ == 300
    fresh_start = ABSGDClassifier(lam=1.0, solver="adam", max_iter=1, random_state=0).fit(X, y)
    assert not torch.equal(_params(est)[0], _params(fresh_start)[0])
    assert not torch.equal(_params(est)[0], before[0])
    with pytest.raises(ValueError, match="warm_start=True needs the classes"):
        est.fit(X, np.where(y == 2, 1, y))
    with pytest.raises(ValueError, match="does not match the fitted network"):
        est.set_params(hidden_layer_sizes=(4,)).fit(X, y)


def test_early_stopping_keeps_the_best_epoch():
    X, y = _data(n=300, weights=[0.8, 0.15, 0.05])
    est = ABSGDClassifier(
        solver="adam", early_stopping=True, n_iter_no_change=3, max_iter=200, random_state=0
    ).fit(X, y)
    assert est.n_iter_ < 200
    assert len(est.validation_scores_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.class_counts_.sum() == 300 - round(0.1 * 240) - round(0.1 * 45) - round(0.1 * 15)
    # the model kept is the best epoch's: a fit stopped there by max_iter (same split, same
    # shuffles) ends with the same parameters
    best = int(np.argmax(est.validation_scores_)) + 1
    assert best < est.n_iter_
    short = ABSGDClassifier(
        solver="adam", early_stopping=True, n_iter_no_change=3, max_iter=best, random_state=0
    )
    with pytest.warns(UserWarning, match=f"reached max_iter={best} epochs"):
        short.fit(X, y)
    assert short.n_iter_ == best
    for name, value in est.model_.state_dict().items():
        assert torch.equal(value, short.model_.state_dict()[name]), name


def test_early_stopping_scores_accuracy_at_the_training_prior_when_asked(monkeypatch):
    X, y = _data(n=300, weights=[0.8, 0.15, 0.05])
    held_out = []
    split = ABSGDClassifier._split

    def spy(self, *args):  # the rows the estimator held out, as it drew them
        train_idx, val_idx = split(self, *args)
        held_out.append(val_idx)
        return train_idx, val_idx

    monkeypatch.setattr(ABSGDClassifier, "_split", spy)
    common = {"solver": "adam", "early_stopping": True, "n_iter_no_change": 3, "max_iter": 60}
    for scoring in ("accuracy", "balanced_accuracy"):
        est = ABSGDClassifier(scoring=scoring, random_state=0, **common).fit(X, y)
        rows = held_out[-1]
        assert len(np.unique(y[rows])) == 3  # stratified: every class held out
        pred, truth = est.predict(X[rows]), y[rows]  # the kept model: the best epoch's
        if scoring == "accuracy":
            expected = np.mean(pred == truth)
        else:
            expected = np.mean([np.mean(pred[truth == c] == c) for c in np.unique(truth)])
        assert est.best_validation_score_ == pytest.approx(expected)
        assert est.best_validation_score_ == max(est.validation_scores_)


def test_partial_fit_online_without_a_prior():
    X, y = _data(n=200)
    est = ABSGDClassifier(lam=1.0, solver="adam", batch_size=16, random_state=0)
    for start in range(0, 200, 40):
        est.partial_fit(X[start : start + 40], y[start : start + 40], classes=[0, 1, 2])
    np.testing.assert_array_equal(est.class_counts_, np.bincount(y))
    assert est.n_iter_ == 5 and len(est.loss_curve_) == 5
    est.set_params(lam=math.inf).partial_fit(X[:40], y[:40])  # switch λ between calls
    assert est.weighting_.lam == math.inf
    # A batch may miss classes; labels outside `classes` are refused.
    est.partial_fit(X[y == 0][:10], y[y == 0][:10])
    with pytest.raises(ValueError, match=r"labels \['5'\] that are not in classes"):
        est.partial_fit(X[:3], np.array([0, 1, 5]))


# -- errors ----------------------------------------------------------------------------------


def test_clear_errors_for_bad_input():
    X, y = _data(n=60)
    est = ABSGDClassifier(max_iter=1)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X_nan, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        est.fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="non-negative"):
        est.fit(X, y, sample_weight=-np.ones(len(y)))
    with pytest.raises(ValueError, match="at least one non-zero weight"):
        est.fit(X, y, sample_weight=np.zeros(len(y)))
    est.fit(X, y)
    with pytest.raises(ValueError, match="expecting 5 features"):
        est.predict(X[:, :3])
    stream = ABSGDClassifier(solver="adam", max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="expecting 5 features"):
        stream.partial_fit(X[:, :3], y)


def test_partial_fit_refuses_what_needs_a_class_prior():
    X, y = _data(n=60)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        ABSGDClassifier(solver="adam").partial_fit(X, y)
    with pytest.raises(ValueError, match="stream does not provide"):
        ABSGDClassifier(solver="adam", class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="loss_options=\\{'class_counts'"):
        ABSGDClassifier(solver="adam", loss="ldam").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="lam_schedule"):
        ABSGDClassifier(solver="adam", lam_schedule=0.5).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"labels \['7'\] that are not in classes"):
        ABSGDClassifier(solver="adam").partial_fit(X[:2], [0, 7], classes=[0, 1, 2])
    counts = {"class_counts": np.bincount(y).tolist(), "scale": 1.0}
    est = ABSGDClassifier(solver="adam", loss="ldam", loss_options=counts, class_weight={2: 3.0})
    est.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="differs from the classes of the first call"):
        est.partial_fit(X, y, classes=[0, 1])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lam": 0.0}, "lam must be a non-zero"),
        ({"gamma": 1.5}, "gamma must be in"),
        ({"lam_schedule": 1.0}, "lam_schedule must be None or a fraction"),
        ({"loss": "hinge"}, "unknown loss 'hinge'; valid names"),
        ({"loss_options": {"reduction": "mean"}}, "may not set reduction"),
        ({"class_weight": "auto"}, "class_weight must be None"),
        ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes must be a tuple"),
        ({"solver": "newton"}, "solver must be one of"),
        ({"alpha": -1.0}, "alpha must be 'auto' or a finite number >= 0"),
        ({"alpha": "strong"}, "alpha must be 'auto' or a finite number >= 0"),
        ({"lr_schedule": "cosine"}, "lr_schedule must be one of"),
        ({"early_stopping": True}, "early_stopping applies to the mini-batch solvers"),
        ({"placement": "middle"}, "placement must be one of"),
        ({"learning_rate": -1.0}, "learning_rate must be a finite number > 0"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"validation_fraction": 1.0}, "validation_fraction must be in"),
        ({"scoring": "f1"}, "scoring must be one of .* got 'f1'"),
        ({"device": "tpu"}, "device must be"),
    ],
)
def test_clear_errors_for_bad_hyperparameters(params, match):
    X, y = _data(n=30)
    with pytest.raises(ValueError, match=match):
        ABSGDClassifier(**params).fit(X, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    X, y = _data(n=30)
    with pytest.raises(ValueError, match="CUDA is not available"):
        ABSGDClassifier(device="cuda").fit(X, y)
    assert ABSGDClassifier(device="auto", max_iter=1).fit(X, y).model_[0].weight.is_cpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu_closely_and_pickles_to_cpu():
    X, y = _data(n=256)
    cpu = ABSGDClassifier((16,), max_iter=3, random_state=0).fit(X, y)
    gpu = ABSGDClassifier((16,), max_iter=3, random_state=0, device="cuda").fit(X, y)
    assert next(gpu.model_.parameters()).is_cuda
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-4)
    restored = pickle.loads(pickle.dumps(gpu))
    assert next(restored.model_.parameters()).is_cpu
    assert next(gpu.model_.parameters()).is_cuda  # pickling did not move the live model
    np.testing.assert_allclose(restored.predict_proba(X), gpu.predict_proba(X), atol=1e-12)
    restored.set_params(device="cpu").partial_fit(X[:64], y[:64])


def test_feature_names_from_a_dataframe():
    pd = pytest.importorskip("pandas")
    X, y = _data(n=60)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = ABSGDClassifier(max_iter=1).fit(frame, y)
    np.testing.assert_array_equal(est.feature_names_in_, frame.columns)
    with pytest.warns(UserWarning, match="feature names"):
        est.predict(X)


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = make_blobs(n_samples=40, centers=2, random_state=0)
    ABSGDClassifier(solver="adam", max_iter=3, verbose=1, early_stopping=True).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "validation balanced accuracy" in lines[0]


def test_docs_python_blocks_run():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "sklearn.md").read_text("utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    assert len(blocks) == 4
    namespace: dict = {}
    for index, code in enumerate(blocks):  # the later blocks continue the first
        exec(compile(code, f"docs/sklearn.md python block {index}", "exec"), namespace)
    # The printed search chose by cross-validation and refitted that target on the training
    # set: the same pipeline trained with the chosen target predicts what the search predicts.
    search, X_train, y_train = namespace["search"], namespace["X_train"], namespace["y_train"]
    target = search.best_params_["absgdclassifier__target_ess"]
    scores = search.cv_results_["mean_test_score"]
    assert search.cv_results_["param_absgdclassifier__target_ess"][int(np.argmax(scores))] == target
    # The guarded search: its choice is the best balanced accuracy among the targets within one
    # point of accuracy of target_ess=1.0 (the first), as read off its cv_results_ here.
    guarded = namespace["guarded"]
    res = guarded.cv_results_
    acc, bal = res["mean_test_accuracy"], res["mean_test_balanced_accuracy"]
    ok = [k for k in range(len(acc)) if acc[k] >= acc[0] - 0.01 - 1e-9]
    assert guarded.best_index_ == max(ok, key=lambda k: (bal[k], -k))
    # what the paragraph after the block says: 1.0 and 0.9 allowed, 1.0 (off) chosen
    assert guarded.refit.allowed(res) == [0, 1] and guarded.best_index_ == 0
    assert res["params"][0] == {"absgdclassifier__target_ess": 1.0}
    # The sharpest λ the confident guard admits: the bounds from the five folds' accuracies by
    # hand (t = 2.132, one-sided 0.95 with 4 degrees of freedom, from the table; k-fold factor
    # √(1/5 + 1/4)); what the paragraph after the block says: only λ = 10 admitted, below
    # λ = ∞ in balanced accuracy, so λ = ∞ is kept, and λ = 10 without not_worse.
    sharpest = namespace["sharpest"]
    res = sharpest.cv_results_
    acc = np.stack([res[f"split{f}_test_accuracy"] for f in range(5)])
    drops = acc[:, :1] - acc
    bounds = drops.mean(0) + 2.132 * drops.std(0, ddof=1) * math.sqrt(1 / 5 + 1 / 4)
    np.testing.assert_allclose(sharpest.refit.upper_bounds(res), bounds, atol=1e-4)
    np.testing.assert_allclose(100 * bounds[1:], [0.3, 1.1, 2.6, 2.8], atol=0.05)  # the text
    assert [k for k in range(5) if bounds[k] <= 0.01] == [0, 1]
    bal = res["mean_test_balanced_accuracy"]
    assert bal[1] < bal[0] and sharpest.best_index_ == 0
    assert GuardedRefit(drop=0.01, confidence=0.95, choose_last=True)(res) == 1
    chosen = ABSGDClassifier(class_weight="balanced", target_ess=target, random_state=0)
    refit = make_pipeline(StandardScaler(), chosen).fit(X_train, y_train)
    X_test = namespace["X_test"]
    np.testing.assert_array_equal(search.predict_proba(X_test), refit.predict_proba(X_test))
    # The stream: 1,500 training rows in chunks of 250 are 6 partial_fit calls, λ = ∞ for the
    # first two, then the positive direction with λ solved per batch for the default target.
    stream = namespace["stream"]
    assert len(X_train) == 1500 and stream.n_iter_ == 6 and len(stream.loss_curve_) == 6
    assert stream.weighting_.target_ess == 0.9 and 0 < stream.lam_ < math.inf
