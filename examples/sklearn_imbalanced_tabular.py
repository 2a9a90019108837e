"""ABSGDClassifier against scikit-learn baselines on long-tailed versions of bundled datasets.

Real data, no downloads: scikit-learn's bundled ``load_digits`` (10 classes), ``load_wine``
(3 classes) and ``load_breast_cancer`` (2 classes). For every seed, each dataset is split
stratified into a training pool and a test set (half of every class in the test set: the test
classes stay as balanced as the original data); the training pool is then made long-tailed
with the CIFAR-LT "exp" profile (:func:`absgd.data.imbalance.long_tail_counts`, class 0 the
most frequent, the rarest ``imbalance`` times rarer). Every model sits in a ``Pipeline`` after
a ``StandardScaler`` and is scored on the test set by balanced accuracy (mean per-class
recall) and macro-F1; the table gives mean ± standard deviation over the seeds.

    python examples/sklearn_imbalanced_tabular.py            # 5 seeds, about 2 minutes on 2 CPUs
    python examples/sklearn_imbalanced_tabular.py --seeds 2  # quicker

No hyperparameter is tuned on the test set. ``ABSGD target_ess by CV`` picks the target
effective sample size by 3-fold cross-validated balanced accuracy on the training set only
(``GridSearchCV``); the other rows use fixed defaults, the baselines included (``C=1``).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from absgd.data.imbalance import long_tail_counts, select_long_tailed
from absgd.sklearn import ABSGDClassifier

# name -> (loader, imbalance ratio); the most frequent class is made class 0.
DATASETS: dict[str, tuple[Callable, float]] = {
    "digits-LT (10 cl., ×20)": (load_digits, 20.0),
    "wine-LT (3 cl., ×8)": (load_wine, 8.0),
    "breast-cancer-LT (2 cl., ×15)": (load_breast_cancer, 15.0),
}
TARGETS = [1.0, 0.9, 0.7, 0.5]  # 1.0: no attentional weights


def long_tailed_split(
    X: np.ndarray, y: np.ndarray, imbalance: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Half of every class to the test set; the rest made long-tailed ("exp" profile)."""
    rng = np.random.RandomState(seed)
    order = np.argsort(-np.bincount(y), kind="stable")  # most frequent class first
    y = np.argsort(order)[y]
    train, test = [], []
    for c in range(order.size):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[: len(idx) // 2])
        train.append(idx[len(idx) // 2 :])
    pool = np.concatenate(train)
    counts = long_tail_counts(min(len(t) for t in train), order.size, imbalance, profile="exp")
    keep = pool[select_long_tailed(y[pool], counts, seed=seed)]
    test_idx = np.concatenate(test)
    return X[keep], y[keep], X[test_idx], y[test_idx]


def models(seed: int) -> dict[str, ClassifierMixin]:
    def absgd(**options) -> ClassifierMixin:
        return make_pipeline(StandardScaler(), ABSGDClassifier(random_state=seed, **options))

    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    fixed = {"target_ess": None}  # λ as given (by default λ comes from target_ess=0.9)
    balanced = {"class_weight": "balanced"}
    return {
        "LogisticRegression": make_pipeline(StandardScaler(), LogisticRegression()),
        "LogisticRegression(class_weight='balanced')": make_pipeline(
            StandardScaler(), LogisticRegression(class_weight="balanced")
        ),
        "SGDClassifier(loss='log_loss', class_weight='balanced')": make_pipeline(
            StandardScaler(),
            SGDClassifier(loss="log_loss", class_weight="balanced", random_state=seed),
        ),
        "ABSGD λ=∞ (no attentional weights, same model)": absgd(lam=math.inf),
        "ABSGD defaults (target_ess=0.9)": absgd(),
        "ABSGD λ=1": absgd(lam=1.0, **fixed),
        "ABSGD target_ess by CV": GridSearchCV(
            absgd(), {"absgdclassifier__target_ess": TARGETS}, cv=cv, scoring="balanced_accuracy"
        ),
        "ABSGD λ=∞ + class_weight='balanced'": absgd(lam=math.inf, **balanced),
        "ABSGD defaults + class_weight='balanced'": absgd(**balanced),
        "ABSGD λ=1 + class_weight='balanced', placement='inside'": absgd(
            lam=1.0, placement="inside", **fixed, **balanced
        ),
        "ABSGD defaults, solver='adam' (mini-batch)": absgd(solver="adam"),
        "MLP(64) λ=∞": absgd(hidden_layer_sizes=(64,), lam=math.inf),
        "MLP(64) ABSGD defaults": absgd(hidden_layer_sizes=(64,)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: tiny models)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    start = time.time()
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {}
    sizes = {}
    for data_name, (loader, imbalance) in DATASETS.items():
        X, y = loader(return_X_y=True)
        for seed in range(args.seeds):
            X_tr, y_tr, X_te, y_te = long_tailed_split(X, y, imbalance, seed)
            sizes[data_name] = (np.bincount(y_tr).tolist(), np.bincount(y_te).tolist())
            for name, model in models(seed).items():
                pred = model.fit(X_tr, y_tr).predict(X_te)
                bacc = balanced_accuracy_score(y_te, pred)
                f1 = f1_score(y_te, pred, average="macro")
                scores.setdefault(name, {}).setdefault(data_name, []).append((bacc, f1))

    print(f"{args.seeds} seeds (0 to {args.seeds - 1}); test-set scores in %, mean ± std\n")
    for data_name, (train_counts, test_counts) in sizes.items():
        print(f"- {data_name}: train per class {train_counts}, test per class {test_counts}")
    for k, metric in enumerate(("balanced accuracy", "macro-F1")):
        print(f"\n{metric}:\n")
        print("| model | " + " | ".join(DATASETS) + " | mean |")
        print("|---" * (len(DATASETS) + 2) + "|")
        for name, per_data in scores.items():
            values = [100 * np.array(per_data[d])[:, k] for d in DATASETS]
            cells = [f"{v.mean():.1f} ± {v.std():.1f}" for v in values]
            overall = np.mean([v.mean() for v in values])
            print(f"| {name} | " + " | ".join(cells) + f" | {overall:.1f} |")
    print(f"\n({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
