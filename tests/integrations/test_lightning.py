"""ABSGDCallback: the λ schedule and its log, resume, and Lightning's ddp (2 CPU processes)."""

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightning")

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("lightning_run", HERE / "lightning_run.py")
lightning_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lightning_run)

import lightning as L  # noqa: E402

from absgd.integrations.lightning import ABSGDCallback  # noqa: E402


def _assert_same(a: dict, b: dict, atol: float = 0.0) -> None:
    for key in a:
        np.testing.assert_allclose(np.array(a[key]), np.array(b[key]), rtol=0, atol=atol)


def _logged(out: Path, name: str) -> list[float]:
    with open(out / "logs" / "version_0" / "metrics.csv") as f:
        return [float(r[name]) for r in csv.DictReader(f) if r.get(name)]


def test_lam_follows_the_epoch_schedule_and_is_logged(tmp_path):
    lightning_run.run(str(tmp_path), epochs=3)
    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("absgd_lam")]
    assert len(rows) == 18  # 6 batches of 16 per epoch
    for row in rows:
        expected = math.inf if int(row["epoch"]) == 0 else 1.0
        assert float(row["absgd_lam"]) == expected
        assert (float(row["absgd_ess"]) == 1.0) == (expected == math.inf)


def test_a_resumed_run_equals_the_uninterrupted_one(tmp_path):
    full = lightning_run.run(str(tmp_path / "full"), epochs=3)
    lightning_run.run(str(tmp_path / "part"), epochs=2)  # stops after the first λ = 1 epoch
    resumed = lightning_run.run(
        str(tmp_path / "resumed"), epochs=3, resume=str(tmp_path / "part" / "final.ckpt")
    )
    _assert_same(full["params"], resumed["params"])
    _assert_same(full["state"], resumed["state"])


@pytest.mark.parametrize("target_ess", [None, 0.7])
def test_two_processes_equal_one_process_on_the_global_batch(tmp_path, target_ess):
    single = lightning_run.run(str(tmp_path / "one"), epochs=2, target_ess=target_ess)
    command = [sys.executable, str(HERE / "lightning_run.py"), str(tmp_path / "two")]
    command += ["--devices", "2", "--epochs", "2"]
    if target_ess is not None:
        command += ["--target-ess", str(target_ess)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    _assert_same(single["params"], two["params"], atol=1e-5)
    _assert_same(single["state"], two["state"], atol=1e-4)
    ess = [_logged(tmp_path / run, "absgd_ess") for run in ("one", "two")]
    assert len(ess[0]) == 12 and min(ess[0]) < 1.0  # 6 steps an epoch; ABSGD from epoch 2
    np.testing.assert_allclose(ess[0], ess[1], rtol=1e-4)  # the global batch's ESS


def test_a_module_without_an_objective_is_refused(tmp_path):
    class Plain(lightning_run.Classifier):
        def __init__(self):
            super().__init__()
            del self.criterion  # a module that computes its loss some other way

        def training_step(self, batch, batch_idx):
            x, y = batch
            return lightning_run.nn.functional.cross_entropy(self.net(x), y)

    trainer = L.Trainer(
        max_epochs=1, callbacks=[ABSGDCallback()], logger=False, default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match="found no ScheduledObjective"):
        trainer.fit(Plain())
