"""`absgd tune` and its engine (absgd.training.tune): selection on validation only, resumable."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from absgd.cli import SHIPPED_CONFIGS, TUNE_SCORES, main
from absgd.training.config import ConfigError, load_config
from absgd.training.tune import (
    SCORES,
    TrialLog,
    TuneResult,
    format_tune_table,
    select_value,
    tune,
    val_score,
    value_text,
    within,
)

CONFIG = SHIPPED_CONFIGS / "cpu/fashion_mnist_lt_exp100_ce.yaml"
TINY = [
    "data.name=synthetic",
    "data.root=null",
    "data.options={num_classes: 3, train_per_class: 30, test_per_class: 5, shape: [6, 6, 1]}",
    "data.imbalance_ratio=4",
    "data.val_source=split",
    "data.val_per_class=3",
    "model.options={widths: [4], hidden: 8}",
    "train.epochs=2",
    "optim.milestones=[1]",
    "objective.weighting=absgd",
    "objective.lam_switch=1",
]


def test_select_value_takes_the_best_mean_and_refuses_incomplete_candidates():
    best, means = select_value({1.0: [0.5, 0.75], 2.0: [0.9, None], 3.0: [0.625, 0.625]})
    assert best == 1.0  # 0.625 ties with 3.0's 0.625: the first listed wins
    assert means == {1.0: 0.625, 2.0: None, 3.0: 0.625}
    assert select_value({1.0: [None]}) == (None, {1.0: None})


def test_select_value_treats_scores_equal_but_for_rounding_as_a_tie():
    # 402 of 500 validation images as a mean of ten per-class accuracies, summed in two
    # orders: the same accuracy, different last bits. The first listed must win.
    a = sum([0.8, 0.82, 0.78, 0.8, 0.84, 0.76, 0.8, 0.82, 0.78, 0.84]) / 10
    b = sum([0.82, 0.78, 0.82, 0.76, 0.8, 0.84, 0.78, 0.8, 0.84, 0.8]) / 10
    assert a != b and abs(a - b) < 1e-12
    low, high = sorted((a, b))
    assert select_value({3.0: [low], 10.0: [high], 20.0: [high]})[0] == 3.0
    assert select_value({3.0: [0.8039999999999999], 10.0: [0.804]})[0] == 3.0
    assert select_value({3.0: [0.803], 10.0: [0.804]})[0] == 10.0  # a real difference


def test_a_guard_allows_the_candidates_within_the_drop_of_the_first_listed():
    top1 = {
        float("inf"): [0.74, 0.76],
        300.0: [0.745, 0.745],
        100.0: [0.72, 0.73],
        30.0: [0.8, None],
    }
    # reference (∞) mean 0.75: 300 is 0.005 below, 100 0.025 below, 30 has no mean
    assert within(top1, 0.01) == [float("inf"), 300.0]
    assert within(top1, 0.025) == [float("inf"), 300.0, 100.0]  # the bound itself is allowed
    assert within(top1, 0.0) == [float("inf")]  # the reference always, when it has a score
    assert within({1.0: [0.9], 2.0: [0.7]}, 0.0) == [1.0]
    assert within({1.0: [None], 2.0: [0.9]}, 0.5) == []  # no reference score: no bound known
    for bad in (-0.01, 1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match=r"fraction in \[0, 1\)"):
            within(top1, bad)
    assert str(within(top1, -0.0)) == str(within(top1, 0.0))  # -0 is 0
    nan_first = {1.0: [float("nan")], 2.0: [0.5]}  # a NaN score is no score
    assert within(nan_first, 0.1) == [] and select_value(nan_first) == (2.0, {1.0: None, 2.0: 0.5})
    # select_value among the allowed: the best of those, every mean still returned
    balanced = {float("inf"): [0.40], 300.0: [0.42], 100.0: [0.45], 30.0: [0.5]}
    best, means = select_value(balanced, among=within(top1, 0.01))
    assert best == 300.0 and means[100.0] == 0.45
    assert select_value(balanced, among=[]) == (None, means)


def test_tune_selects_on_validation_and_resumes(tmp_path: Path):
    out = tmp_path / "search"
    result = tune(CONFIG, "objective.target_ess", [0.9, 0.5], out, overrides=TINY, seeds=[0, 1])
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    # independent of the engine: the mean validation score read from each run's final.json
    means = {}
    for value in (0.9, 0.5):
        scores = []
        for seed in (0, 1):
            final = json.loads((out / f"target_ess={value!r}-s{seed}" / "final.json").read_text())
            scores.append(final["val_at_selected_epoch"]["balanced_accuracy"])
        means[value] = sum(scores) / 2
    assert result.means == pytest.approx(means)
    assert result.best == max(means, key=lambda v: (means[v], v == 0.9))
    selected = load_config(out / "selected.yaml")
    assert selected.objective.target_ess == result.best
    assert selected.train.seed == 0
    assert rows[0]["curve"] and rows[0]["curve"][-1]["epoch"] == 2
    # a second call trains nothing: every trial is in the file
    stamp = (out / "trials.jsonl").stat().st_mtime_ns
    again = tune(CONFIG, "objective.target_ess", [0.9, 0.5], out, overrides=TINY, seeds=[0, 1])
    assert again.means == result.means
    assert (out / "trials.jsonl").stat().st_mtime_ns == stamp
    # the same folder with another config is refused, not silently mixed
    with pytest.raises(ValueError, match="another config"):
        tune(CONFIG, "objective.target_ess", [0.9], out, overrides=[*TINY, "optim.lr=0.2"])


def test_validation_top1_at_the_training_prior_weighs_classes_by_training_counts():
    # hand case: a balanced validation split, 3 classes trained on 600 / 300 / 100 images
    record = {
        "val": {"top1": 0.5, "balanced_accuracy": 0.5, "per_class_accuracy": [0.8, 0.5, 0.2]},
        "metrics": {"train_class_counts": [600, 300, 100]},
    }
    assert val_score(record, "top1_train_prior") == pytest.approx(0.65)  # .48 + .15 + .02
    assert val_score(record, "top1") == 0.5
    # a class absent from validation is left out, the others reweighted: (480 + 20) / 700
    absent = {**record, "val": {"per_class_accuracy": [0.8, None, 0.2]}}
    assert val_score(absent, "top1_train_prior") == pytest.approx(500 / 700)
    assert val_score({"val": None, "metrics": None}, "top1_train_prior") is None
    # no class with training images has a validation accuracy: no score, not an error
    unknown = {
        "val": {"per_class_accuracy": [None, 0.5]},
        "metrics": {"train_class_counts": [5, 0]},
    }
    assert val_score(unknown, "top1_train_prior") is None
    other = {"val": {"per_class_accuracy": [0.5]}, "metrics": {"train_class_counts": [5, 1]}}
    with pytest.raises(ValueError, match="against 1 per-class accuracies"):
        val_score(other, "top1_train_prior")
    with pytest.raises(ValueError, match="metric must be one of"):
        val_score(record, "loss")


def test_cli_tune_offers_every_score_the_engine_has():
    assert TUNE_SCORES == SCORES


def test_tune_selects_on_validation_top1_at_the_training_prior(tmp_path: Path):
    out = tmp_path / "search"
    result = tune(
        CONFIG, "objective.target_ess", [0.9, 0.5], out, overrides=TINY,
        metric="top1_train_prior",
    )  # fmt: skip
    means = {}
    for value in (0.9, 0.5):
        final = json.loads((out / f"target_ess={value!r}-s0" / "final.json").read_text())
        acc = final["val_at_selected_epoch"]["per_class_accuracy"]
        counts = final["train_class_counts"]
        means[value] = sum(n * a for n, a in zip(counts, acc, strict=True)) / sum(counts)
        # a run's own validation record carries the same number
        assert final["val_at_selected_epoch"]["top1_train_prior"] == pytest.approx(means[value])
    assert result.means == pytest.approx(means)
    assert result.best == max(means, key=lambda v: (means[v], v == 0.9))
    assert json.loads((out / "selection.json").read_text())["metric"] == "val top1_train_prior"


def test_the_curve_carries_test_accuracy_only_on_the_epochs_that_evaluated_it(tmp_path: Path):
    from absgd.training.tune import _curve, _history

    lines = [
        {"epoch": 1, "lam": "inf", "train_loss": 2.0,
         "val": {"top1": 0.5, "balanced_accuracy": 0.4, "per_class_accuracy": [0.2, 0.6]}},
        {"epoch": 2, "lam": -3.0, "effective_sample_size": 0.8, "train_loss": 1.5,
         "val": {"top1": 0.6, "balanced_accuracy": 0.55, "per_class_accuracy": [0.7, 0.4]},
         "test": {"top1": 0.75, "balanced_accuracy": 0.7}},
    ]  # fmt: skip
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    first, second = _curve(_history(path))
    assert first["test_top1"] is None and first["test_balanced_accuracy"] is None
    assert first["val_worst_class"] == 0.2 and first["ess"] is None
    assert second == {
        "epoch": 2, "lam": -3.0, "ess": 0.8, "train_loss": 1.5, "val_balanced_accuracy": 0.55,
        "val_top1": 0.6, "val_worst_class": 0.4, "test_top1": 0.75,
        "test_balanced_accuracy": 0.7,
    }  # fmt: skip


def test_an_interrupted_trial_resumes_from_its_checkpoint(tmp_path: Path):
    from absgd.training import RunInterrupted, train

    out = tmp_path / "search"
    cfg = load_config(CONFIG, [*TINY, "objective.target_ess=0.7", "train.seed=0"])
    with pytest.raises(RunInterrupted):
        train(cfg, out / "target_ess=0.7-s0", stop_after_steps=2)
    result = tune(CONFIG, "objective.target_ess", [0.7], out, overrides=TINY)
    assert result.best == 0.7
    history = (out / "target_ess=0.7-s0" / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 2  # the resumed run finished both epochs, none twice


def test_trial_lines_are_strict_json_with_infinity_spelt_out(tmp_path: Path):
    log = TrialLog(tmp_path / "t.jsonl", ("value",))
    log.append({"kind": "run", "value": 1.0, "config": {"lam": float("inf"), "m": (160, 180)}})
    text = (tmp_path / "t.jsonl").read_text()
    assert '"lam": "inf"' in text and '"m": [160, 180]' in text
    assert log.rows("run")[0]["config"]["lam"] == "inf"


def _append_many(path: str, writer: int) -> None:
    log = TrialLog(Path(path), ("writer", "i"))
    for i in range(40):
        log.append({"kind": "run", "writer": writer, "i": i, "pad": str(writer) * 100_000})
        if i % 10 == 9:
            log.rows()  # reading while the others write sees whole lines only


def test_processes_appending_to_one_trial_log_keep_every_line_whole(tmp_path: Path):
    path = tmp_path / "t.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    rows = TrialLog(path, ("writer", "i")).rows("run")
    expected = [(w, i) for w in range(4) for i in range(40)]
    assert sorted((r["writer"], r["i"]) for r in rows) == expected
    assert all(r["pad"] == str(r["writer"]) * 100_000 for r in rows)


def test_trial_log_names_a_line_cut_short(tmp_path: Path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"kind": "run", "value": 1}\n{"kind": "ru')
    with pytest.raises(ValueError, match="line 2, is not JSON"):
        TrialLog(path, ("value",)).rows()


def test_tune_refuses_what_it_cannot_select_on(tmp_path: Path):
    with pytest.raises(ValueError, match=r"data\.val_source=none"):
        tune(
            CONFIG,
            "objective.target_ess",
            [0.5],
            tmp_path,
            overrides=[*TINY, "data.val_source=none", "train.select=last"],
        )
    with pytest.raises(ValueError, match="metric must be one of"):
        tune(CONFIG, "objective.target_ess", [0.5], tmp_path, overrides=TINY, metric="loss")
    with pytest.raises(ConfigError, match=r"objective\.target_ess=1\.5"):
        tune(CONFIG, "objective.target_ess", [1.5], tmp_path, overrides=TINY)


def test_cli_tune_prints_the_table_and_the_selected_config(tmp_path: Path, capsys):
    args = ["tune", "--config", str(CONFIG), "--values", "0.8", "--out", str(tmp_path / "s")]
    for item in TINY:
        args += ["--set", item]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "objective.target_ess" in text and "<- chosen" in text
    assert (tmp_path / "s" / "selected.yaml").is_file()
    bad = ["tune", "--config", str(CONFIG), "--values", "2", "--out", str(tmp_path / "b")]
    assert main(bad) == 2


# Scripted validation scores per λ and seed (top-1, balanced): the guard's arithmetic checked
# by hand, without training. Means: ∞ .81 / .41; 3 .805 / .45 (0.005 below ∞); 1 .785 / .51.
SCRIPTED = {
    float("inf"): [(0.80, 0.40), (0.82, 0.42)],
    3.0: [(0.805, 0.45), (0.805, 0.45)],
    1.0: [(0.78, 0.50), (0.79, 0.52)],
}


def _scripted_trials(monkeypatch, scripted=SCRIPTED):
    import absgd.training.tune as engine

    def fake(cfg, run_dir, *, reporter=None):
        scores = scripted[cfg.objective.lam][cfg.train.seed]
        if scores is None:
            return {"metrics": None, "val": None, "diverged": "training diverged"}
        top1, balanced = scores
        return {
            "metrics": {"selected_epoch": 2, "train_class_counts": None},
            "val": {"top1": top1, "balanced_accuracy": balanced},
        }

    monkeypatch.setattr(engine, "run_trial", fake)


def test_tune_with_a_guard_takes_the_best_score_among_the_values_it_allows(tmp_path, monkeypatch):
    _scripted_trials(monkeypatch)
    values, out = [float("inf"), 3.0, 1.0], tmp_path / "search"
    kw = {"overrides": TINY, "seeds": [0, 1], "metric": "balanced_accuracy"}
    assert tune(CONFIG, "objective.lam", values, out, **kw).best == 1.0  # unguarded
    for drop, allowed, best in (
        (0.01, (float("inf"), 3.0), 3.0),  # 1 is 2.5 points below ∞: ruled out
        (0.025, (float("inf"), 3.0, 1.0), 1.0),  # the bound itself is allowed
        (0.0, (float("inf"),), float("inf")),  # 3 is half a point below
    ):
        result = tune(CONFIG, "objective.lam", values, out, **kw, guard="top1", guard_drop=drop)
        assert (result.allowed, result.best) == (allowed, best), drop
        assert result.guard_means == pytest.approx({float("inf"): 0.81, 3.0: 0.805, 1.0: 0.785})
        saved = json.loads((out / "selection.json").read_text())["guard"]
        assert saved["allowed"] == [value_text(v) for v in allowed]
        assert (saved["reference"], saved["drop"], saved["metric"]) == (".inf", drop, "val top1")
        assert load_config(out / "selected.yaml").objective.lam == best
    table = format_tune_table(
        tune(CONFIG, "objective.lam", values, out, **kw, guard="top1", guard_drop=0.01)
    )
    line = next(r for r in table.splitlines() if r.strip().startswith("1.0"))
    assert "78.50" in line and "ruled out: more than 1 points of val top1 below the first" in line
    assert "<- chosen" in next(r for r in table.splitlines() if r.strip().startswith("3.0"))
    # the last listed value the guard allows, though validation top-1 prefers ∞ every time
    top1 = {**kw, "metric": "top1"}
    for drop, best in ((0.01, 3.0), (0.025, 1.0), (0.0, float("inf"))):
        result = tune(
            CONFIG, "objective.lam", values, out, **top1, guard="top1", guard_drop=drop,
            choose_last=True,
        )  # fmt: skip
        assert result.best == best, drop
        assert json.loads((out / "selection.json").read_text())["rule"] == (
            "the last value the guard allows"
        )
    for bad, match in (
        ({"choose_last": True}, "give a guard"),
        ({"guard": "top1"}, "both its metric and its drop"),
        ({"guard_drop": 0.01}, "both its metric and its drop"),
        ({"guard": "loss", "guard_drop": 0.01}, "guard must be one of"),
        ({"guard": "top1", "guard_drop": -0.01}, r"fraction in \[0, 1\).*got -0\.01"),
        ({"guard": "top1", "guard_drop": 1.0}, r"fraction in \[0, 1\).*got 1\.0"),
        ({"guard": "top1", "guard_drop": float("nan")}, r"fraction in \[0, 1\).*got nan"),
    ):
        with pytest.raises(ValueError, match=match):
            tune(CONFIG, "objective.lam", values, out, **kw, **bad)


def test_not_worse_takes_the_last_allowed_value_not_scoring_below_the_first(
    tmp_path, monkeypatch, capsys
):
    inf = float("inf")
    # top-1 means ∞ .81, 3 .805, 1 .79: a guard of 2.5 points allows all three; balanced means
    # ∞ .41, 3 .45, 1 .40: λ = 1 is the sharpest allowed but scores below ∞, so 3 is taken
    scripted = {
        inf: [(0.80, 0.40), (0.82, 0.42)],
        3.0: [(0.805, 0.45), (0.805, 0.45)],
        1.0: [(0.79, 0.40), (0.79, 0.40)],
    }
    _scripted_trials(monkeypatch, scripted)
    values, out = [inf, 3.0, 1.0], tmp_path / "search"
    kw = {"overrides": TINY, "seeds": [0, 1], "guard": "top1", "guard_drop": 0.025}
    assert tune(CONFIG, "objective.lam", values, out, **kw, choose_last=True).best == 1.0
    result = tune(CONFIG, "objective.lam", values, out, **kw, choose_last=True, not_worse=True)
    assert result.best == 3.0
    assert json.loads((out / "selection.json").read_text())["rule"] == (
        "the last value the guard allows whose val balanced_accuracy is at least the first's"
    )
    on_top1 = tune(
        CONFIG, "objective.lam", values, out, **kw, metric="top1", choose_last=True,
        not_worse=True,
    )  # fmt: skip
    assert on_top1.best == inf  # every other value's top-1 is below ∞'s
    with pytest.raises(ValueError, match="give choose_last"):
        tune(CONFIG, "objective.lam", values, out, **kw, not_worse=True)
    args = ["tune", "--config", str(CONFIG), "--param", "objective.lam", "--quiet"]
    args += ["--values", "inf", "3", "1", "--seeds", "0", "1", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    guard = ["--guard", "top1", "0.025"]
    assert main([*args, *guard, "--choose-last", "--not-worse"]) == 0
    assert load_config(out / "selected.yaml").objective.lam == 3.0
    capsys.readouterr()
    assert main([*args, *guard, "--not-worse"]) == 2
    assert "--not-worse checks the gain of --choose-last's choice" in capsys.readouterr().err


def test_the_table_says_what_top1_at_the_training_prior_rests_on():
    def trial(value, seed, images):
        val = {"num_samples": 500, "top1_train_prior": 0.8, "top1_train_prior_images": images}
        return {"value": value, "seed": seed, "metrics": {"selected_epoch": 2}, "val": val}

    def result(metric, guard, trials):
        return TuneResult(
            param="objective.lam",
            metric=metric,
            best=float("inf"),
            means={float("inf"): 0.8, 1.0: 0.8},
            trials=trials,
            config=None,
            guard=guard,
            guard_drop=None if guard is None else 0.01,
            guard_means=None if guard is None else {float("inf"): 0.8, 1.0: 0.8},
            allowed=None if guard is None else (float("inf"), 1.0),
        )

    same = [trial(v, s, 198.18) for v in (float("inf"), 1.0) for s in (0, 1)]
    expected = "the 500 validation images are worth about 198 drawn at the training prior"
    assert expected in format_tune_table(result("top1_train_prior", None, same))
    assert expected in format_tune_table(result("balanced_accuracy", "top1_train_prior", same))
    assert "worth about" not in format_tune_table(result("balanced_accuracy", "top1", same))
    # splits drawn per seed: the range; runs that predate the key: no line
    varied = [trial(float("inf"), 0, 198.2), trial(float("inf"), 1, 203.9)]
    table = format_tune_table(result("top1_train_prior", None, varied))
    assert "worth about 198-204 drawn" in table
    old = [{**t, "val": {"top1_train_prior": 0.8}} for t in same]
    assert "worth about" not in format_tune_table(result("top1_train_prior", None, old))


def test_a_guard_whose_reference_diverged_chooses_nothing(tmp_path, monkeypatch, capsys):
    scripted = {**SCRIPTED, float("inf"): [(0.80, 0.40), None]}  # ∞ diverged on seed 1
    _scripted_trials(monkeypatch, scripted)
    out = tmp_path / "search"
    args = ["tune", "--config", str(CONFIG), "--param", "objective.lam", "--out", str(out)]
    args += ["--values", "inf", "3", "1", "--seeds", "0", "1", "--quiet"]
    for item in TINY:
        args += ["--set", item]
    (out).mkdir()
    (out / "selected.yaml").write_text("an earlier search's choice\n")
    assert main(args) == 0  # unguarded: 1 is chosen, the diverged ∞ cannot win
    assert load_config(out / "selected.yaml").objective.lam == 1.0
    assert main([*args, "--guard", "top1", "0.01"]) == 1
    text = capsys.readouterr().out
    assert "the first value has no validation top1 (diverged?)" in text
    assert "ruled out: the first value has no val top1" in text
    assert not (out / "selected.yaml").exists()  # no stale choice left beside this search
    assert json.loads((out / "selection.json").read_text())["best"] is None


def test_cli_tune_guard_prints_the_guard_column_and_refuses_bad_values(
    tmp_path, monkeypatch, capsys
):
    _scripted_trials(monkeypatch)
    args = ["tune", "--config", str(CONFIG), "--param", "objective.lam", "--quiet"]
    args += ["--values", "inf", "3", "1", "--seeds", "0", "1", "--out", str(tmp_path / "s")]
    for item in TINY:
        args += ["--set", item]
    assert main([*args, "--guard", "top1", "0.01"]) == 0
    text = capsys.readouterr().out
    assert "val top1" in text
    assert load_config(tmp_path / "s" / "selected.yaml").objective.lam == 3.0
    assert text.count("ruled out") == 1 and "more than 1 points of val top1" in text
    assert main([*args, "--metric", "top1", "--guard", "top1", "0.03", "--choose-last"]) == 0
    assert load_config(tmp_path / "s" / "selected.yaml").objective.lam == 1.0
    capsys.readouterr()
    for bad, message in (
        (["--choose-last"], "--choose-last takes the last value a guard allows"),
        (["--guard", "loss", "0.01"], "--guard METRIC must be one of"),
        (["--guard", "top1", "-0.01"], "--guard DROP must be a fraction in [0, 1)"),
        (["--guard", "top1", "one"], "got 'one'"),
        (["--guard", "top1", "1"], "(0.01 is one point of accuracy), got '1'"),
        (["--guard", "top1", "inf"], "got 'inf'"),
    ):
        assert main([*args, *bad]) == 2
        assert message in capsys.readouterr().err


DIGITS = SHIPPED_CONFIGS / "cpu/digits_lt50_ce_absgd.yaml"
DIGITS_SHORT = [
    "data.val_source=split",
    "data.val_fraction=0.3",
    "train.epochs=6",
    "objective.lam_switch=4",
    "optim.milestones=[4]",
]


def _brute_upper(labels, refs, cands, z=1.6448536269514722):
    """Top-1's paired drop over seeds scored on the same images and its upper bound, by loops:
    per image the mean over seeds of [reference right] − [candidate right], then the stratified
    mean and standard error over classes."""
    n = len(labels)
    pairs = list(zip(refs, cands, strict=True))
    d = [sum(float(r[i] == labels[i]) - float(c[i] == labels[i]) for r, c in pairs) / len(pairs)
         for i in range(n)]  # fmt: skip
    drop, var = 0.0, 0.0
    for c in sorted(set(labels.tolist())):
        dc = [d[i] for i in range(n) if labels[i] == c]
        mean = sum(dc) / len(dc)
        s2 = sum((x - mean) ** 2 for x in dc) / (len(dc) - 1) if len(dc) > 1 else 1.0
        drop += len(dc) / n * mean
        var += (len(dc) / n) ** 2 * s2 / len(dc)
    return drop, drop + z * var**0.5


def test_a_confident_guard_pairs_the_runs_validation_predictions(tmp_path):
    pytest.importorskip("sklearn")  # the digits
    from absgd.training.evaluation import Predictions

    inf = float("inf")
    out = tmp_path / "search"
    kw = {"overrides": DIGITS_SHORT, "seeds": [0, 1], "metric": "balanced_accuracy"}
    kw["guard"] = "top1"
    result = tune(
        DIGITS, "objective.lam", [inf, 0.5], out, **kw, guard_drop=0.5, guard_confidence=0.95
    )
    # both seeds were validated on the same images (data.val_seed): each image counts once
    kept = {
        (v, s): Predictions.load(out / f"lam={value_text(v)}-s{s}" / "predictions-val.npz")
        for v in (inf, 0.5)
        for s in (0, 1)
    }
    assert len({p.inputs_sha256 for p in kept.values()}) == 1
    labels = kept[(inf, 0)].labels
    refs = [kept[(inf, s)].predicted for s in (0, 1)]
    cands = [kept[(0.5, s)].predicted for s in (0, 1)]
    drop, upper = _brute_upper(labels, refs, cands)
    assert 0 < drop < upper  # λ = 0.5 scores lower, and validation is not sure by how much
    paired = result.guard_drops[0.5]
    assert (paired.drop, paired.upper(0.95)) == pytest.approx((drop, upper), abs=1e-12)
    # the drop is the difference of the validation top-1 that training recorded (another code
    # path: the evaluation at the selected epoch)
    val = {(t["value"], t["seed"]): t["val"]["top1"] for t in result.trials}
    assert drop == pytest.approx(sum(val[(inf, s)] - val[(0.5, s)] for s in (0, 1)) / 2)
    # DROP between the mean drop and its bound: the mean guard allows λ = 0.5, this one not
    between = (drop + upper) / 2
    plain = tune(DIGITS, "objective.lam", [inf, 0.5], out, **kw, guard_drop=between)
    assert plain.allowed == (inf, 0.5)
    sure = tune(
        DIGITS, "objective.lam", [inf, 0.5], out, **kw, guard_drop=between, guard_confidence=0.95
    )
    assert sure.allowed == (inf,) and sure.best == inf
    table = format_tune_table(sure)
    assert "drop (95 % bound)" in table
    assert f"the 95 % bound of its val top1 drop is above {100 * between:g} points" in table
    assert json.loads((out / "selection.json").read_text())["best"] == "inf"
    # above the bound: allowed
    wide = min(upper + 0.01, 0.99)
    loose = tune(
        DIGITS, "objective.lam", [inf, 0.5], out, **kw, guard_drop=wide, guard_confidence=0.95
    )
    assert loose.allowed == (inf, 0.5)
    saved = json.loads((out / "selection.json").read_text())["guard"]
    assert saved["confidence"] == 0.95 and list(saved["paired"]) == ["0.5"]
    assert saved["paired"]["0.5"]["upper"] == pytest.approx(upper)
    # top-1 at the training prior weighs the classes by the training counts: its paired drop is
    # the difference of the scores val_score computes from the recorded per-class accuracies
    prior = tune(
        DIGITS, "objective.lam", [inf, 0.5], out, overrides=DIGITS_SHORT, seeds=[0, 1],
        guard="top1_train_prior", guard_drop=0.5, guard_confidence=0.95,
    )  # fmt: skip
    rows = {(t["value"], t["seed"]): t for t in prior.trials}
    expected = (
        sum(
            val_score(rows[(inf, s)], "top1_train_prior")
            - val_score(rows[(0.5, s)], "top1_train_prior")
            for s in (0, 1)
        )
        / 2
    )
    assert prior.guard_drops[0.5].drop == pytest.approx(expected, abs=1e-12)
    assert expected != pytest.approx(drop)  # another weighting than plain top-1


def test_cli_guard_confidence_and_eval_predictions(tmp_path, capsys):
    from absgd.training.evaluation import Predictions

    out = tmp_path / "s"
    args = ["tune", "--config", str(CONFIG), "--param", "objective.lam", "--quiet"]
    args += ["--values", "inf", "1", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    for bad, message in (
        (["--guard-confidence", "0.95"], "--guard-confidence needs --guard METRIC DROP"),
        (["--guard", "top1", "0.01", "--guard-confidence", "1"], "level in [0.5, 1)"),
        (["--guard", "top1", "0.01", "--guard-confidence", "0.3"], "got 0.3"),
    ):
        assert main([*args, *bad]) == 2
        assert message in capsys.readouterr().err
    assert not out.exists()  # refused before any training
    assert main([*args, "--guard", "top1", "0.5", "--guard-confidence", "0.9"]) == 0
    assert "drop (90 % bound)" in capsys.readouterr().out
    run = out / "lam=1.0-s0"
    file = tmp_path / "pred.npz"
    assert main(["eval", str(run), "--split", "val", "--json", "--predictions", str(file)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    pred = Predictions.load(file)
    assert np.mean(pred.labels == pred.predicted) == pytest.approx(metrics["top1"])
    assert np.bincount(pred.labels).tolist() == metrics["class_counts"]
    trial = next(
        json.loads(line)
        for line in (out / "trials.jsonl").read_text().splitlines()
        if json.loads(line)["value"] == 1.0
    )
    assert pred.train_counts.tolist() == trial["metrics"]["train_class_counts"]
    kept = Predictions.load(run / "predictions-val.npz")  # the guard's, from the same model
    assert np.array_equal(kept.predicted, pred.predicted) and kept.model_sha256 == pred.model_sha256


def test_a_diverged_model_gives_no_predictions(tmp_path):
    import torch

    from absgd.metrics.meters import NaNLogitsError
    from absgd.training.evaluation import split_predictions

    out = tmp_path / "s"
    tune(CONFIG, "objective.lam", [1.0], out, overrides=TINY)
    run = out / "lam=1.0-s0"
    split_predictions(run)  # kept from the finite model
    state = torch.load(run / "model.pt", weights_only=True)
    nan = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
           for k, v in state.items()}  # fmt: skip
    torch.save(nan, run / "model.pt")
    # argmax would name a class for every NaN row; the kept file is of another model
    with pytest.raises(NaNLogitsError, match=r"model\.pt gave NaN logits for \d+ of a batch"):
        split_predictions(run)


def test_kept_predictions_are_made_again_when_the_model_changes(tmp_path):
    import torch

    from absgd.training.evaluation import split_predictions

    out = tmp_path / "s"
    tune(CONFIG, "objective.lam", [1.0], out, overrides=TINY)
    run = out / "lam=1.0-s0"
    first = split_predictions(run)
    assert (run / "predictions-val.npz").is_file()
    state = torch.load(run / "model.pt", weights_only=True)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, run / "model.pt")
    again = split_predictions(run)
    assert again.model_sha256 != first.model_sha256
    assert len(set(again.predicted.tolist())) == 1  # a zeroed model predicts one class
    (run / "predictions-val.npz").write_bytes(b"not an npz")
    assert split_predictions(run).model_sha256 == again.model_sha256  # unreadable: made again
    data = (run / "predictions-val.npz").read_bytes()
    (run / "predictions-val.npz").write_bytes(data[: len(data) // 2])  # a truncated zip
    assert split_predictions(run).model_sha256 == again.model_sha256
    # the config changed (say the data): made again, though the model did not change
    before = (run / "predictions-val.npz").stat().st_mtime_ns
    (run / "config.yaml").write_text((run / "config.yaml").read_text() + "# edited\n")
    assert split_predictions(run).config_sha256 != again.config_sha256
    assert (run / "predictions-val.npz").stat().st_mtime_ns != before
