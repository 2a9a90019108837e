"""absgd.metrics pure functions against hand-computed values and scikit-learn."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from absgd.metrics import (
    balanced_accuracy,
    confusion_matrix,
    evaluate,
    macro_f1,
    per_class_accuracy,
    prior_accuracy,
    prior_effective_size,
    shot_accuracy,
    to_jsonable,
    top_k_accuracy,
)


@pytest.fixture
def sk():
    """scikit-learn's metrics, the reference of the ``*_matches_sklearn`` tests (only those
    skip without it)."""
    return pytest.importorskip("sklearn.metrics")


# Hand-worked example: 3 classes, 8 samples.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 1, 0, 1, 2, 2, 0, 2]
# rows true, columns predicted
CM = [[2, 1, 0], [0, 1, 1], [1, 0, 2]]


def _random(seed: int, n: int, c: int, classes_true: int | None = None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes_true or c, n)
    p = np.where(rng.random(n) < 0.5, y, rng.integers(0, c, n))
    return y, p


# -- confusion matrix -----------------------------------------------------------------------


def test_confusion_matrix_by_hand() -> None:
    got = confusion_matrix(Y_TRUE, Y_PRED, 3)
    np.testing.assert_array_equal(got, CM)
    assert got.dtype == np.int64
    # an extra class with no samples is an all-zero row and column
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, 4)[:3, :3], CM)
    assert confusion_matrix(Y_TRUE, Y_PRED, 4)[3].sum() == 0


@pytest.mark.parametrize("seed", range(5))
def test_confusion_matrix_matches_sklearn(seed: int, sk) -> None:
    y, p = _random(seed, 200, 7)
    expected = sk.confusion_matrix(y, p, labels=list(range(7)))
    np.testing.assert_array_equal(confusion_matrix(y, p, 7), expected)
    np.testing.assert_array_equal(confusion_matrix(torch.tensor(y), torch.tensor(p), 7), expected)


def test_label_errors_name_the_values() -> None:
    with pytest.raises(ValueError, match=r"y_true must be integers in \[0, 3\).*\[-1, 3\]"):
        confusion_matrix([0, 3, -1], [0, 0, 0], 3)
    with pytest.raises(ValueError, match=r"y_pred must be integers in \[0, 3\)"):
        confusion_matrix([0, 1], [0, 5], 3)
    with pytest.raises(ValueError, match="differ in length: 2 != 3"):
        confusion_matrix([0, 1], [0, 1, 1], 3)
    with pytest.raises(ValueError, match="integer class indices"):
        confusion_matrix([0.5, 1.0], [0, 1], 3)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        confusion_matrix([], [], 0)
    with pytest.raises(ValueError, match="1-D"):
        confusion_matrix([[0, 1]], [[0, 1]], 2)


# -- top-k ----------------------------------------------------------------------------------


def test_top_k_by_hand_with_ties() -> None:
    logits = np.array(
        [
            [0.1, 0.5, 0.4, 0.0],  # ranking 1, 2, 0, 3
            [0.3, 0.3, 0.3, 0.3],  # all tied: ranking 0, 1, 2, 3 (lower index first)
            [0.0, 1.0, 1.0, 0.5],  # ranking 1, 2, 3, 0
        ]
    )
    y = [2, 2, 3]
    assert top_k_accuracy(logits, y, k=1) == 0.0
    assert top_k_accuracy(logits, y, k=2) == pytest.approx(1 / 3)
    assert top_k_accuracy(logits, y, k=3) == 1.0
    assert top_k_accuracy(logits, [1, 0, 1], k=1) == 1.0
    # top-1 is exactly the accuracy of argmax predictions, ties included
    assert top_k_accuracy(logits, [2, 0, 2], 1) == np.mean(logits.argmax(1) == [2, 0, 2])


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_top_k_matches_sklearn_and_a_sorting_reference(k: int, sk) -> None:
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(300, 10)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    got = top_k_accuracy(torch.from_numpy(logits), torch.from_numpy(y), k)
    assert got == pytest.approx(sk.top_k_accuracy_score(y, logits, k=k, labels=range(10)))
    # with many ties: a stable sort on -score keeps the lower index first among equals
    coarse = np.round(logits)
    order = np.argsort(-coarse, axis=1, kind="stable")[:, :k]
    expected = np.mean([y[i] in order[i] for i in range(len(y))])
    assert top_k_accuracy(coarse, y, k) == pytest.approx(expected)


def test_top_k_in_chunks_gives_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from absgd.metrics import classification

    rng = np.random.default_rng(0)
    logits = np.round(rng.normal(size=(101, 7)), 1)
    y = rng.integers(0, 7, 101)
    whole = [top_k_accuracy(logits, y, k) for k in (1, 3)]
    monkeypatch.setattr(classification, "_TOPK_CHUNK", 20)  # 2 rows at a time
    assert [top_k_accuracy(logits, y, k) for k in (1, 3)] == whole


def test_top_k_errors() -> None:
    logits = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\].*got 5"):
        top_k_accuracy(logits, [0, 1], k=5)
    with pytest.raises(ValueError, match="got 0"):
        top_k_accuracy(logits, [0, 1], k=0)
    with pytest.raises(ValueError, match="2-D"):
        top_k_accuracy(np.zeros(4), [0], k=1)
    with pytest.raises(ValueError, match="differ in length"):
        top_k_accuracy(logits, [0], k=1)
    with pytest.raises(ValueError, match="NaN in 1 of 2 rows"):
        top_k_accuracy(np.array([[0.0, np.nan], [1.0, 0.0]]), [0, 1])
    with pytest.raises(ValueError, match="at least one sample"):
        top_k_accuracy(np.zeros((0, 3)), [], k=1)
    # half-precision tensors are accepted
    half = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.bfloat16)
    assert top_k_accuracy(half, torch.tensor([0, 0])) == 0.5


# -- per-class, balanced, macro-F1 ----------------------------------------------------------


def test_per_class_and_balanced_by_hand() -> None:
    recall = per_class_accuracy(Y_TRUE, Y_PRED, 3)
    np.testing.assert_allclose(recall, [2 / 3, 1 / 2, 2 / 3])
    assert balanced_accuracy(Y_TRUE, Y_PRED, 3) == pytest.approx(np.mean([2 / 3, 1 / 2, 2 / 3]))
    # a class absent from y_true: NaN, left out of the mean
    recall4 = per_class_accuracy(Y_TRUE, Y_PRED, 4)
    assert math.isnan(recall4[3])
    assert balanced_accuracy(Y_TRUE, Y_PRED, 4) == balanced_accuracy(Y_TRUE, Y_PRED, 3)
    with pytest.raises(ValueError, match="at least one sample"):
        balanced_accuracy([], [], 3)


@pytest.mark.parametrize("seed", range(6))
def test_balanced_accuracy_matches_sklearn(seed: int, sk) -> None:
    # seeds >= 3: only 4 of 6 classes occur in y_true, but predictions use all 6
    y, p = _random(seed, 150, 6, classes_true=6 if seed < 3 else 4)
    with warnings.catch_warnings():  # sklearn warns about the classes absent from y_true
        warnings.simplefilter("ignore")
        expected = sk.balanced_accuracy_score(y, p)
    assert balanced_accuracy(y, p, 6) == pytest.approx(expected)
    assert balanced_accuracy(y, p, 6) == pytest.approx(np.nanmean(per_class_accuracy(y, p, 6)))


def test_macro_f1_by_hand() -> None:
    # class 0: tp 2, fp 1, fn 1 -> 2·2/(3+3) = 2/3; class 1: tp 1, fp 1, fn 1 -> 1/2;
    # class 2: tp 2, fp 1, fn 1 -> 2/3
    assert macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    # a class predicted but never true, never correct: F1 = 0 (0/0 precision -> 0)
    assert macro_f1([0, 0], [0, 1], 3) == pytest.approx((2 / 3 + 0) / 2)
    # a class never occurring at all is left out
    assert macro_f1([0, 1], [0, 1], 5) == 1.0


@pytest.mark.parametrize("seed", range(8))
def test_macro_f1_matches_sklearn(seed: int, sk) -> None:
    y, p = _random(seed, 60, 8, classes_true=8 if seed % 2 else 5)
    expected = sk.f1_score(y, p, average="macro", zero_division=0)
    assert macro_f1(y, p, 8) == pytest.approx(expected)


# -- many / medium / few --------------------------------------------------------------------


def test_shot_buckets_at_the_boundaries() -> None:
    counts = [101, 100, 21, 20, 19, 0, 5000]
    acc = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    out = shot_accuracy(acc, counts)
    # many: > 100 -> 101, 5000; medium: 20..100 -> 100, 21, 20; few: < 20 -> 19, 0
    assert out["many"] == pytest.approx((0.1 + 0.7) / 2)
    assert out["medium"] == pytest.approx((0.2 + 0.3 + 0.4) / 3)
    assert out["few"] == pytest.approx((0.5 + 0.6) / 2)
    assert out["shot_num_classes"] == {"many": 2, "medium": 3, "few": 2}
    assert out["shot_thresholds"] == {"many": 100, "few": 20}


def test_shot_thresholds_are_configurable_and_empty_buckets_are_none() -> None:
    out = shot_accuracy(np.array([0.5, 0.25, np.nan]), [60, 10, 3], many=50, few=5)
    assert out["many"] == 0.5 and out["medium"] == 0.25
    assert out["few"] is None  # its only class is absent from the evaluation set (NaN)
    assert out["shot_num_classes"]["few"] == 1
    assert out["shot_thresholds"] == {"many": 50, "few": 5}
    # CIFAR-10-LT, ratio 100: 8 many-shot classes, 2 medium, no few-shot one
    lt = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    out = shot_accuracy(np.linspace(1, 0.1, 10), lt)
    assert out["shot_num_classes"] == {"many": 8, "medium": 2, "few": 0}
    assert out["few"] is None and out["medium"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="few must not exceed many"):
        shot_accuracy([0.5], [3], many=10, few=20)
    with pytest.raises(ValueError, match="one entry per class"):
        shot_accuracy([0.5, 0.5], [3])
    with pytest.raises(ValueError, match="non-negative integers"):
        shot_accuracy([0.5], [-3])


# -- evaluate -------------------------------------------------------------------------------


def test_evaluate_everything_at_once() -> None:
    rng = np.random.default_rng(0)
    c = 8
    logits = rng.normal(size=(120, c))
    y = rng.integers(0, c, 120)
    counts = [500, 300, 101, 100, 50, 20, 19, 2]
    out = evaluate(torch.from_numpy(logits), torch.from_numpy(y), counts)
    json.dumps(out, allow_nan=False)  # strict JSON
    pred = logits.argmax(1)
    assert out["num_samples"] == 120 and out["num_classes"] == c
    assert out["top1"] == pytest.approx(np.mean(pred == y))
    assert out["top1"] == top_k_accuracy(logits, y, 1)
    assert out["top5"] == top_k_accuracy(logits, y, 5)
    assert out["balanced_accuracy"] == balanced_accuracy(y, pred, c)
    assert out["macro_f1"] == macro_f1(y, pred, c)
    assert out["per_class_accuracy"] == pytest.approx(per_class_accuracy(y, pred, c).tolist())
    assert out["confusion_matrix"] == confusion_matrix(y, pred, c).tolist()
    shots = shot_accuracy(per_class_accuracy(y, pred, c), counts)
    for key in ("many", "medium", "few", "shot_thresholds", "shot_num_classes"):
        assert out[key] == shots[key]
    assert out["class_counts"] == np.bincount(y, minlength=c).tolist()
    prior = np.asarray(counts) / sum(counts)
    present = np.bincount(y, minlength=c) > 0
    expected = 1 / np.sum(prior[present] ** 2 / np.bincount(y, minlength=c)[present])
    expected *= prior[present].sum() ** 2  # the prior renormalised over the classes in y
    assert out["top1_train_prior_images"] == pytest.approx(expected)
    assert list(out) == [
        "num_samples",
        "num_classes",
        "class_counts",
        "top1",
        "top5",
        "balanced_accuracy",
        "macro_f1",
        "many",
        "medium",
        "few",
        "shot_thresholds",
        "shot_num_classes",
        "top1_train_prior",
        "top1_train_prior_images",
        "per_class_accuracy",
        "confusion_matrix",
    ]


def test_top1_at_the_training_prior_is_top1_on_data_skewed_like_training() -> None:
    # An evaluation set whose classes occur exactly in the training proportions: accuracy at
    # the training prior must equal its plain top-1 (an equivalence, not the formula again).
    rng = np.random.default_rng(1)
    counts = [600, 300, 90, 10]
    y = np.repeat(np.arange(4), [c // 5 for c in counts])
    logits = rng.normal(size=(len(y), 4)) + 1.5 * np.eye(4)[y]
    out = evaluate(logits, y, counts)
    assert out["top1_train_prior"] == pytest.approx(out["top1"], abs=1e-12)
    # and on a balanced set it is not top-1 but the counts-weighted per-class accuracy
    yb = np.repeat(np.arange(4), 25)
    pred = np.array([0] * 25 + [0] * 10 + [1] * 15 + [2] * 5 + [0] * 20 + [3] * 25)
    out = evaluate(pred, yb, counts)
    assert out["top1_train_prior"] == pytest.approx((600 * 1 + 300 * 0.6 + 90 * 0.2 + 10) / 1000)
    assert evaluate(pred, yb, num_classes=4)["top1_train_prior"] is None


@pytest.mark.parametrize(
    ("acc", "prior", "match"),
    [
        ([0.5, 0.5], [1, 2, 3], "one entry per class"),
        ([0.5, 0.5], [1, -1], "finite and >= 0"),
        ([0.5, 0.5], [1, float("inf")], "finite and >= 0"),
        ([0.5, float("nan")], [0, 3], "no mass"),
        ([], [], "non-empty"),
        ([1.5, 0.5], [1, 1], r"in \[0, 1\]"),
        ([-0.1, 0.5], [1, 1], r"in \[0, 1\]"),
        ([0.5, 0.5], [True, False], "prior must be real numbers"),
        ([0.5, 0.5], [1 + 1j, 1], "prior must be real numbers"),
        (["a", "b"], [1, 1], "per_class_acc must be real numbers"),
        ([[0.5, 0.5]], [[1, 1]], "1-D"),
    ],
)
def test_prior_accuracy_rejects_bad_input(acc, prior, match) -> None:
    with pytest.raises(ValueError, match=match):
        prior_accuracy(acc, prior)


def test_prior_effective_size_is_the_variance_of_prior_accuracy_by_simulation() -> None:
    """Draw per-image correctness (the same accuracy in every class) many times: the variance
    of prior_accuracy over the draws is that of a plain mean over n_eff images."""
    rng = np.random.default_rng(0)
    prior = np.array([4950, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])  # CIFAR-10-LT, 100
    for counts in (np.full(10, 50), np.array([500, 299, 179, 107, 64, 38, 23, 13, 8, 5])):
        n_eff = prior_effective_size(prior, counts)
        acc = rng.binomial(counts, 0.8, size=(20000, 10)) / counts
        scores = acc @ (prior / prior.sum())
        assert scores.var() == pytest.approx(0.8 * 0.2 / n_eff, rel=0.04)
    # the numbers of the docs: a 500-image balanced split is worth 198 images at the prior,
    # the 1,236-image stratified one (its n_c within rounding of the prior) 1,236
    assert prior_effective_size(prior, np.full(10, 50)) == pytest.approx(198.18, abs=0.01)
    assert prior_effective_size(prior, [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]) == (
        pytest.approx(1236, abs=1)
    )


def test_prior_effective_size_by_hand_and_absent_classes() -> None:
    # π = (0.5, 0.5), n = (10, 40): 1 / (0.25/10 + 0.25/40) = 32
    assert prior_effective_size([1, 1], [10, 40]) == pytest.approx(32.0)
    # a class without evaluation images is left out and the prior renormalised over the rest
    assert prior_effective_size([1, 1, 5], [10, 40, 0]) == pytest.approx(32.0)


@pytest.mark.parametrize(
    ("prior", "counts", "match"),
    [
        ([1, 2], [10, 10, 10], "one entry per class"),
        ([], [], "one entry per class"),
        ([1, -1], [10, 10], "prior must be finite"),
        ([1, 1], [10, -1], "eval_counts must be non-negative integers"),
        ([1, 1], [10, float("nan")], "eval_counts must be non-negative integers"),
        ([1, 1], [0.1, 0.1], "eval_counts must be non-negative integers"),
        ([1, 1], [0, 0], "no evaluation sample"),
        ([0, 1], [10, 0], "no mass"),
        ([1, 1], [True, True], "eval_counts must be real numbers"),
    ],
)
def test_prior_effective_size_rejects_bad_input(prior, counts, match) -> None:
    with pytest.raises(ValueError, match=match):
        prior_effective_size(prior, counts)


def test_evaluate_with_predictions_absent_classes_and_no_counts() -> None:
    out = evaluate(np.array(Y_PRED), Y_TRUE, num_classes=4, with_confusion_matrix=False)
    json.dumps(out, allow_nan=False)
    assert out["top5"] is None and "confusion_matrix" not in out
    assert out["per_class_accuracy"][3] is None  # absent class: null, not NaN
    assert out["many"] is out["medium"] is out["few"] is None
    assert out["top1"] == pytest.approx(5 / 8)
    # num_classes can come from the training counts
    assert evaluate(Y_PRED, Y_TRUE, [200, 50, 5])["few"] == pytest.approx(2 / 3)
    # C <= 5: no top-5
    assert evaluate(np.eye(3), [0, 1, 2])["top5"] is None


def test_evaluate_errors() -> None:
    with pytest.raises(ValueError, match="give num_classes"):
        evaluate([0, 1], [0, 1])
    with pytest.raises(ValueError, match="num_classes = 4 but the logits have 3 columns"):
        evaluate(np.zeros((2, 3)), [0, 1], num_classes=4)
    with pytest.raises(ValueError, match="at least one sample"):
        evaluate(np.zeros((0, 3)), [])
    with pytest.raises(ValueError, match=r"shape \(2, 3, 1\)"):
        evaluate(np.zeros((2, 3, 1)), [0, 1])
    with pytest.raises(ValueError, match="one entry per class"):
        evaluate(np.zeros((2, 3)), [0, 1], [10, 10])
    with pytest.raises(ValueError, match=r"predicted labels must be integers in \[0, 3\)"):
        evaluate([0, 5], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="differ in length"):
        evaluate([0, 1, 2], [0, 1], num_classes=3)


def test_to_jsonable() -> None:
    value = {"a": torch.tensor([1.5, float("nan")]), 2: np.float32(0.5), "t": (np.bool_(True),)}
    assert to_jsonable(value) == {"a": [1.5, None], "2": 0.5, "t": [True]}
    json.dumps(to_jsonable(value), allow_nan=False)
