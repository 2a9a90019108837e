"""The ``absgd`` command line: exit codes, train / eval / compare / demo / configs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

import absgd
from absgd.cli import main

TINY = [
    "data.name=synthetic",
    "data.options={num_classes: 3, train_per_class: 20, test_per_class: 5}",
    "data.imbalance_ratio=4",
    "model.name=mlp",
    "model.options={hidden: [16]}",
    "train.epochs=2",
    "train.batch_size=16",
    "train.device=cpu",
    "optim.warmup_epochs=0",
]


def _sets(overrides):
    return [arg for item in overrides for arg in ("--set", item)]


def test_version_via_python_dash_m():
    out = subprocess.run(
        [sys.executable, "-m", "absgd", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"absgd {absgd.__version__}"


def test_help_and_usage_error_exit_codes(capsys):
    assert main([]) == 2  # no command is a usage error, with the help on stderr
    err = capsys.readouterr().err
    assert "ABSGD" in err and "a command is required" in err
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-flag"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train"], "train needs --config"),
        (["train", "--config", "no/such/config"], "neither a file nor a shipped config"),
        (
            ["train", "--config", "cpu/fashion_mnist_lt_exp100_ce", "--set", "optim.lrr=1"],
            "optim.lrr: unknown key",
        ),
        (["train", "--resume", "x", "--config", "y"], "--resume continues a run"),
        (["compare", "/nonexistent"], "no finished run among /nonexistent"),
    ],
)
def test_usage_errors_exit_2_with_a_message(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_a_failure_with_exit_1(capsys, tmp_path):
    argv = [
        "train",
        "--config",
        "cpu/fashion_mnist_lt_exp100_ce",
        "--quiet",
        "--out",
        str(tmp_path / "r"),
        "--set",
        f"data.root={tmp_path}/nowhere",
    ]
    assert main(argv) == 1
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # a start that fails on its data leaves no folder
    # a folder whose run stopped before its first checkpoint says how to start it again
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "config.yaml").write_text("name: x\n")
    assert main(["train", "--resume", str(tmp_path / "early"), "--quiet"]) == 1
    assert "start it again with absgd train --config" in capsys.readouterr().err


def test_train_eval_compare_and_resume_of_a_finished_run(capsys, tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                "cpu/fashion_mnist_lt_exp100_ce",
                "--quiet",
                "--out",
                str(run),
                *_sets(TINY),
                "--set",
                "data.val_source=split",
                "--set",
                "data.val_per_class=null",
                "--set",
                "data.val_fraction=0.2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    final = json.loads((run / "final.json").read_text())
    assert f"{100 * final['top1']:.2f}" in out
    assert main(["eval", str(run), "--json", "--quiet"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["top1"] == pytest.approx(final["top1"])
    assert evaluated["per_class_accuracy"] == final["per_class_accuracy"]
    assert evaluated["train_class_counts"] == final["train_class_counts"]  # as training wrote it
    prior = np.asarray(final["train_class_counts"]) / sum(final["train_class_counts"])
    assert evaluated["top1_train_prior"] == pytest.approx(prior @ final["per_class_accuracy"])
    (tmp_path / "failed-start").mkdir()  # e.g. a run whose data could not be read
    assert main(["compare", str(run), str(tmp_path / "failed-start"), str(run), "--markdown"]) == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].startswith("| run | method") and len(table) == 4
    assert f"skipped {tmp_path / 'failed-start'}: no final.json" in captured.err
    (tmp_path / "still-training").mkdir()
    (tmp_path / "still-training" / "checkpoint.pt").write_bytes(b"")
    assert main(["compare", str(tmp_path / "still-training"), str(run)]) == 0
    assert "absgd train --resume" in capsys.readouterr().err
    # resuming a finished run trains nothing more, reports the same metrics, rewrites nothing
    stamps = {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "final.json").read_text())["top1"] == final["top1"]
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()} == stamps


def test_demo_runs_offline_and_prints_both_methods(capsys):
    assert main(["demo", "--epochs", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "plain SGD" in out and "ABSGD (λ=2, two-stage)" in out


def test_configs_lists_and_shows(capsys):
    assert main(["configs", "--names"]) == 0
    names = capsys.readouterr().out.split()
    assert "cifar_lt/cifar10_lt_exp100/ldam_drw_absgd" in names
    assert not any(n.startswith("_") for n in names)
    assert main(["configs"]) == 0  # grouped, one described line per config
    lines = capsys.readouterr().out.splitlines()
    assert len([ln for ln in lines if ln.startswith("  ")]) == len(names)
    (line,) = [ln for ln in lines if ln.split()[:1] == ["cpu/fashion_mnist_lt_exp100_ce_absgd"]]
    assert line.split(maxsplit=1)[1] == (
        "ce+absgd(λ=2 after epoch 15) on fashion_mnist-LT(exp, ratio 100), small_cnn, 20 epochs"
    )
    assert main(["configs", "--show", "cifar_lt/cifar10_lt_exp100/ldam_drw_absgd"]) == 0
    assert "lam_switch: 160" in capsys.readouterr().out


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_checkpoints_the_current_step_and_exits_130(tmp_path, sig):
    import signal
    import time

    from absgd.training.checkpoint import load_checkpoint

    config = tmp_path / "long.yaml"
    config.write_text("train: {epochs: 100000}\n")
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "absgd",
            "train",
            "--config",
            str(config),
            "--quiet",
            "--out",
            str(run),
            *_sets([x for x in TINY if not x.startswith("train.epochs")]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "absgd train --resume" in err
    state = load_checkpoint(run)
    assert state["epoch"] >= 1 and state["epoch"] < 100000


def test_a_run_directory_works_from_another_folder_and_follows_moved_data(
    capsys, tmp_path, monkeypatch
):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    y = (x[:, 0] > 0.3).astype(int) + (x[:, 1] > 1.0).astype(int)
    (tmp_path / "data").mkdir()
    rows = [",".join(f"{v:.5f}" for v in xi) + f",{yi}" for xi, yi in zip(x, y, strict=True)]
    (tmp_path / "data" / "t.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    tabular = [
        *TINY[3:],  # the MLP and schedule, not the synthetic data
        "data.name=csv",
        "data.root=data/t.csv",  # relative to the folder the run starts in
        "data.imbalance_ratio=null",
        "data.augment=none",
        "data.val_source=split",
        "data.val_per_class=null",
        "data.val_fraction=0.2",
    ]
    argv = ["train", "--config", "cpu/fashion_mnist_lt_exp100_ce", "--quiet", "--out", str(run)]
    assert main([*argv, *_sets(tabular), "--stop-after-steps", "3"]) == 130
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["root"] == str(tmp_path / "data" / "t.csv")  # saved absolute
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert main(["eval", str(run), "--json", "--quiet"]) == 0
    capsys.readouterr()
    # the data moves: --set data.root (only that) on resume, --data-root on eval
    (tmp_path / "data").rename(tmp_path / "moved")
    assert main(["eval", str(run), "--quiet"]) == 1
    new_root = str(tmp_path / "moved" / "t.csv")
    assert main(["eval", str(run), "--json", "--quiet", "--data-root", new_root]) == 0
    assert main(["train", "--resume", str(run), "--set", "optim.lr=1", "--quiet"]) == 2
    assert "but --set data.root" in capsys.readouterr().err


def test_an_empty_shot_group_says_which_classes_it_would_hold():
    from absgd.cli import format_table

    row = {
        "run": "r",
        "method": "ce",
        "dataset": "d",
        "top1": 0.5,
        "balanced_accuracy": 0.5,
        "many": 0.6,
        "medium": 0.4,
        "few": None,
        "shot_thresholds": {"many": 100, "few": 20},
        "wall_seconds": 1.0,
    }
    table = format_table([row], markdown=True)
    assert table.splitlines()[-1].endswith("| 60.00 | 40.00 | none < 20 | 1.0s |")
