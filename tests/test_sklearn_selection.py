"""The guarded refit rule: hand-made ``cv_results_`` with known answers, its errors, and a real
``GridSearchCV`` over λ."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from absgd.sklearn import ABSGDClassifier, GuardedRefit


def results(lams, balanced, accuracy):
    return {
        "params": [{"lam": lam, "alpha": 0.1} for lam in lams],
        "mean_test_balanced_accuracy": np.asarray(balanced, dtype=float),
        "mean_test_accuracy": np.asarray(accuracy, dtype=float),
    }


def test_best_balanced_within_the_drop_of_the_reference():
    # accuracy drops against λ = ∞ (0.90): 0.004, 0.012, 0.030; the 0.012 one is out by 0.002
    r = results([math.inf, 10.0, 3.0, 1.0], [0.60, 0.63, 0.66, 0.70], [0.90, 0.896, 0.888, 0.87])
    rule = GuardedRefit("balanced_accuracy", "accuracy", 0.01)
    assert rule.allowed(r) == [0, 1]
    assert rule(r) == 1
    # a wider drop lets λ = 3 in, not λ = 1
    assert GuardedRefit(drop=0.02)(r) == 2
    # drop 0: only what matches the reference's accuracy (or beats it)
    assert GuardedRefit(drop=0.0)(r) == 0


def test_reference_by_parameters_not_position():
    # the plain setting listed last; its accuracy is the bound
    r = results([3.0, 1.0, math.inf], [0.66, 0.70, 0.60], [0.905, 0.85, 0.90])
    rule = GuardedRefit(drop=0.01, reference={"lam": math.inf})
    assert rule.reference_index(r) == 2
    assert rule.allowed(r) == [2, 0]
    assert rule(r) == 0
    # without it the first candidate (λ = 3, accuracy 0.905) is the reference: λ = ∞ (0.90)
    # is within a point of it, λ = 1 (0.85) is not
    assert GuardedRefit(drop=0.01).allowed(r) == [0, 2]


def test_a_bound_met_within_rounding_is_met():
    # 0.9 - 0.89 is 0.010000000000000009 in floating point: still within one point
    r = results([math.inf, 1.0], [0.5, 0.6], [0.9, 0.89])
    assert GuardedRefit(drop=0.01)(r) == 1


def test_ties_go_to_the_reference_then_the_first_listed():
    r = results([3.0, math.inf, 1.0], [0.70, 0.70, 0.70], [0.9, 0.9, 0.9])
    assert GuardedRefit(reference={"lam": math.inf})(r) == 1
    r = results([math.inf, 3.0, 1.0], [0.60, 0.70, 0.70], [0.9, 0.9, 0.9])
    assert GuardedRefit()(r) == 1


def test_a_near_tie_on_the_score_goes_to_the_reference_a_clear_lead_does_not():
    # the two balanced accuracies differ in the last bits only (a tie), then by 1e-6 (a lead)
    r = results([math.inf, 1.0], [0.1 + 0.2, 0.3], [0.9, 0.9])
    assert r["mean_test_balanced_accuracy"][0] != r["mean_test_balanced_accuracy"][1]
    assert GuardedRefit()(r) == 0
    r = results([math.inf, 1.0], [0.3, 0.300001], [0.9, 0.9])
    assert GuardedRefit()(r) == 1


def test_a_reference_without_a_score_can_bound_but_not_be_chosen():
    # λ = ∞ has an accuracy (the bound) but no balanced accuracy: the best allowed other wins
    r = results([math.inf, 3.0, 1.0], [np.nan, 0.62, 0.70], [0.90, 0.895, 0.85])
    assert GuardedRefit()(r) == 1


def test_candidates_without_scores_are_never_chosen():
    r = results([math.inf, 3.0, 1.0], [0.60, np.nan, 0.65], [0.90, 0.90, np.nan])
    rule = GuardedRefit()
    assert rule.allowed(r) == [0, 1]  # λ = 1 has no accuracy, so the guard cannot allow it
    assert rule(r) == 0  # λ = 3 has no balanced accuracy
    r = results([math.inf, 3.0], [0.60, 0.70], [np.nan, 0.90])
    with pytest.raises(ValueError, match=r"reference candidate .*no mean test 'accuracy'"):
        rule(r)
    r = results([math.inf, 3.0], [np.nan, 0.70], [0.90, 0.80])
    with pytest.raises(ValueError, match="no candidate the guard allows has a mean test"):
        rule(r)


@pytest.mark.parametrize("drop", [1.0, -0.01, math.nan, True, "0.01", None])
def test_bad_drop_is_named(drop):
    with pytest.raises(ValueError, match=r"drop must be a fraction in \[0, 1\)"):
        GuardedRefit(drop=drop)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"score": ""}, "score must be a scoring name"),
        ({"guard": None}, "guard must be a scoring name"),
        ({"reference": {}}, "reference must be a non-empty dict"),
        ({"reference": [("lam", 1.0)]}, "reference must be a non-empty dict"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GuardedRefit(**kwargs)


def test_reference_must_match_one_candidate():
    r = results([math.inf, 1.0], [0.6, 0.7], [0.9, 0.9])
    with pytest.raises(ValueError, match=r"matched no candidate"):
        GuardedRefit(reference={"lam": 2.0})(r)
    with pytest.raises(ValueError, match=r"matched 2 candidates \(\[0, 1\]\)"):
        GuardedRefit(reference={"alpha": 0.1})(r)
    with pytest.raises(ValueError, match="no candidates"):
        GuardedRefit()({"params": []})


def test_reference_matches_numpy_values_arrays_by_value_and_bools_only_bools():
    r = {
        "params": [
            {"w": np.array([1.0, 1.0]), "fit_intercept": True, "lam": np.float32(3.0)},
            {"w": np.array([1.0, 9.0]), "fit_intercept": 1, "lam": math.inf},
        ],
        "mean_test_balanced_accuracy": [0.6, 0.7],
        "mean_test_accuracy": [0.9, 0.9],
    }
    assert GuardedRefit(reference={"w": np.array([1.0, 1.0])}).reference_index(r) == 0
    assert GuardedRefit(reference={"lam": 3.0}).reference_index(r) == 0
    assert GuardedRefit(reference={"fit_intercept": True}).reference_index(r) == 0
    assert GuardedRefit(reference={"fit_intercept": 1}).reference_index(r) == 1


@pytest.mark.parametrize("drop", [np.float32(0.01), np.int64(0), np.float64(0.5)])
def test_numpy_drops_are_taken(drop):
    assert GuardedRefit(drop=drop).drop == pytest.approx(float(drop))


def test_missing_scoring_names_what_the_search_has():
    r = {"params": [{"lam": 1.0}], "mean_test_score": [0.5]}
    expected = r"no scoring named 'balanced_accuracy' \(it has \['score'\]\)"
    with pytest.raises(ValueError, match=expected):
        GuardedRefit()(r)


def test_repr_and_pickle():
    rule = GuardedRefit("balanced_accuracy", "accuracy", 0.02, {"lam": math.inf})
    assert repr(rule) == (
        "GuardedRefit(score='balanced_accuracy', guard='accuracy', drop=0.02, "
        "reference={'lam': inf})"
    )
    again = pickle.loads(pickle.dumps(rule))
    r = results([math.inf, 3.0], [0.6, 0.7], [0.9, 0.885])
    assert again(r) == rule(r) == 1


def three_skewed_classes():
    """600 rows, 3 classes at 85 / 11 / 4 %, overlapping, 2 % of labels flipped."""
    return make_classification(
        n_samples=600,
        n_classes=3,
        n_informative=4,
        weights=[0.85, 0.11, 0.04],
        class_sep=0.7,
        flip_y=0.02,
        random_state=3,
    )


def test_grid_search_refits_the_guarded_choice():
    """In a real search the refit model is the candidate the rule picks from cv_results_,
    recomputed here by hand from the per-fold scores."""
    X, y = three_skewed_classes()
    lams = [math.inf, 3.0, 1.0, 0.3]
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    base = ABSGDClassifier(target_ess=None, random_state=0)
    scoring = {"balanced_accuracy": "balanced_accuracy", "accuracy": "accuracy"}
    search = GridSearchCV(
        base, {"lam": lams}, cv=cv, scoring=scoring, refit=GuardedRefit(drop=0.01)
    )
    search.fit(X, y)

    # the per-fold scores, by hand, and the rule applied to their means
    bal = np.zeros(len(lams))
    acc = np.zeros(len(lams))
    for train, test in cv.split(X, y):
        for k, lam in enumerate(lams):
            model = clone(base).set_params(lam=lam).fit(X[train], y[train])
            pred = model.predict(X[test])
            bal[k] += balanced_accuracy_score(y[test], pred) / 3
            acc[k] += accuracy_score(y[test], pred) / 3
    np.testing.assert_allclose(search.cv_results_["mean_test_balanced_accuracy"], bal)
    np.testing.assert_allclose(search.cv_results_["mean_test_accuracy"], acc)
    ok = [k for k in range(len(lams)) if acc[k] >= acc[0] - 0.01 - 1e-9]
    best = max(ok, key=lambda k: (bal[k], -k))
    assert search.best_index_ == best
    assert search.best_estimator_.get_params()["lam"] == lams[best]
    # on this data the best balanced accuracy (λ = 0.3) gives up more than a point of
    # accuracy: the guard rules it out
    assert bal.argmax() not in ok


def fold_results(lams, balanced, accuracy_folds):
    """cv_results_ with per-fold accuracies (one row per fold) and their means."""
    folds = np.asarray(accuracy_folds, dtype=float)
    r = results(lams, balanced, np.nanmean(folds, axis=0))
    for f, row in enumerate(folds):
        r[f"split{f}_test_accuracy"] = row
    return r


def test_confident_bound_by_hand_with_the_tabled_t_quantile():
    # two folds: λ = 1 drops 0.4 and 0.6 points; mean 0.005, sd 0.001414 (√2·0.001);
    # t(0.95, 1 df) = 6.314 from the table; k-fold ρ = 1/2: factor √(1/2 + 1) = 1.2247
    r = fold_results([math.inf, 1.0], [0.60, 0.70], [[0.900, 0.896], [0.880, 0.874]])
    expected = 0.005 + 6.314 * math.sqrt(2) * 0.001 * math.sqrt(1.5)
    rule = GuardedRefit(drop=0.01, confidence=0.95)
    bounds = rule.upper_bounds(r)
    assert bounds[0] == 0.0
    assert bounds[1] == pytest.approx(expected, abs=2e-5)  # 0.01594: over a point
    assert rule.allowed(r) == [0]
    assert rule(r) == 0
    # the mean guard (0.5 points) lets it in
    assert GuardedRefit(drop=0.01)(r) == 1
    assert GuardedRefit(drop=0.02, confidence=0.95)(r) == 1
    # a stated test fraction of 0.2 narrows the factor to √(1/2 + 1/4)
    narrow = GuardedRefit(drop=0.01, confidence=0.95, test_fraction=0.2).upper_bounds(r)
    assert narrow[1] == pytest.approx(
        0.005 + 6.314 * math.sqrt(2) * 0.001 * math.sqrt(0.75), abs=2e-5
    )


@pytest.mark.parametrize("seed", range(5))
def test_confidence_one_half_is_the_mean_guard(seed):
    # at c = 0.5 the t quantile is 0: the bound is the mean paired drop, the difference of means
    rng = np.random.default_rng(seed)
    # accuracy falling with sharper λ (0 to 6 points), fold noise of 0.3 points
    folds = (
        0.85 - np.array([0, 0.002, 0.006, 0.012, 0.03, 0.06]) + 0.003 * rng.standard_normal((4, 6))
    )
    r = fold_results([math.inf, 30, 10, 3, 1, 0.5], rng.uniform(0.5, 0.7, 6), folds)
    sets = []
    for drop in (0.0, 0.005, 0.01, 0.03, 0.1):
        allowed = GuardedRefit(drop=drop, confidence=0.5).allowed(r)
        assert allowed == GuardedRefit(drop=drop).allowed(r)
        assert GuardedRefit(drop=drop, confidence=0.5)(r) == GuardedRefit(drop=drop)(r)
        sets.append(allowed)
    assert len(sets[0]) < len(sets[-1])  # the drops reach from few to many allowed


def test_choose_last_takes_the_sharpest_allowed_and_not_worse_checks_the_gain():
    # accuracy drops 0.2, 0.4, 0.5 and 3 points; balanced accuracy peaks at λ = 10
    r = results(
        [math.inf, 30.0, 10.0, 3.0, 1.0],
        [0.600, 0.640, 0.660, 0.590, 0.700],
        [0.900, 0.898, 0.896, 0.895, 0.870],
    )
    assert GuardedRefit(drop=0.01)(r) == 2  # the best balanced among the allowed
    assert GuardedRefit(drop=0.01, choose_last=True)(r) == 3  # λ = 3, though below λ = ∞
    assert GuardedRefit(drop=0.01, choose_last=True, not_worse=True)(r) == 2
    # nothing sharper is as good as λ = ∞: it keeps λ = ∞
    r["mean_test_balanced_accuracy"] = np.array([0.60, 0.59, 0.58, 0.57, 0.70])
    assert GuardedRefit(drop=0.01, choose_last=True, not_worse=True)(r) == 0
    # the reference needs a score to compare with
    r["mean_test_balanced_accuracy"] = np.array([np.nan, 0.59, 0.58, 0.57, 0.70])
    with pytest.raises(ValueError, match="not_worse compares with the reference candidate"):
        GuardedRefit(drop=0.01, choose_last=True, not_worse=True)(r)


def test_choose_last_needs_the_reference_first():
    r = results([3.0, 1.0, math.inf], [0.66, 0.70, 0.60], [0.899, 0.898, 0.90])
    rule = GuardedRefit(drop=0.01, reference={"lam": math.inf}, choose_last=True)
    with pytest.raises(ValueError, match=r"the reference is candidate 2 .* plain setting first"):
        rule(r)
    assert GuardedRefit(drop=0.01, reference={"lam": math.inf})(r) == 1  # best needs no order


def test_a_confident_guard_needs_every_fold_of_the_reference():
    r = fold_results([math.inf, 3.0], [0.6, 0.7], [[0.90, 0.899], [np.nan, 0.879], [0.89, 0.888]])
    r["mean_test_accuracy"][0] = 0.895  # as a hand-made result might say
    with pytest.raises(ValueError, match=r"no 'accuracy' on some fold"):
        GuardedRefit(confidence=0.95)(r)


def test_a_confident_guard_leaves_out_a_candidate_with_a_failed_fold():
    r = fold_results(
        [math.inf, 3.0, 1.0], [0.6, 0.65, 0.7], [[0.90, 0.899, 0.898], [0.88, np.nan, 0.879]]
    )
    rule = GuardedRefit(drop=0.01, confidence=0.95, choose_last=True)
    assert math.isnan(rule.upper_bounds(r)[1])
    assert rule.allowed(r) == [0, 2]
    assert rule(r) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.0}, r"confidence must be a level in \[0.5, 1\)"),
        ({"confidence": 0.4}, r"confidence must be a level in \[0.5, 1\)"),
        ({"confidence": "0.95"}, r"confidence must be a level in \[0.5, 1\)"),
        ({"not_worse": True}, "pass choose_last=True as well"),
        ({"choose_last": "yes"}, "choose_last must be True or False, got 'yes'"),
        ({"not_worse": 1, "choose_last": True}, "not_worse must be True or False, got 1"),
        ({"confidence": 0.95, "test_fraction": 1.0}, r"test_fraction must be .* in \(0, 1\)"),
        ({"confidence": 0.95, "test_fraction": True}, r"test_fraction must be .*got True"),
        ({"test_fraction": 0.2}, "test_fraction enters the confident bound only"),
    ],
)
def test_bad_rule_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GuardedRefit(**kwargs)


def test_a_confident_guard_needs_per_fold_scores_and_two_folds():
    rule = GuardedRefit(confidence=0.95)
    with pytest.raises(ValueError, match="no 'split0_test_accuracy'"):
        rule(results([math.inf, 1.0], [0.6, 0.7], [0.9, 0.9]))
    with pytest.raises(ValueError, match=r"at least two folds .* the search has 1"):
        rule(fold_results([math.inf, 1.0], [0.6, 0.7], [[0.9, 0.9]]))
    with pytest.raises(ValueError, match="needs a confidence level"):
        GuardedRefit().upper_bounds(fold_results([math.inf], [0.6], [[0.9], [0.8]]))


def test_repr_names_the_options_set_and_pickles():
    rule = GuardedRefit(drop=0.01, confidence=0.95, choose_last=True, not_worse=True)
    assert repr(rule) == (
        "GuardedRefit(score='balanced_accuracy', guard='accuracy', drop=0.01, reference=None, "
        "confidence=0.95, choose_last=True, not_worse=True)"
    )
    again = pickle.loads(pickle.dumps(rule))
    r = fold_results([math.inf, 3.0], [0.6, 0.7], [[0.9, 0.899], [0.88, 0.879], [0.89, 0.888]])
    assert again(r) == rule(r) == 1
    assert repr(GuardedRefit(confidence=0.9, test_fraction=0.2)).endswith(
        "reference=None, confidence=0.9, test_fraction=0.2)"
    )


def test_grid_search_refits_the_sharpest_lambda_the_confident_guard_admits():
    """A real search with the confident guard and choose_last: the refit model is the last λ
    whose per-fold accuracy drops, recomputed here by hand, bound the drop under a point."""
    X, y = three_skewed_classes()
    lams = [math.inf, 10.0, 3.0, 1.0, 0.3]
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    base = ABSGDClassifier(target_ess=None, random_state=0)
    scoring = {"balanced_accuracy": "balanced_accuracy", "accuracy": "accuracy"}
    rule = GuardedRefit(drop=0.01, confidence=0.95, choose_last=True)
    search = GridSearchCV(base, {"lam": lams}, cv=cv, scoring=scoring, refit=rule)
    search.fit(X, y)

    acc = np.zeros((4, len(lams)))
    for f, (train, test) in enumerate(cv.split(X, y)):
        for k, lam in enumerate(lams):
            model = clone(base).set_params(lam=lam).fit(X[train], y[train])
            acc[f, k] = accuracy_score(y[test], model.predict(X[test]))
    drops = acc[:, :1] - acc
    t_95_3df = 2.353  # Student's t, one-sided 0.95, 3 degrees of freedom (table)
    bound = drops.mean(0) + t_95_3df * drops.std(0, ddof=1) * math.sqrt(1 / 4 + 1 / 3)
    np.testing.assert_allclose(rule.upper_bounds(search.cv_results_), bound, atol=1e-3)
    ok = [0] + [k for k in range(1, len(lams)) if bound[k] <= 0.01]
    assert ok == [0, 1, 2]  # on this data: λ = 10 and 3 within a point at 95 %, λ = 1 not
    assert search.best_index_ == max(ok)
    assert search.best_estimator_.get_params()["lam"] == lams[max(ok)]
