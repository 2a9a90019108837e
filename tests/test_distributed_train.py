"""Multi-process training with torchrun (gloo on the CPU) equals one process on the global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from absgd.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="no torch.distributed")

# 3 classes x 32 training images (3 per class go to validation), global batch 16: every
# global batch splits evenly over 2 processes, so the runs must agree to float rounding.
CONFIG = """
name: dist
data: {name: synthetic, options: {num_classes: 3, train_per_class: 35, test_per_class: 7},
       val_source: split, val_fraction: null, val_per_class: 3, augment: none}
model: {name: mlp, options: {hidden: [16]}}
objective: {loss: ce, class_weighting: class_balanced, weighting: absgd, lam: 1.0}
optim: {warmup_epochs: 0, schedule: step, milestones: [2], factors: [0.1], lr: 0.1}
train: {epochs: 3, batch_size: 16, device: cpu, deterministic: true,
        select: best_balanced_accuracy, dist_timeout_s: 60}
"""
STEPS_PER_EPOCH = 96 // 16


def _absgd(*args: str, procs: int = 1, check: bool = True) -> subprocess.CompletedProcess:
    if procs == 1:
        cmd = [sys.executable, "-m", "absgd", *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={procs}",
            "-m",
            "absgd",
            *args,
        ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "dist.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def single_run(config, tmp_path_factory):
    run = tmp_path_factory.mktemp("single") / "run"
    _absgd("train", "--config", str(config), "--out", str(run), "--quiet")
    return run


def _same_result(a, b) -> None:
    pa = torch.load(a / "model.pt", weights_only=True)
    pb = torch.load(b / "model.pt", weights_only=True)
    for key in pa:
        torch.testing.assert_close(pa[key], pb[key], rtol=1e-5, atol=1e-5)
    fa = json.loads((a / "final.json").read_text())
    fb = json.loads((b / "final.json").read_text())
    for key in (
        "top1",
        "balanced_accuracy",
        "many",
        "medium",
        "few",
        "per_class_accuracy",
        "confusion_matrix",
        "selected_epoch",
    ):
        assert fa[key] == fb[key], key
    ha = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    for ra, rb in zip(ha, hb, strict=True):
        assert ra["val"]["per_class_accuracy"] == rb["val"]["per_class_accuracy"]
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4, abs=1e-7)
        # the weights' diagnostics are over the global batch, whatever the number of processes
        assert ra["effective_sample_size"] == pytest.approx(rb["effective_sample_size"], rel=1e-5)
        assert ra["step_scale"] == pytest.approx(rb["step_scale"], rel=1e-5)
        np.testing.assert_allclose(ra["mean_weight_per_class"], rb["mean_weight_per_class"], 1e-5)


def test_two_processes_equal_one_process_with_the_same_global_batch(config, single_run, tmp_path):
    run = tmp_path / "two"
    _absgd("train", "--config", str(config), "--out", str(run), "--quiet", procs=2)
    assert json.loads((run / "final.json").read_text())["processes"] == 2
    _same_result(run, single_run)


@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_resume_with_another_number_of_processes(config, single_run, tmp_path, first, then):
    run = tmp_path / "run"
    stop = STEPS_PER_EPOCH + 2  # mid-epoch of epoch 2
    out = _absgd(
        "train",
        "--config",
        str(config),
        "--out",
        str(run),
        "--quiet",
        "--stop-after-steps",
        str(stop),
        procs=first,
        check=False,
    )
    assert out.returncode != 0 and "absgd train --resume" in out.stderr
    state = load_checkpoint(run)
    assert (state["epoch"], state["step"]) == (1, 2)  # mid-epoch (the epoch boundary: below)
    _absgd("train", "--resume", str(run), "--quiet", procs=then)
    _same_result(run, single_run)


@pytest.mark.parametrize("then", [2, 1])
def test_resume_from_the_end_of_epoch_checkpoint_after_preemption(
    config, single_run, tmp_path, then
):
    # Under torchrun, both processes die right after the checkpoint of epoch 1 is written
    # (before epoch 2, where the LR milestone is): the resume starts at (epoch 1, step 0).
    run = tmp_path / "run"
    script = os.path.join(os.path.dirname(__file__), "preempt_after_epoch.py")
    args = ["train", "--config", str(config), "--out", str(run), "--quiet"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [*cmd, script, "1", *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode != 0 and "exitcode: 75" in out.stderr, out.stderr[-3000:]
    state = load_checkpoint(run)
    assert (state["epoch"], state["step"]) == (1, 0)
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (run / "final.json").exists()
    _absgd("train", "--resume", str(run), "--quiet", procs=then)
    _same_result(run, single_run)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(config, tmp_path):
    out = _absgd(
        "train",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "r"),
        "--quiet",
        "--set",
        "train.batch_size=15",
        procs=2,
        check=False,
    )
    assert out.returncode != 0
    assert "train.batch_size=15 is the global batch and must be divisible" in out.stderr


def test_torchrun_without_out_is_a_usage_error(config):
    out = _absgd("train", "--config", str(config), "--quiet", procs=2, check=False)
    assert out.returncode != 0 and "pass --out" in out.stderr


# -- in-process workers ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )


def _eval_worker(rank: int, port: int, out_dir: str) -> None:
    from absgd.training.build import build_model_for, prepare_data
    from absgd.training.config import load_config
    from absgd.training.distributed import setup, shard_for_evaluation
    from absgd.training.evaluation import evaluate_model, make_loader

    _join(rank, port)
    ctx, _ = setup("cpu", 60.0)
    cfg = load_config(
        None,
        [
            "data.name=synthetic",
            "data.options={num_classes: 4, train_per_class: 150, test_per_class: 13}",
            "data.imbalance_ratio=10",
            "model.name=mlp",
            "model.options={hidden: [8]}",
        ],
    )
    data = prepare_data(cfg.data)
    torch.manual_seed(0)
    model = build_model_for(cfg, data)
    results = {}
    for name, c in (("single", None), ("sharded", ctx)):
        split = data.test if c is None else shard_for_evaluation(data.test, ctx)
        loader = make_loader(
            split,
            7,
            train=False,
            seed=0,
            device=torch.device("cpu"),
            aug=data.eval_augment,
            cfg=cfg,
        )
        results[name] = evaluate_model(
            model, loader, 4, data.train_counts, device=torch.device("cpu"), ctx=c
        )
    assert len(shard_for_evaluation(data.test, ctx)) == 26  # 52 test images, no padding
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump(results, fh)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)  # see tests/test_distributed.py: gloo may abort at interpreter exit


def test_distributed_evaluation_equals_single_process_evaluation_exactly(tmp_path):
    mp.spawn(_eval_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        results = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert results["sharded"] == results["single"]
        assert results["single"]["shot_num_classes"] == {"many": 1, "medium": 2, "few": 1}


def _dying_worker(rank: int, port: int, out_dir: str) -> None:
    from absgd.training.distributed import agree, setup

    _join(rank, port)
    ctx, _ = setup("cpu", 30.0)
    agree(False, ctx, torch.device("cpu"))
    if rank == 1:
        os._exit(7)  # a crash: no goodbye to the other process
    started = time.monotonic()
    try:
        for _ in range(10):
            agree(False, ctx, torch.device("cpu"))
        message = "no error"
    except RuntimeError as err:
        message = str(err)
    with open(os.path.join(out_dir, "rank0.txt"), "w") as fh:
        fh.write(f"{time.monotonic() - started:.1f}\n{message}")
    os._exit(0)


def test_a_dying_process_makes_the_others_fail_instead_of_hanging(tmp_path):
    ctx = mp.start_processes(
        _dying_worker,
        args=(_free_port(), str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    for proc in ctx.processes:
        proc.join(timeout=120)
    assert [p.exitcode for p in ctx.processes] == [0, 7]
    seconds, message = (tmp_path / "rank0.txt").read_text().split("\n", 1)
    assert message != "no error"
    assert float(seconds) < 60
    assert np.isfinite(float(seconds))
