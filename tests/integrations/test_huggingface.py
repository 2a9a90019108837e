"""ABSGDTrainer: the loss, the λ schedule, resume and the Trainer's own DDP (2 CPU processes)."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("hf_run", HERE / "hf_run.py")
hf_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hf_run)

from transformers import TrainingArguments  # noqa: E402

from absgd import ABLoss  # noqa: E402
from absgd.integrations import ScheduledObjective  # noqa: E402
from absgd.integrations.huggingface import STATE_FILE, ABSGDTrainer  # noqa: E402


def _assert_same(a: dict, b: dict, atol: float = 0.0) -> None:
    for key in a:
        np.testing.assert_allclose(np.array(a[key]), np.array(b[key]), rtol=0, atol=atol)


def _trainer(tmp_path, objective):
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    return ABSGDTrainer(model=hf_run.Net(), args=args, train_dataset=hf_run.Rows(), absgd=objective)


def test_the_loss_is_abloss_and_evaluation_leaves_the_state_alone(tmp_path):
    trainer = _trainer(tmp_path, ScheduledObjective(lam=0.5))
    rows = hf_run.Rows()
    batch = {"x": rows.x[:16], "labels": rows.y[:16]}
    model = trainer.model.train()
    reference = ABLoss(nn.CrossEntropyLoss(reduction="none"), lam=0.5)
    for _ in range(2):  # the normaliser carries over alike
        ours = trainer.compute_loss(model, batch)
        theirs = reference(model(rows.x[:16])["logits"], rows.y[:16])
        assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-6)
    state = {k: v.clone() for k, v in trainer.absgd.state_dict().items()}
    model.eval()
    with torch.no_grad():
        plain = trainer.compute_loss(model, batch)
        expected = nn.functional.cross_entropy(model(rows.x[:16])["logits"], rows.y[:16])
    assert float(plain) == pytest.approx(float(expected), rel=1e-6)
    for key, value in state.items():
        after = trainer.absgd.state_dict()[key]
        assert torch.allclose(value.double(), after.double(), rtol=0, atol=0, equal_nan=True)


def test_lam_follows_the_epoch_schedule_and_is_logged(tmp_path):
    result = hf_run.run(str(tmp_path), epochs=3)
    # 96 rows, batches of 16: 6 steps per epoch; a step logs the epoch reached after it.
    steps = result["history"]
    assert len(steps) == 18
    for k, step in enumerate(steps):
        expected = math.inf if k < 6 else 1.0
        assert float(step["lam"]) == expected
        assert (float(step["ess"]) == 1.0) == (k < 6)
        assert math.ceil(step["epoch"] - 1e-9) - 1 == k // 6


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    full = hf_run.run(str(tmp_path / "full"), epochs=3)
    checkpoint = tmp_path / "full" / "checkpoint-6"  # after epoch 1 (λ = ∞)
    assert (checkpoint / STATE_FILE).is_file()
    resumed = hf_run.run(
        str(tmp_path / "resumed"), epochs=3, resume=str(tmp_path / "full" / "checkpoint-12")
    )
    _assert_same(full["params"], resumed["params"])
    _assert_same(full["state"], resumed["state"])
    (tmp_path / "full" / "checkpoint-12" / STATE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="was not written by ABSGDTrainer"):
        hf_run.run(
            str(tmp_path / "again"), epochs=3, resume=str(tmp_path / "full" / "checkpoint-12")
        )


@pytest.mark.parametrize("target_ess", [None, 0.7])
def test_two_processes_equal_one_process_on_the_global_batch(tmp_path, target_ess):
    single = hf_run.run(str(tmp_path / "one"), epochs=2, target_ess=target_ess)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--standalone", str(HERE / "hf_run.py"), str(tmp_path / "two"), "--epochs", "2"]
    if target_ess is not None:
        command += ["--target-ess", str(target_ess)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    _assert_same(single["params"], two["params"], atol=1e-5)
    for key in ("lam", "ess"):  # the ESS of the global batch, not of one process's half
        np.testing.assert_allclose(
            [float(h[key]) for h in single["history"]],
            [float(h[key]) for h in two["history"]],
            rtol=1e-4,
        )
