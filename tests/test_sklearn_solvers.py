"""ABSGDClassifier's solvers: the exact full-batch optimum, the penalty, the stopping rules."""

import math
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from absgd.sklearn import ABSGDClassifier
from absgd.sklearn._solvers import Plateau
from absgd.temperature import ess_at


def _table(n_classes, seed=0, n=600):
    X, y = make_classification(
        n_samples=n,
        n_features=6,
        n_informative=4,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=1,
        weights=[0.85] + [0.15 / (n_classes - 1)] * (n_classes - 1),
        class_sep=0.8,
        flip_y=0.05,
        random_state=seed,
    )
    return StandardScaler().fit_transform(X), y


def _softmax_losses_and_grads(X, y, W, b):
    """Float64 cross-entropy per sample and dl_i/dz_i, by hand."""
    z = X @ W.T + b
    z -= z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y])
    return loss, p - np.eye(W.shape[0])[y]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_plain_weighted_fit_equals_logistic_regression_on_the_same_penalty(n_classes):
    # LogisticRegression(C) minimises mean(c·l) + ‖w‖²/(2Cn) (one weight vector for two
    # classes); the two-output binary model has ‖W‖² = ‖w‖²/2 at the optimum, hence the 2.
    X, y = _table(n_classes)
    C = 0.5
    alpha = (2.0 if n_classes == 2 else 1.0) / (C * len(y))
    ours = ABSGDClassifier(lam=math.inf, class_weight="balanced", alpha=alpha, tol=1e-8)
    ours.set_params(max_iter=1000).fit(X, y)
    theirs = LogisticRegression(class_weight="balanced", C=C, tol=1e-10, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-4)
    assert ours.lam_ == math.inf and ours.ess_ == 1.0


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_default_penalty_is_logistic_regressions(n_classes):
    X, y = _table(n_classes, seed=7, n=300)
    ours = ABSGDClassifier(lam=math.inf, class_weight="balanced", tol=1e-8, max_iter=1000)
    theirs = LogisticRegression(class_weight="balanced", tol=1e-10, max_iter=1000)
    np.testing.assert_allclose(
        ours.fit(X, y).predict_proba(X), theirs.fit(X, y).predict_proba(X), atol=1e-4
    )
    assert ours.alpha_ == pytest.approx((2.0 if n_classes == 2 else 1.0) / 300)


@pytest.mark.parametrize(
    ("lam", "placement"), [(0.5, "inside"), (1.0, "outside"), (-2.0, "inside")]
)
def test_the_lbfgs_solution_is_a_stationary_point_of_the_stated_objective(lam, placement):
    # ∇ = Σ π_i u_i ∇l_i + αW with π ∝ q_i exp(e_i/λ); inside: e = u·l, q uniform; outside:
    # e = l, q ∝ u and the whole gradient scaled by ū / Σ q·... — up to a positive factor,
    # so the check is that Σ π_i u_i ∇l_i + αW / scale vanishes, written out in numpy.
    X, y = _table(3, seed=2)
    alpha = 1e-2
    est = ABSGDClassifier(
        lam=lam,
        target_ess=None,
        class_weight="balanced",
        placement=placement,
        alpha=alpha,
        tol=1e-9,
        max_iter=2000,
    ).fit(X, y)
    W = est.model_[0].weight.detach().double().numpy()
    b = est.model_[0].bias.detach().double().numpy()
    u = est.class_weight_[y]
    loss, dz = _softmax_losses_and_grads(X, y, W, b)
    if placement == "inside":
        e = u * loss
        pi = np.exp((e - e.max()) / lam) if lam > 0 else np.exp((e - e.min()) / lam)
        pi /= pi.sum()
        coef = pi * u
    else:
        pi = u * np.exp((loss - loss.max()) / lam)
        pi /= pi.sum()
        coef = u.mean() * pi
    grad_W = (coef[:, None] * dz).T @ X + alpha * W
    grad_b = (coef[:, None] * dz).sum(0)
    assert np.abs(grad_W).max() < 1e-4 and np.abs(grad_b).max() < 1e-4


def test_a_huge_penalty_leaves_the_biases_at_the_log_class_frequencies():
    # W → 0, and the biases minimise the mean cross-entropy alone: softmax(b) = frequencies.
    X, y = _table(3, seed=1)
    est = ABSGDClassifier(lam=math.inf, alpha=1e6).fit(X, y)
    np.testing.assert_allclose(
        est.predict_proba(X[:5]), np.tile(np.bincount(y) / len(y), (5, 1)), atol=1e-4
    )


@pytest.mark.parametrize("target", [0.9, 0.5])
def test_lbfgs_target_ess_reaches_its_target_on_the_training_set(target):
    X, y = _table(3, seed=3)
    est = ABSGDClassifier(target_ess=target, class_weight="balanced", placement="inside")
    est.fit(X, y)
    W = est.model_[0].weight.detach().double().numpy()
    b = est.model_[0].bias.detach().double().numpy()
    v = est.class_weight_[y] * _softmax_losses_and_grads(X, y, W, b)[0]
    w = np.exp((v - v.max()) / est.lam_)
    ess = w.sum() ** 2 / (len(w) * (w**2).sum())  # normalised ESS by hand
    assert 0 < est.lam_ < math.inf
    assert ess == pytest.approx(target, abs=0.02)
    assert est.ess_ == pytest.approx(ess, abs=1e-3)
    import torch

    assert ess_at(torch.tensor(v), est.lam_) == pytest.approx(ess, abs=1e-6)


def test_hitting_max_iter_is_a_convergence_warning_and_converging_is_not():
    X, y = _table(3)
    with pytest.warns(ConvergenceWarning, match="max_iter=2 iterations"):
        ABSGDClassifier(max_iter=2).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="max_iter=2 epochs"):
        ABSGDClassifier(solver="adam", max_iter=2).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ABSGDClassifier().fit(X, y)
        stopped = ABSGDClassifier(
            solver="adam",
            lr_schedule="constant",
            n_iter_no_change=3,
            tol=1e-2,
            max_iter=500,
            random_state=0,
        ).fit(X, y)
    assert stopped.n_iter_ < 500


def test_plateau_counts_epochs_without_improvement_and_cuts_three_times():
    rule = Plateau(tol=0.1, patience=2, schedule="adaptive")
    # 1.0 best; 0.95 and 0.99 do not beat it by 0.1: a plateau of 2 → cut, count restarts.
    actions = [rule.update(v) for v in (1.0, 0.95, 0.99, 0.5, 0.45, 0.44, 0.43, 0.42, 0.41, 0.40)]
    assert actions == ["go", "go", "cut", "go", "go", "cut", "go", "cut", "go", "stop"]
    constant = Plateau(tol=0.0, patience=1, schedule="constant")
    assert [constant.update(v) for v in (1.0, 0.9, 0.95)] == ["go", "go", "stop"]


def test_adaptive_schedule_divides_the_learning_rate_by_five():
    X, y = _table(2)
    est = ABSGDClassifier(
        solver="sgd", learning_rate=0.05, n_iter_no_change=2, tol=1.0, max_iter=50, random_state=0
    ).fit(X, y)
    # The first epoch improves on +inf; with tol = 1 no later one counts: plateaus end at
    # epochs 3, 5 and 7 (cuts) and at epoch 9 (stop).
    assert est.n_iter_ == 9
    for group in est.optimizer_state_["state"]["param_groups"]:
        assert group["lr"] == pytest.approx(0.05 / 125)


def test_partial_fit_exists_only_for_the_mini_batch_solvers():
    assert not hasattr(ABSGDClassifier(), "partial_fit")
    with pytest.raises(AttributeError) as info:
        ABSGDClassifier().partial_fit  # noqa: B018
    assert "partial_fit needs a mini-batch solver" in str(info.value.__cause__)
    assert hasattr(ABSGDClassifier(solver="sgd"), "partial_fit")


def test_lam_schedule_with_lbfgs_starts_from_the_plain_optimum():
    # Two stages reach the same optimum as one (the tilted problem is convex for a linear
    # model and λ > 0).
    X, y = _table(3, seed=4)
    fixed = {"lam": 0.5, "target_ess": None, "tol": 1e-8, "max_iter": 1000}
    one = ABSGDClassifier(**fixed).fit(X, y)
    two = ABSGDClassifier(lam_schedule=0.5, **fixed).fit(X, y)
    np.testing.assert_allclose(two.predict_proba(X), one.predict_proba(X), atol=1e-4)


_CLOSED_FORM_CASES = [
    (math.inf, "inside", False),
    (0.7, "inside", False),
    (0.7, "inside", True),
    (-1.5, "inside", True),
    (0.7, "outside", True),
    (-1.5, "outside", True),
]


def _autograd_problem(X, y, n_classes, u, placement):
    import torch

    from absgd.losses import build_loss
    from absgd.sklearn._network import build_network
    from absgd.sklearn._solvers import FullBatchProblem

    return FullBatchProblem(
        build_network(X.shape[1], (), n_classes, seed=0).double(),
        torch.from_numpy(X),
        torch.from_numpy(y),
        None if u is None else torch.from_numpy(u),
        build_loss("ce", reduction="none"),
        placement,
        0.3,
    )


@pytest.mark.parametrize(("lam", "placement", "weighted"), _CLOSED_FORM_CASES)
def test_the_softmax_closed_form_equals_autograd_on_the_network(lam, placement, weighted):
    from absgd.sklearn._linear import SoftmaxCEProblem

    X, y = _table(3, seed=5, n=200)
    u = np.random.RandomState(0).uniform(0.2, 3.0, len(y)) if weighted else None
    auto = _autograd_problem(X, y, 3, u, placement)
    closed = SoftmaxCEProblem(X, y, 3, u, placement, 0.3, auto.theta0)
    theta = np.random.RandomState(1).normal(size=3 * X.shape[1] + 3)  # network layout
    value_a, grad_a = auto.value_and_grad(theta, lam)
    value_c, grad_c = closed.value_and_grad(closed.from_network(theta), lam)
    assert value_c == pytest.approx(value_a, rel=1e-12)
    np.testing.assert_allclose(closed.to_network(grad_c), grad_a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(closed.to_network(closed.from_network(theta)), theta)
    np.testing.assert_allclose(
        closed.exponent_inputs(closed.from_network(theta)),
        auto.exponent_inputs(theta),
        rtol=1e-12,
    )


@pytest.mark.parametrize(("lam", "placement", "weighted"), _CLOSED_FORM_CASES)
def test_the_binary_closed_form_is_the_two_output_network_at_w0_equal_minus_w1(
    lam, placement, weighted
):
    # One logit difference w = W1 - W0, beta = b1 - b0, evaluated on the two-output network
    # with W1 = w/2 = -W0: the values agree, the network's gradient is (-g_w, g_w, -g_b, g_b).
    from absgd.sklearn._linear import BinaryCEProblem

    X, y = _table(2, seed=5, n=200)
    d = X.shape[1]
    u = np.random.RandomState(0).uniform(0.2, 3.0, len(y)) if weighted else None
    auto = _autograd_problem(X, y, 2, u, placement)
    closed = BinaryCEProblem(X, y, u, placement, 0.3, auto.theta0)
    theta = np.random.RandomState(1).normal(size=d + 1)
    w, beta = theta[:d], theta[d]
    network = np.concatenate([-w / 2, w / 2, [-beta / 2, beta / 2]])
    np.testing.assert_allclose(closed.to_network(theta), network)
    np.testing.assert_allclose(closed.from_network(network), theta)
    value_a, grad_a = auto.value_and_grad(network, lam)
    value_c, grad_c = closed.value_and_grad(theta, lam)
    assert value_c == pytest.approx(value_a, rel=1e-12)
    g_w, g_b = grad_c[:d], grad_c[d]
    expected = np.concatenate([-g_w, g_w, [-g_b, g_b]])
    np.testing.assert_allclose(grad_a, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        closed.exponent_inputs(theta), auto.exponent_inputs(network), rtol=1e-12
    )


def test_the_network_path_reaches_the_closed_form_optimum():
    # label_smoothing=0 given explicitly still takes the closed form; a focal loss with γ = 0
    # is cross-entropy computed by another module, so it takes the autograd path: same answer.
    X, y = _table(3, seed=6)
    closed = ABSGDClassifier(
        lam=0.8, target_ess=None, class_weight="balanced", tol=1e-8, max_iter=1000
    ).fit(X, y)
    network = ABSGDClassifier(
        lam=0.8,
        target_ess=None,
        class_weight="balanced",
        loss="focal",
        loss_options={"gamma": 0.0},
        tol=1e-8,
        max_iter=1000,
    ).fit(X, y)
    np.testing.assert_allclose(network.predict_proba(X), closed.predict_proba(X), atol=1e-4)


@pytest.mark.parametrize(("target", "sign"), [(0.9, 1.0), (0.5, 1.0), (0.7, -1.0)])
def test_the_exact_temperature_gives_the_target_ess(target, sign):
    from absgd.sklearn._solvers import solve_lam_exact

    v = np.random.RandomState(3).gamma(1.5, size=500)
    lam = solve_lam_exact(v, target, sign)
    w = np.exp(sign * (v - v.max()) / lam)
    assert w.sum() ** 2 / (len(w) * (w**2).sum()) == pytest.approx(target, abs=1e-8)
    assert solve_lam_exact(3 * v + 2, target, sign) == pytest.approx(3 * lam, rel=1e-8)
    assert solve_lam_exact(np.ones(5), target, sign) == math.inf


def test_a_lam_that_target_ess_overrides_is_a_warning():
    X, y = _table(2, seed=8, n=200)
    with pytest.warns(UserWarning, match="lam=0.5 gives only the direction"):
        ABSGDClassifier(lam=0.5).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ABSGDClassifier(lam=-1.0).fit(X, y)
        ABSGDClassifier(lam=math.inf).fit(X, y)
        ABSGDClassifier(lam=0.5, target_ess=None).fit(X, y)
