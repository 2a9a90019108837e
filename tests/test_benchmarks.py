"""Smoke tests: each benchmark script runs for a step or two, so they cannot rot."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_overhead_benchmark_runs_and_writes_json(tmp_path):
    out = _run(
        "overhead.py",
        "--models",
        "small_cnn",
        "--batch",
        "8",
        "--steps",
        "2",
        "--warmup",
        "0",
        "--json",
        str(tmp_path / "o.json"),
    )
    assert "| small_cnn | 8 | mwn |" in out.stdout
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"sgd", "absgd_ce", "absgd_ldam", "rgd", "mwn"}
    sgd = next(r for r in rows if r["method"] == "sgd")
    assert sgd["ratio_to_sgd"] == 1.0
    assert all(r["median_ms"] > 0 for r in rows)


def test_eval_batch_benchmark_prints_a_row_per_batch_size(tmp_path):
    out = _run(
        "eval_batch.py",
        *("--images", "8", "--batches", "2", "4", "--repeats", "1"),
        *("--json", str(tmp_path / "e.json")),
    )
    assert "| 2 |" in out.stdout and "| 4 | " in out.stdout and "1.00x |" in out.stdout
    rates = json.loads((tmp_path / "e.json").read_text())["rates"]
    assert sorted(rates) == ["2", "4"] and all(r[0] > 0 for r in rates.values())
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "eval_batch.py"), "--images", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--images" in bad.stderr


def test_throughput_benchmark_runs_on_a_generated_archive(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    rng = np.random.default_rng(0)
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split, n in (("train", 16), ("test", 2)):
            for c in range(10):
                for i in range(n):
                    buf = io.BytesIO()
                    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(buf, format="JPEG")
                    info = tarfile.TarInfo(f"{split}/class{c}/{i:03d}.jpg")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    out = _run(
        "throughput.py",
        "--data",
        str(archive),
        "--steps",
        "2",
        "--warmup",
        "1",
        "--batch",
        "8",
        "--workers",
        "0",
        "--repeats",
        "1",
        "--imbalance-ratio",
        "2",
        "--json",
        str(tmp_path / "t.json"),
        env={"ABSGD_CACHE_DIR": str(tmp_path / "c")},
    )
    assert "| absgd |" in out.stdout and "| per-image |" in out.stdout
    result = json.loads((tmp_path / "t.json").read_text())
    assert result["speedup"] > 0
    assert result["train_images"] == sum([16, 14, 13, 12, 11, 10, 10, 9, 8, 8])


def test_data_cache_benchmark_times_a_generated_archive(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    rng = np.random.default_rng(1)
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split, n in (("train", 3), ("test", 1)):
            for c in range(2):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                        buf, format="PNG"
                    )
                    info = tarfile.TarInfo(f"{split}/class{c}/{i}.png")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    out = _run(
        "data_cache.py",
        "--data",
        str(archive),
        "--repeats",
        "1",
        "--json",
        str(tmp_path / "c.json"),
        env={"ABSGD_CACHE_DIR": str(tmp_path / "user-cache")},
    )
    assert "| tiny.tar.gz | 8 |" in out.stdout
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["images"] == 8 and result["repeats"] == 1
    assert result["decode_s"] > 0 and result["cached_s"] > 0
    assert not (tmp_path / "user-cache").exists()  # timed in a temporary cache only


def test_accuracy_grid_selects_lambda_on_validation_resumes_and_summarises(tmp_path):
    results = tmp_path / "smoke.jsonl"
    _run("grid.py", "smoke", "--out", str(results))
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    runs = [r for r in rows if r["kind"] == "run"]
    (selection,) = [r for r in rows if r["kind"] == "lam_selection"]
    # CE: 2 seeds; ABSGD: both λ on seed 0, then seed 1 with the chosen λ
    assert len(runs) == 5
    scores = {float(k): v for k, v in selection["scores"].items()}
    assert selection["lam"] == max(scores, key=scores.get)
    assert {r["lam"] for r in runs if r["seed"] == 1 and r["method"] == "ABSGD"} == {
        selection["lam"]
    }
    for r in runs:
        assert r["config"]["train"]["seed"] == r["seed"]
        assert r["environment"]["torch"] and "top1" in r["metrics"]
        assert r["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
        assert r["val"] is not None  # selection saw the validation split only
    _run("grid.py", "smoke", "--out", str(results))  # nothing left to run
    assert len(results.read_text().splitlines()) == len(rows)
    table = _run("summarize.py", str(results)).stdout
    assert "| ABSGD |" in table and "| CE |" in table


def test_a_branched_method_continues_its_base_runs_and_matches_the_whole_runs(tmp_path):
    results, runs = tmp_path / "b.jsonl", tmp_path / "runs"
    args = ["--out", str(results), "--methods", "ABSGD, branched"]
    bad = _grid(*args, grid="smoke_branch")
    assert bad.returncode == 2 and "pass --keep-runs" in bad.stderr
    # the base has not run: the branched runs wait (status 3), nothing is written
    early = _grid(*args, "--keep-runs", str(runs), grid="smoke_branch")
    assert early.returncode == 3 and "waits for" in early.stdout
    assert not results.exists()
    _run("grid.py", "smoke_branch", "--out", str(results), "--keep-runs", str(runs))
    rows = [json.loads(x) for x in results.read_text().splitlines() if '"run"' in x]
    lines = {(r["method"], r["seed"], r["lam"]): r for r in rows if r["kind"] == "run"}
    for seed in (0, 1):  # the base kept its checkpoint at the switch (epoch 1)
        base = runs / f"smoke_branch_synthetic_CE-s{seed}"
        assert (base / "checkpoint-epoch1.pt").is_file()
    for (method, seed, lam), row in lines.items():
        if not method.endswith(", branched"):
            assert row["branched_from"] is None
            continue
        # ABSGD's λ switch and DRW's class weights' switch: both start their second stage there
        assert row["branched_from"]["epoch"] == 1
        assert "smoke_branch_synthetic_CE-s" in row["branched_from"]["checkpoint"]
        whole = lines[(method.removesuffix(", branched"), seed, lam)]  # trained from step one
        # after the switch as the whole run (the stages differ only in float rounding)
        assert row["curve"][1]["train_loss"] == pytest.approx(
            whole["curve"][1]["train_loss"], rel=1e-4
        )
        # and not as CE, which its stage 1 was
        assert row["curve"][1]["train_loss"] != pytest.approx(
            lines[("CE", seed, None)]["curve"][1]["train_loss"], rel=1e-3
        )
    assert {(m, s) for m, s, _ in lines} >= {
        (m, s) for m in ("ABSGD, branched", "DRW, branched") for s in (0, 1)
    }
    # a branch whose own run directory has a checkpoint resumes from it (here: reports the
    # finished run) without its source, e.g. on another machine after a GPU wave stopped it
    for kept in runs.glob("*/checkpoint-epoch1.pt"):
        kept.unlink()
    rows = [r for r in map(json.loads, results.read_text().splitlines())]
    others = [r for r in rows if r.get("method") != "ABSGD, branched"]
    results.write_text("".join(json.dumps(r) + "\n" for r in others))
    again = _grid(*args, "--keep-runs", str(runs), grid="smoke_branch")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    redone = [json.loads(x) for x in results.read_text().splitlines()]
    assert sum(r.get("method") == "ABSGD, branched" and r["kind"] == "run" for r in redone) >= 2


def test_a_branch_starts_at_the_earlier_of_its_two_switches_and_needs_one():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from grid import _branch_epoch

    from absgd.cli import SHIPPED_CONFIGS
    from absgd.training.config import load_config

    def cfg(*overrides: str):
        return load_config(SHIPPED_CONFIGS / "cpu" / "fashion_mnist_lt_exp100_ce.yaml", overrides)

    drw = ("objective.class_weighting=drw", "objective.class_weighting_options={switch: 7}")
    absgd = ("objective.weighting=absgd", "objective.lam=1.0")
    assert _branch_epoch(cfg(*drw), "DRW") == 7
    assert _branch_epoch(cfg(*absgd, "objective.lam_switch=4.5"), "AB") == 5  # epoch boundary
    assert _branch_epoch(cfg(*drw, *absgd, "objective.lam_switch=9"), "both") == 7
    with pytest.raises(SystemExit, match="CE: a method that branches needs a second stage"):
        _branch_epoch(cfg(), "CE")


def _start(*args: str, grid: str = "smoke") -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "grid.py"), grid, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        outs.append(stdout)
    return outs


def test_processes_that_wait_can_start_together_with_what_they_wait_for(tmp_path):
    results, runs = tmp_path / "w.jsonl", tmp_path / "runs"
    bad = _grid("--out", str(results), "--wait", "-1")
    assert bad.returncode == 2 and "--wait must be a number of seconds >= 0, got -1" in bad.stderr
    common = ("--out", str(results), "--wait", "300")
    # each process keeps its runs in its own folder (as gpu_wave.py does); the branches find
    # their base's in --base-runs
    branched = ("--methods", "ABSGD, branched", "--base-runs", str(runs / "base"))
    # started before their base and their λ choice exist: the seed waits for both, each
    # candidate for its base's checkpoint of seed 0
    seed_1 = _start(
        *common, *branched, "--only-seeds", "1", "--keep-runs", str(runs / "s1"),
        grid="smoke_branch",
    )  # fmt: skip
    candidates = [
        _start(*common, *branched, "--lams", lam, "--keep-runs", str(runs / lam),
               grid="smoke_branch")
        for lam in ("1", "3")
    ]  # fmt: skip
    base = _start(*common, "--methods", "CE", "--keep-runs", str(runs / "base"),
                  grid="smoke_branch")  # fmt: skip
    outs = _finish([seed_1, *candidates, base])
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    done = {(r["method"], r["seed"], r["lam"]) for r in rows if r["kind"] == "run"}
    chosen = next(r["lam"] for r in rows if r["kind"] == "lam_selection")
    assert done == {
        ("CE", 0, None),
        ("CE", 1, None),
        ("ABSGD, branched", 0, 1.0),
        ("ABSGD, branched", 0, 3.0),
        ("ABSGD, branched", 1, chosen),
    }
    branches = [r for r in rows if r["kind"] == "run" and r["method"] == "ABSGD, branched"]
    assert all(r["branched_from"]["epoch"] == 1 for r in branches)
    assert all(str(runs / "base") in r["branched_from"]["checkpoint"] for r in branches)
    assert len(list((runs / "s1").glob("*/final.json"))) == 1
    # what a process waits for is said once, not at every look
    assert outs[0].count("λ not chosen yet") == 1


def test_a_grid_run_by_parallel_processes_sharing_its_file_equals_the_sequential_grid(tmp_path):
    sequential, parallel = tmp_path / "seq.jsonl", tmp_path / "par.jsonl"
    _run("grid.py", "smoke", "--out", str(sequential))
    out = str(parallel)
    # phase 1: one process per λ candidate and per seed of the method without λ
    first = _finish(
        [
            _start("--out", out, "--methods", "ABSGD", "--lams", "1"),
            _start("--out", out, "--methods", "ABSGD", "--lams", "3"),
            _start("--out", out, "--methods", "CE", "--only-seeds", "0"),
            _start("--out", out, "--methods", "CE", "--only-seeds", "1"),
        ]
    )
    rows = [json.loads(x) for x in parallel.read_text().splitlines()]
    assert sum(r["kind"] == "run" for r in rows) == 4  # no ABSGD run beyond the candidates
    assert sum(r["kind"] == "lam_selection" for r in rows) >= 1  # the last candidate chose
    assert all("seed 1" not in text for text in first[:2])
    # phase 2: the other seeds of the chosen λ
    _finish([_start("--out", out, "--methods", "ABSGD", "--only-seeds", "1")])

    def runs(path: Path) -> dict:
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        return {
            (r["method"], r["seed"], r["lam"]): r["metrics"]["top1"]
            for r in lines
            if r["kind"] == "run"
        }

    assert runs(parallel) == runs(sequential)  # deterministic on the CPU: the same numbers


def _grid(*args: str, grid: str = "smoke") -> subprocess.CompletedProcess:
    """``grid.py GRID ARGS``, whatever its exit status."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "grid.py"), grid, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_a_candidates_only_process_leaves_the_choice_and_the_seeds_to_others(tmp_path):
    results = tmp_path / "g.jsonl"
    out = _run("grid.py", "smoke", "--out", str(results), "--lams", "1")  # every method
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert [(r["kind"], r["method"], r["lam"], r["seed"]) for r in rows] == [
        ("run", "ABSGD", 1.0, 0)  # no seed of CE, no other seed of ABSGD
    ]
    assert "candidates [3.0] have no line" in out.stdout
    waiting = _grid("--out", str(results), "--methods", "ABSGD", "--only-seeds", "1")
    assert waiting.returncode == 3  # seed 1 left undone: λ is not chosen yet
    assert "candidates [3.0] have no line" in waiting.stdout  # seed 0 is not this process's
    assert len(results.read_text().splitlines()) == 1
    bad = _grid("--out", str(results), "--lams", "2")
    assert bad.returncode == 2 and "--lams [2.0]: no method" in bad.stderr
    bad = _grid("--out", str(results), "--lams", "1", "--only-seeds", "1")
    assert bad.returncode == 2 and "which --only-seeds leaves out" in bad.stderr


def _row(method: str, seed: int, lam, top1: float, device: str | None = None) -> dict:
    env = {"torch": "x"}
    if device is not None:
        env.update(device="cuda", device_name=device)
    metrics = {k: top1 for k in ("top1", "balanced_accuracy", "many", "medium")}
    metrics["per_class_accuracy"] = [top1 + 0.1, top1 - 0.1]  # worst class: top1 - 10 points
    return {
        "kind": "run",
        "grid": "g",
        "setting": "s",
        "method": method,
        "seed": seed,
        "lam": lam,
        "metrics": {**metrics, "few": None},
        "train_wall_seconds": 10.0,
        "environment": env,
    }


def test_summary_keeps_devices_apart_and_marks_an_untuned_lambda(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import tables

    cpu_rows = [
        _row("CE", 0, None, 0.50),
        _row("CE", 1, None, 0.60),
        {**_row("CE", 2, None, 0.0), "metrics": None, "train_wall_seconds": None,
         "diverged": "training diverged in epoch 3"},
        _row("AB", 0, 1.0, 0.10),  # candidate not chosen
        _row("AB", 0, 3.0, 0.70),
        {"kind": "lam_selection", "grid": "g", "setting": "s", "method": "AB", "lam": 3.0,
         "scores": {"1.0": 0.1, "3.0": 0.7}},
    ]  # fmt: skip
    gpu_rows = [  # another file: the selection above does not apply to it
        _row("CE", 0, None, 0.90, device="GPU-X"),
        _row("AB", 0, 5.0, 0.80, device="GPU-X"),  # one candidate, no selection line
    ]
    paths = []
    for name, rows in (("cpu", cpu_rows), ("gpu", gpu_rows)):
        paths.append(tmp_path / f"{name}.jsonl")
        paths[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = tables([str(p) for p in paths])
    cpu, gpu = text.split("### g: s (GPU-X)")
    assert "### g: s (CPU)" in cpu
    # mean ± sample std of 50 % and 60 %: 55.00 ± 7.07
    # the diverged seed is counted apart
    assert "| CE | 55.00 ± 7.07 | 55.00 ± 7.07 | 45.00 ± 7.07 |" in cpu
    assert "| – | 2 (+1 diverged) | – | – | 10 s |" in cpu
    assert "| AB | 70.00 | 70.00 | 60.00 | 70.00 | 70.00 | – | 1 | 3 | – | 10 s |" in cpu
    assert "| CE | 90.00 |" in gpu and "| 5 (fixed) |" in gpu


def test_paired_differences_match_a_hand_computed_t_interval(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import pair_tables

    base = [_row("CE", seed, None, 0.50) for seed in (0, 1, 2)]
    method = [_row("AB", seed, None, 0.50 + d) for seed, d in ((0, 0.01), (1, 0.02), (2, 0.03))]
    method.append(_row("AB", 7, None, 0.99))  # no CE run with seed 7: not paired
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in base + method))
    text = pair_tables([str(path)], [("CE", "AB")])
    # differences 1, 2, 3 points: mean 2, sd 1, t(2) = 4.303 -> half-width 4.303/√3 = 2.484
    assert "| AB − CE | 3 | +2.00 [-0.48, +4.48] |" in text
    assert text.rstrip().endswith("| s0 +1.00, s1 +2.00, s2 +3.00 |")


def test_t_quantile_matches_published_tables_beyond_ten_degrees_of_freedom():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import t_quantile

    # Two-sided quantiles from standard t tables (e.g. NIST/SEMATECH e-Handbook, 1.3.6.7.2).
    published = {
        (1, 0.95): 12.706, (2, 0.95): 4.303, (6, 0.95): 2.447, (10, 0.95): 2.228,
        (13, 0.95): 2.160, (15, 0.95): 2.131, (30, 0.95): 2.042, (6, 0.99): 3.707,
        (6, 0.90): 1.943, (3, 0.98): 4.541, (20, 0.99): 2.845,
    }  # fmt: skip
    for (df, level), value in published.items():
        assert abs(t_quantile(df, level) - value) < 5e-4, (df, level)
    with pytest.raises(ValueError, match=r"strictly between 0 and 1, got 1\.0"):
        t_quantile(5, 1.0)
    with pytest.raises(ValueError, match="positive integer, got 0"):
        t_quantile(0)
    # Cauchy (df = 1): the quantile is tan(π·level/2); far in the tail it still terminates.
    assert abs(t_quantile(1, 0.999999) / 636619.7723 - 1) < 1e-9
    with pytest.raises(ValueError, match="too close to 1"):
        t_quantile(1, 1 - 1e-16)


def test_confidence_option_widens_the_paired_interval(tmp_path):
    base = [_row("CE", seed, None, 0.50) for seed in (0, 1, 2)]
    method = [_row("AB", seed, None, 0.50 + d) for seed, d in ((0, 0.01), (1, 0.02), (2, 0.03))]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in base + method))
    text = _run("summarize.py", str(path), "--pair", "CE", "AB", "--confidence", "0.975").stdout
    # differences 1, 2, 3: sd 1, two-sided 97.5 % t(2) = 6.2053 -> half-width 6.2053/√3 = 3.583
    assert "paired by seed, 97.5 % intervals" in text
    assert "| AB − CE | 3 | +2.00 [-1.58, +5.58] |" in text
    script = str(ROOT / "benchmarks" / "summarize.py")
    bad = subprocess.run(
        [sys.executable, script, str(path), "--confidence", "95"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--confidence must lie strictly between 0 and 1, got 95" in (
        bad.stderr
    )


def test_paired_table_stars_the_seed_whose_run_chose_lambda(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import pair_tables

    rows = [_row("CE", seed, None, 0.50) for seed in (0, 1)]
    rows += [_row("AB", 1, 3.0, 0.55), _row("AB", 1, 10.0, 0.40), _row("AB", 0, 3.0, 0.52)]
    rows.append({"kind": "lam_selection", "grid": "g", "setting": "s", "method": "AB",
                 "lam": 3.0, "seed": 1, "scores": {"3.0": 0.6, "10.0": 0.5}})  # fmt: skip
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = pair_tables([str(path)], [("CE", "AB")])
    # Seed 1 chose λ = 3 among the candidates (its λ = 10 run is not paired); seed 0 did not.
    assert "| AB − CE | 2 | +3.50 [" in text
    assert text.rstrip().endswith("| s0 +2.00, s1* +5.00 |")


def test_per_class_table_pairs_each_class_by_seed_largest_class_first(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summarize import main
    from summary import per_class_tables

    def run(method: str, seed: int, per_class: list[float]) -> dict:
        row = _row(method, seed, None, 0.5)
        row["metrics"].update(per_class_accuracy=per_class, train_class_counts=[10, 90])
        return row

    rows = [
        run("CE", 0, [0.50, 0.90]), run("AB", 0, [0.60, 0.88]),
        run("CE", 1, [0.40, 0.80]), run("AB", 1, [0.52, 0.80]),
        run("CE", 2, [0.30, 0.70]), run("AB", 2, [0.44, 0.69]),
        run("AB", 3, [1.00, 1.00]),  # no CE run with seed 3: not paired
    ]  # fmt: skip
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = per_class_tables([str(path)], [("CE", "AB")])
    lines = [line for line in text.splitlines() if line.startswith("| ") and "class" not in line]
    # The class with 90 images first. Its differences −2, 0, −1 points: mean −1, sd 1,
    # half-width 4.303/√3 = 2.484. Class 0 (10 images): +10, +12, +14: mean +12, sd 2.
    assert lines[0] == "| 1 | 90 | 80.00 ± 10.00 | 79.00 ± 9.54 | -1.00 [-3.48, +1.48] | 0 of 3 |"
    assert lines[1] == "| 0 | 10 | 40.00 ± 10.00 | 52.00 ± 8.00 | +12.00 [+7.03, +16.97] | 3 of 3 |"
    # Runs of one pair that trained on other class counts are not compared.
    rows[1]["metrics"]["train_class_counts"] = [11, 89]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit, match="other class counts"):
        per_class_tables([str(path)], [("CE", "AB")])
    with pytest.raises(SystemExit):  # --per-class without a pair to tabulate
        main([str(path), "--per-class"])


def test_train_prior_pairs_top1_with_the_classes_weighted_as_in_training(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summarize import main
    from summary import pair_tables, train_prior_top1

    # 10 and 90 training images: a_0 = 0.5, a_1 = 0.9 gives (10·0.5 + 90·0.9) / 100 = 0.86
    assert train_prior_top1({"per_class_accuracy": [0.5, 0.9], "train_class_counts": [10, 90]}) == (
        pytest.approx(0.86)
    )
    assert train_prior_top1({"per_class_accuracy": [0.5, 0.9]}) is None  # counts not recorded

    def run(method: str, seed: int, per_class: list[float]) -> dict:
        row = _row(method, seed, None, 0.5)
        row["metrics"].update(per_class_accuracy=per_class, train_class_counts=[10, 90])
        return row

    # AB moves accuracy to the rare class: +20 points there, −10 in the common one, so its
    # balanced accuracy rises while top-1 at the training prior falls by 0.1·20 − 0.9·10 = −7
    rows = [run("CE", s, [0.40 + 0.1 * s, 0.90]) for s in range(3)]
    rows += [run("AB", s, [0.60 + 0.1 * s, 0.80]) for s in range(3)]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = pair_tables([str(path)], [("CE", "AB")], train_prior=True)
    assert "| worst class | top-1 at the training prior | paper-style top-1 |" in text
    assert "| -7.00 [-7.00, -7.00] | – |" in text
    assert "training prior" not in pair_tables([str(path)], [("CE", "AB")])
    with pytest.raises(SystemExit):  # --train-prior without a pair to tabulate
        main([str(path), "--train-prior"])


def test_choose_evaluates_a_selection_rule_per_seed_as_a_method(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summarize import main

    def run(method: str, seed: int, test: float, val: list[float]) -> dict:
        row = _row(method, seed, None, test)
        row["metrics"]["train_class_counts"] = [90, 10]
        row["val"] = {"per_class_accuracy": val, "balanced_accuracy": sum(val) / 2}
        return row

    # validation per class (90 and 10 training images) -> at the training prior / balanced:
    vals = {
        "L": ([0.9, 0.1], [0.8, 0.2], [0.8, 0.2]),  # .82 / .50, .74 / .50, .74 / .50
        "A300": ([0.85, 0.3], [0.82, 0.3], [0.78, 0.38]),  # .795, .768, .74 (a tie: L wins)
        "A100": ([0.8, 0.5], [0.7, 0.6], [0.7, 0.6]),  # balanced .65 in every seed
    }
    tests = {"L": 0.50, "A300": 0.60, "A100": 0.45}
    rows = [run(m, s, tests[m], v[s]) for m, v in vals.items() for s in range(3)]
    rows.append(run("L", 3, 0.5, [0.9, 0.1]))  # seed 3 lacks the other candidates: left out
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [str(path), "--choose", "prior", "L | A300 | A100", "top1_train_prior"]
    args += ["--choose", "bal", "L | A300 | A100", "balanced_accuracy"]
    assert main([*args, "--pair", "L", "prior", "--pair", "L", "bal"]) == 0
    text = capsys.readouterr().out
    assert "| 1 | 74.00 | **76.80** | 69.00 | A300 |" in text
    assert "| 2 | **74.00** | 74.00 | 69.00 | L |" in text
    assert "Chosen: L 2 of 3, A300 1 of 3, A100 0 of 3." in text
    assert "Chosen: L 0 of 3, A300 0 of 3, A100 3 of 3." in text
    # prior chose L, A300, L: differences 0, +10, 0 -> mean 3.33, sd 5.77, t(2) = 4.303
    assert "| prior − L | 3 | +3.33 [-11.01, +17.68] |" in text
    assert "| bal − L | 3 | -5.00 [-5.00, -5.00] |" in text
    assert "| prior | 53.33 ± 5.77 |" in text and "per seed (val top1_train_prior)" in text
    # guarded: the best balanced among the candidates within DROP of L at the training prior.
    # drop 0.03 rules A100 out in every seed (.05 below L) and allows A300 (.025 below, or
    # above): A300 every seed, test +10. Drop 0.05 allows A100 at the bound: the "bal" choice.
    guard = ["--choose", "g3", "L | A300 | A100", "balanced_accuracy"]
    guard += ["--guard", "g3", "top1_train_prior", "0.03"]
    guard += ["--choose", "g5", "L | A300 | A100", "balanced_accuracy"]
    guard += ["--guard", "g5", "top1_train_prior", "0.05"]
    assert main([str(path), *guard, "--pair", "L", "g3", "--pair", "L", "g5"]) == 0
    text = capsys.readouterr().out
    assert "at most 3 points below the first's" in text
    assert "per seed (val balanced_accuracy, top1_train_prior within 3 points)" in text
    assert "| 0 | 50.00 (82.00) | **57.50 (79.50)** | 65.00 (77.00) ✗ | A300 |" in text
    assert "Chosen: L 0 of 3, A300 3 of 3, A100 0 of 3." in text
    assert "| g3 − L | 3 | +10.00 [+10.00, +10.00] |" in text
    assert "| g5 − L | 3 | -5.00 [-5.00, -5.00] |" in text
    # METRIC last: the last listed candidate the guard allows, whatever its scores
    last = ["--choose", "l3", "A100 | L | A300", "last", "--guard", "l3", "balanced_accuracy"]
    assert main([str(path), *last, "0.2", "--pair", "L", "l3"]) == 0
    text = capsys.readouterr().out
    # balanced: A100 .65, L .50, A300 .575 / .56 / .58: all within 0.2 of A100, so A300
    assert "Chosen: A100 0 of 3, L 0 of 3, A300 3 of 3." in text
    assert "l3: the last listed candidate among the candidates whose validation" in text
    assert main([str(path), *last, "0.05", "--pair", "L", "l3"]) == 0  # A100 alone
    assert "Chosen: A100 3 of 3, L 0 of 3, A300 0 of 3." in capsys.readouterr().out
    # METRIC last:SCORE: the last allowed whose validation SCORE is at least the first's. The
    # guard on balanced accuracy allows all three (L .50, A300 .575-.58, A100 .65); at the
    # training prior A100 is below L on every seed, A300 below on seed 0 (.795 < .82), above on
    # seed 1 (.768 > .74) and level on seed 2 (.74): L, A300, A300
    gain = ["--choose", "lg", "L | A300 | A100", "last:top1_train_prior"]
    assert main([str(path), *gain, "--guard", "lg", "balanced_accuracy", "0.2"]) == 0
    text = capsys.readouterr().out
    assert "Chosen: L 1 of 3, A300 2 of 3, A100 0 of 3." in text
    assert "lg: the last listed candidate whose validation top1_train_prior (shown)" in text
    assert "per seed (val last listed with top1_train_prior at least the first's" in text
    # L diverged on seed 2: with no guard score for the first candidate the guarded choice
    # has no bound there, and says it leaves the seed out
    rows = [r for r in rows if (r["method"], r["seed"]) != ("L", 2)]
    rows.append({**run("L", 2, 0.5, [0.8, 0.2]), "metrics": None, "diverged": "diverged"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([str(path), *guard[:8]]) == 0
    captured = capsys.readouterr()
    assert "--choose 'g3': seed 2 left out: the first candidate has no validation" in captured.err
    assert "Chosen: L 0 of 2, A300 2 of 2, A100 0 of 2." in captured.out
    one = ["--choose", "x", "L | A300", "top1"]
    for bad, message in (
        (["--choose", "x", "L", "top1"], "two or more different candidate"),
        (["--choose", "x", "L | A300", "loss"], "metric must be one of"),
        (["--choose", "A100", "L | A300", "top1"], "already has a method of that name"),
        ([*one, "--choose", "x", "L | A100", "top1"], "two choices share a name"),
        ([*one, "--guard", "y", "top1", "0.01"], "--guard 'y': no --choose of that name"),
        ([*one, "--guard", "x", "loss", "0.01"], "--guard 'x': metric must be one of"),
        ([*one, "--guard", "x", "top1", "-1"], "fraction in [0, 1) (0.01 is one point"),
        ([*one, "--guard", "x", "top1", "a"], "DROP must be a fraction in [0, 1)"),
        ([*one, "--guard", "x", "top1", "0.01", "--guard", "x", "top1", "0.02"], "given twice"),
        (["--choose", "x", "L | A300", "last"], "takes the last candidate a guard allows"),
        (["--choose", "x", "L | A300", "last:top1"], "takes the last candidate a guard allows"),
        (["--choose", "x", "L | A300", "last:loss"], "'last:SCORE' with SCORE one of"),
    ):
        with pytest.raises(SystemExit) as info:
            main([str(path), *bad])
        err = capsys.readouterr().err + str(info.value.code)  # argparse's, or SystemExit's text
        assert message in err, (bad, err)


def test_a_confident_guard_reads_the_kept_runs_validation_predictions(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import hashlib

    from grids import GRIDS
    from summarize import main

    from absgd.training.evaluation import Predictions

    grid = GRIDS["smoke_branch"]
    labels = np.array([0] * 50 + [1] * 50)
    runs = tmp_path / "runs"
    # seed 0: DRW wrong on 2 class-0 images CE gets right. Per class d = (two 1s, 48 0s):
    # mean 0.04, variance (2·0.96² + 48·0.04²)/49 = 0.0392; top-1 drop 0.5·0.04 = 0.02, its
    # standard error √(0.25·0.0392/50) = 0.014, the 95 % bound 0.02 + 1.645·0.014 = 0.043.
    # seed 1: the same predictions: drop 0, bound 0.
    predicted = {("CE", 0): labels.copy(), ("CE", 1): labels.copy(), ("DRW", 1): labels.copy()}
    predicted[("DRW", 0)] = labels.copy()
    predicted[("DRW", 0)][:2] = 1
    rows = []
    for (method, seed), pred in predicted.items():
        run = runs / grid.run_name("smoke_branch", "synthetic", method, None, seed)
        run.mkdir(parents=True)
        model, config = f"{method} {seed}".encode(), b"a config"
        (run / "model.pt").write_bytes(model)  # the kept predictions name these bytes
        (run / "config.yaml").write_bytes(config)
        digests = [hashlib.sha256(b).hexdigest() for b in (model, config, b"the images")]
        Predictions(labels, pred, np.array([90, 10]), *digests).save(run / "predictions-val.npz")
        row = {**_row(method, seed, None, 0.5), "grid": "smoke_branch", "setting": "synthetic"}
        top1 = float(np.mean(pred == labels))
        row["val"] = {"top1": top1, "balanced_accuracy": 0.5 if method == "CE" else 0.6}
        row["metrics"]["top1"] = 0.5 if method == "CE" else 0.55
        rows.append(row)
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [str(path), "--choose", "g", "CE | DRW", "balanced_accuracy"]
    args += ["--guard", "g", "top1", "0.03", "--pair", "CE", "g"]
    assert main(args) == 0  # the mean guard: DRW within 3 points on both seeds
    assert "Chosen: CE 0 of 2, DRW 2 of 2." in capsys.readouterr().out
    assert main([*args, "--guard-confidence", "g", "0.95", "--runs", str(runs)]) == 0
    text = capsys.readouterr().out
    assert "| 0 | **50.00 (100.00)** | 60.00 (98.00; +2.00 ± 1.40, ≤ +4.30) ✗ | CE |" in text
    assert "| 1 | 50.00 (100.00) | **60.00 (100.00; +0.00 ± 0.00, ≤ +0.00)** | DRW |" in text
    assert "Chosen: CE 1 of 2, DRW 1 of 2." in text
    assert "at 95 % confidence (✗: ruled out)" in text
    # CE diverged on seed 1: no bound there, the seed is left out, as under the mean guard
    diverged = [
        {**r, "metrics": None, "val": None} if (r["method"], r["seed"]) == ("CE", 1) else r
        for r in rows
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in diverged))
    assert main([*args[:9], "--guard-confidence", "g", "0.95", "--runs", str(runs)]) == 0
    captured = capsys.readouterr()
    assert "--choose 'g': seed 1 left out: the first candidate has no validation top1" in (
        captured.err
    )
    assert "Chosen: CE 1 of 1, DRW 0 of 1." in captured.out
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for bad, message in (
        (["--guard-confidence", "g", "0.95"], "pass --runs"),
        (["--guard-confidence", "g", "1.5", "--runs", str(runs)], "level in [0.5, 1)"),
        (["--guard-confidence", "h", "0.95", "--runs", str(runs)], "no --guard of that name"),
        (["--guard-confidence", "g", "x", "--runs", str(runs)], "got 'x'"),
        (["--guard-confidence", "g", "0.9", "--guard-confidence", "g", "0.95"], "given twice"),
        (["--guard-confidence", "g", "0.95", "--runs", str(tmp_path)], "holds the run"),
    ):
        with pytest.raises(SystemExit) as info:
            main([*args, *bad])
        err = capsys.readouterr().err + str(info.value.code)
        assert message in err, (bad, err)


def test_paired_drops_sets_validation_against_test_in_units_of_their_errors(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import hashlib

    from grids import GRIDS
    from paired_drops import main

    from absgd.training.evaluation import Predictions

    grid = GRIDS["smoke_branch"]
    runs = tmp_path / "runs"
    labels = {"val": np.array([0] * 50 + [1] * 50), "test": np.array([0] * 100 + [1] * 100)}

    def kept(method: str, wrong: dict[str, int]) -> None:
        run = runs / grid.run_name("smoke_branch", "synthetic", method, None, 0)
        run.mkdir(parents=True)
        model, config = method.encode(), b"a config"
        (run / "model.pt").write_bytes(model)
        (run / "config.yaml").write_bytes(config)
        for split, y in labels.items():
            pred = y.copy()
            pred[: wrong[split]] = 1  # wrong on the first class-0 images
            counts = np.array([1, 1])  # top-1 at an even prior: the balanced score
            digests = [hashlib.sha256(b).hexdigest() for b in (model, config, split.encode())]
            Predictions(y, pred, counts, *digests).save(run / f"predictions-{split}.npz")

    kept("CE", {"val": 0, "test": 0})
    kept("DRW", {"val": 2, "test": 4})
    args = ["smoke_branch", "--base", "CE", "--methods", "DRW", "--seeds", "0"]
    assert main([*args, "--runs", str(runs)]) == 0
    text = capsys.readouterr().out
    # val: class 0's d has two 1s in 50: drop 0.5·0.04 = 2 points, se √(0.25·0.0392/50) = 1.40
    # test: four 1s in 100: drop 0.5·0.04 = 2 points, variance (4·0.96² + 96·0.04²)/99 =
    # 0.03879, se √(0.25·0.03879/100) = 0.98; the gap 0: z = 0
    assert "| DRW | 0 | +2.00 ± 1.40 | +2.00 ± 0.98 | +0.00 | +0.00 |" in text
    assert "root mean square z 0.00" in text and "|z| > 1.96 on 0" in text
    with pytest.raises(SystemExit) as info:
        main([*args, "--runs", str(tmp_path / "none")])
    assert "holds the run" in str(info.value.code)
    # A run the results record as diverged (grid.py keeps no model for it) is listed as such
    # and left out; without --results its missing model is an error that names the cause.
    results = tmp_path / "results.jsonl"
    line = {"kind": "run", "grid": "smoke_branch", "setting": "synthetic", "seed": 0}
    line["method"] = "DRW, branched"
    other = {**line, "setting": "another", "method": "DRW"}  # not this setting: ignored
    results.write_text(
        "\n".join(json.dumps({**row, "diverged": "NaN losses"}) for row in (line, other)) + "\n"
    )
    more = [*args[:4], "DRW", "DRW, branched", *args[5:], "--runs", str(runs)]
    with pytest.raises(SystemExit) as info:
        main(more)
    assert "diverged keeps none" in str(info.value.code)
    assert main([*more, "--results", str(results)]) == 0
    text = capsys.readouterr().out
    assert "| DRW | 0 | +2.00 ± 1.40 | +2.00 ± 0.98 | +0.00 | +0.00 |" in text
    assert "| DRW, branched | 0 | DRW, branched diverged | – | – | – |" in text
    assert "DRW, branched: 0 seeds" not in text  # nothing left to summarise
    with pytest.raises(SystemExit):
        main(["smoke_branch", "--base", "CE", "--methods", "ABSGD", "--seeds", "0", "--runs", "x"])
    assert "chooses λ among candidates" in capsys.readouterr().err


def test_summarize_seeds_reads_only_the_runs_of_those_seeds(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summarize import main

    # AB − CE by seed: +1, +2, +3 points on seeds 0-2, +10 on seeds 5 and 6 (held out)
    diffs = {0: 0.01, 1: 0.02, 2: 0.03, 5: 0.10, 6: 0.10}
    rows = [_row("CE", s, None, 0.5) for s in diffs]
    rows += [_row("AB", s, None, 0.5 + d) for s, d in diffs.items()]
    rows.append({"kind": "lam_selection", "grid": "g", "setting": "s", "method": "AB",
                 "lam": None, "scores": {}})  # fmt: skip
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([str(path), "--pair", "CE", "AB", "--seeds", "5", "6"]) == 0
    text = capsys.readouterr().out
    assert "| AB − CE | 2 | +10.00 [+10.00, +10.00] |" in text
    assert (
        "| CE | 50.00 ± 0.00 | 50.00 ± 0.00 | 40.00 ± 0.00 | 50.00 ± 0.00 | 50.00 ± 0.00 | – | 2 |"
        in text
    )
    assert "| AB | 60.00 ± 0.00 |" in text  # seeds 5 and 6 only (all five seeds: 55.20)
    assert main([str(path), "--pair", "CE", "AB", "--seeds", "0", "1", "2"]) == 0
    assert "| AB − CE | 3 | +2.00 [-0.48, +4.48] |" in capsys.readouterr().out
    assert path.read_text().count("\n") == len(rows)  # the file itself is untouched
    with pytest.raises(SystemExit):
        main([str(path), "--pair", "CE", "AB", "--seeds", "5", "7"])
    assert "no run of seed(s) [7]" in capsys.readouterr().err
    # a seed that only some methods have: those without it are named
    path.write_text(
        "".join(json.dumps(r) + "\n" for r in rows if (r.get("method"), r.get("seed")) != ("AB", 6))
    )
    assert main([str(path), "--pair", "CE", "AB", "--seeds", "5", "6"]) == 0
    captured = capsys.readouterr()
    assert "--seeds: g, s, 'AB' has no run of seed(s) [6]" in captured.err
    assert "| AB − CE | 1 |" in captured.out


def test_summarize_settings_reads_only_the_lines_of_those_settings(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summarize import main

    # setting s: AB − CE +1 and +3 points (seeds 0, 1); setting r: +20 on both seeds
    rows = []
    for setting, diffs in (("s", {0: 0.01, 1: 0.03}), ("r", {0: 0.20, 1: 0.20})):
        for seed, d in diffs.items():
            rows += [{**_row("CE", seed, None, 0.5), "setting": setting}]
            rows += [{**_row("AB", seed, None, 0.5 + d), "setting": setting}]
        rows.append({"kind": "lam_selection", "grid": "g", "setting": setting, "method": "AB",
                     "lam": None, "scores": {}})  # fmt: skip
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([str(path), "--pair", "CE", "AB", "--settings", "s"]) == 0
    text = capsys.readouterr().out
    assert "| AB − CE | 2 | +2.00 [-10.71, +14.71] |" in text  # t(0.975, 1) = 12.706
    assert "+20.00" not in text and "g: r" not in text
    assert main([str(path), "--pair", "CE", "AB", "--settings", "r", "--seeds", "1"]) == 0
    text = capsys.readouterr().out
    assert "| AB − CE | 1 | +20.00 (1 seed) |" in text and "g: s" not in text
    with pytest.raises(SystemExit):
        main([str(path), "--settings", "exp, ratio 10"])
    assert "no run of setting(s) ['exp, ratio 10']" in capsys.readouterr().err


def test_choose_passes_over_a_diverged_candidate_and_treats_rounding_as_a_tie(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import method_groups, parse_choice

    def run(method: str, seed: int, val: list[float] | None) -> dict:
        row = _row(method, seed, None, 0.5)
        row["metrics"]["train_class_counts"] = [10] * len(val or [0])
        row["val"] = None if val is None else {"per_class_accuracy": val}
        return row

    # seed 0: B diverged (no metrics), so A wins though B comes first; seed 1: the balanced
    # scores differ only by summation order (0.804 vs 0.8039999999999999): a tie, B listed first
    a = [0.8, 0.82, 0.78, 0.8, 0.84, 0.76, 0.8, 0.82, 0.78, 0.84]
    b = [0.82, 0.78, 0.82, 0.76, 0.8, 0.84, 0.78, 0.8, 0.84, 0.8]
    rows = [
        {**run("B", 0, None), "metrics": None, "diverged": "training diverged"},
        run("A", 0, [0.1] * 10),
        run("B", 1, b),
        run("A", 1, a),
    ]
    for r, per_class in zip(rows[1:], ([0.1] * 10, b, a), strict=True):
        r["val"]["balanced_accuracy"] = sum(per_class) / 10
    assert rows[2]["val"]["balanced_accuracy"] != rows[3]["val"]["balanced_accuracy"]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    choice = parse_choice("pick", "B | A", "balanced_accuracy")
    (methods,) = method_groups([str(path)], None, [choice]).values()
    assert [(r["seed"], r["_chosen_from"]) for r in methods["pick"]] == [(0, "A"), (1, "B")]
    assert methods["pick"][0]["_choice_scores"]["B"] is None
    # two runs of one seed for a candidate: refused, not one of them silently taken
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, run("A", 1, a)]))
    with pytest.raises(SystemExit, match="two runs of seed 1"):
        method_groups([str(path)], None, [choice])


def test_candidates_of_an_unfinished_selection_are_not_averaged_together(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import tables

    rows = [
        {**_row("AB", 0, 0.9, 0.80), "param": "objective.target_ess"},
        {**_row("AB", 0, 0.7, 0.60), "param": "objective.target_ess"},
    ]  # seed 0's candidates ran, the selection line is not written yet
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = tables([str(path)])
    assert "| AB [target_ess=0.9, not selected yet] | 80.00 |" in text
    assert "| AB [target_ess=0.7, not selected yet] | 60.00 |" in text
    assert "| 0.9 (candidate) |" in text and "(fixed)" not in text


def test_after_switch_reports_the_lowest_ess_and_the_largest_drop(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import after_switch

    curve = [
        {"epoch": 1, "ess": 1.0, "val_balanced_accuracy": 0.70},
        {"epoch": 2, "ess": 1.0, "val_balanced_accuracy": 0.80},  # last plain epoch (0-based 1)
        {"epoch": 3, "ess": 0.40, "val_balanced_accuracy": 0.55},
        {"epoch": 4, "ess": 0.60, "val_balanced_accuracy": 0.85},
    ]
    row = {"config": {"objective": {"lam_switch": 2}}, "curve": curve}
    low, drop = after_switch(row)
    assert low == 0.40 and drop == pytest.approx(25.0)  # 80 % at the switch, 55 % after
    assert after_switch({"config": {"objective": {"lam_switch": None}}, "curve": curve}) == (
        None,
        None,
    )


def test_the_step_scale_column_appears_where_runs_recorded_it(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import candidate_tables, largest_step_scale, switch_tables

    def run(lam: float, scales: list[float] | None) -> dict:
        curve = [{"epoch": e, "ess": 0.9, "val_balanced_accuracy": 0.5} for e in (1, 2, 3)]
        for e, s in zip(curve, scales or [], strict=False):
            e["step_scale"] = s
        return {**_row("ABSGD", 0, lam, 0.5), "param": "objective.lam",
                "val": {"balanced_accuracy": 0.5}, "curve": curve,
                "config": {"objective": {"lam_switch": 1}}}  # fmt: skip

    # epoch 1 is before the switch: its scale (9.0) is not the largest after it
    recorded = run(1.0, [9.0, 4.25, 2.0])
    assert largest_step_scale(recorded) == 4.25
    assert largest_step_scale(run(3.0, None)) is None  # a run made before the scale existed
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (recorded, run(3.0, None))))
    text = switch_tables([str(path)])
    assert (
        "| method | lowest ESS | largest validation drop (points) | largest step scale | runs |"
        in text
    )
    assert "| ABSGD [lam=1, not selected yet] | 0.900 | none (+0.0) | 4.25 | 1 |" in text
    assert "| ABSGD [lam=3, not selected yet] | 0.900 | none (+0.0) | – | 1 |" in text
    table = candidate_tables([str(path)])
    assert "| 1 | 50.0 | 50.00 | 40.0 | – | 0.900 | none (+0.0) | 4.25 |" in table
    assert "| 3 | 50.0 | 50.00 | 40.0 | – | 0.900 | none (+0.0) | – |" in table
    # without any recorded scale the tables keep their columns
    path.write_text(json.dumps(run(3.0, None)) + "\n")
    assert "step scale" not in switch_tables([str(path)])


def test_the_warnings_column_counts_the_runs_that_drew_each_kind(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import candidate_tables, switch_tables, warning_kinds

    def run(lam: float, seed: int, kinds: list[str] | None) -> dict:
        curve = [{"epoch": e, "ess": 0.9, "val_balanced_accuracy": 0.5} for e in (1, 2)]
        drawn = None if kinds is None else [{"kind": k, "epoch": 2, "text": "…"} for k in kinds]
        return {**_row("ABSGD", seed, lam, 0.5), "param": "objective.lam", "curve": curve,
                "val": {"balanced_accuracy": 0.5}, "warnings": drawn,
                "config": {"objective": {"lam_switch": 1}}}  # fmt: skip

    # in one order whatever the order drawn
    assert warning_kinds(run(1.0, 0, ["large_step", "low_ess"])) == ["low ESS", "large step"]
    assert warning_kinds(run(1.0, 0, [])) == [] and warning_kinds(run(1.0, 0, None)) is None
    rows = [run(1.0, 0, ["large_step", "low_ess"]), run(1.0, 1, ["low_ess"]),
            run(1.0, 2, []), run(3.0, 0, []), run(3.0, 1, None), run(10.0, 0, None)]  # fmt: skip
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = switch_tables([str(path)])
    head = "| method | lowest ESS | largest validation drop (points) | warnings (runs) | runs |"
    assert head in text
    # low ESS in two of the three seeds of λ = 1, large step in one
    lam1 = "| ABSGD [lam=1, not selected yet] | 0.900 | none (+0.0) | low ESS 2, large step 1 | 3 |"
    assert lam1 in text
    # one of λ = 3's two runs recorded its warnings (none), the other predates them
    assert "| ABSGD [lam=3, not selected yet] | 0.900 | none (+0.0) | none (of 1) | 2 |" in text
    assert "| ABSGD [lam=10, not selected yet] | 0.900 | none (+0.0) | – | 1 |" in text
    table = candidate_tables([str(path)])
    assert "| 1 | 50.0 | 50.00 | 40.0 | – | 0.900 | none (+0.0) | low ESS, large step |" in table
    assert "| 3 | 50.0 | 50.00 | 40.0 | – | 0.900 | none (+0.0) | none |" in table
    assert "| 10 | 50.0 | 50.00 | 40.0 | – | 0.900 | none (+0.0) | – |" in table


def test_candidate_table_lists_each_lambda_on_the_seed_that_chose(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import candidate_tables, drop_text

    def run(lam: float, seed: int, val: float, test: float, vals: list[float]) -> dict:
        row = _row("ABSGD", seed, lam, test)
        curve = [{"epoch": e, "ess": 0.5 + 0.1 * e, "val_balanced_accuracy": v}
                 for e, v in enumerate(vals, 1)]  # fmt: skip
        return {**row, "param": "objective.lam", "val": {"balanced_accuracy": val},
                "curve": curve, "config": {"objective": {"lam_switch": 1}}}  # fmt: skip

    rows = [
        run(1.0, 0, 0.40, 0.50, [0.60, 0.50, 0.70]),  # fell 10 points after the switch
        run(3.0, 0, 0.45, 0.52, [0.60, 0.62, 0.65]),  # never fell: smallest rise 2 points
        run(3.0, 1, 0.47, 0.90, [0.60, 0.61, 0.66]),  # another seed: not a candidate row
        {"kind": "lam_selection", "grid": "g", "setting": "s", "method": "ABSGD", "lam": 3.0,
         "param": "objective.lam", "metric": "val balanced_accuracy", "seed": 0,
         "scores": {"1.0": 0.40, "3.0": 0.45}},
    ]  # fmt: skip
    path = tmp_path / "g.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = candidate_tables([str(path)])
    assert "ABSGD: the lam candidates, seed 0" in table
    lines = [x for x in table.splitlines() if x.startswith("| 1 ") or x.startswith("| **3")]
    assert lines == [
        "| 1 | 40.0 | 50.00 | 40.0 | – | 0.700 | 10.0 |",
        "| **3** | 45.0 | 52.00 | 42.0 | – | 0.700 | none (+2.0) |",
    ]
    assert "90.00" not in table  # seed 1 did not choose
    assert drop_text(None) == "–" and drop_text(0.0) == "none (+0.0)"


def test_lam_scale_table_divides_lambda_by_the_loss_at_the_switch(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import lam_scale_table

    def run(lam: float, seed: int, loss: float, ess: list[float]) -> dict:
        curve = [
            {"epoch": 1, "train_loss": 2.0, "ess": 1.0},
            {"epoch": 2, "train_loss": loss, "ess": 1.0},
        ]  # switch after epoch 2
        curve += [{"epoch": 3 + i, "train_loss": 9.0, "ess": e} for i, e in enumerate(ess)]
        return {**_row("ABSGD", seed, lam, 0.5), "param": "objective.lam",
                "val": {"balanced_accuracy": 0.6}, "curve": curve,
                "config": {"objective": {"lam_switch": 2}}}  # fmt: skip

    rows = [
        run(1.0, 0, 0.5, [0.25, 0.20, 0.40]),  # λ / loss = 2; first 0.25, lowest 0.20, last 0.40
        run(3.0, 0, 0.5, [0.80, 0.90]),
        run(3.0, 1, 0.1, [0.10, 0.10]),  # another seed: not listed
        {"kind": "lam_selection", "grid": "g", "setting": "s", "method": "ABSGD", "lam": 3.0,
         "param": "objective.lam", "metric": "val balanced_accuracy", "seed": 0,
         "scores": {"1.0": 0.40, "3.0": 0.45}},
        {**run(0.7, 0, 0.5, [0.5]), "method": "ABSGD-ESS", "param": "objective.target_ess"},
        # one fixed λ, no selection line; a diverged candidate without metrics or ESS
        {**run(5.0, 0, 0.25, [0.5]), "method": "ABSGD fixed"},
        {**run(1.0, 0, 0.5, []), "method": "ABSGD two", "metrics": None},
        {**run(9.0, 0, 0.5, [0.9]), "method": "ABSGD two"},
        # blew up after the switch (no epoch with an ESS) but kept a pre-switch model's metrics
        {**run(2.0, 0, 0.5, [None, None]), "method": "ABSGD three"},
    ]  # fmt: skip
    path = tmp_path / "grid_a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = [x for x in lam_scale_table([str(path)]).splitlines() if x.startswith("| grid_a")]
    assert lines == [
        "| grid_a | s (CPU) | ABSGD | 1 | 0.500 | 2.0 | 0.250 | 0.200 | 0.400 | 40.0 |",
        "| grid_a | s (CPU) | ABSGD | **3** | 0.500 | 6.0 | 0.800 | 0.800 | 0.900 | 45.0 |",
        "| grid_a | s (CPU) | ABSGD fixed | 5 | 0.250 | 20.0 | 0.500 | 0.500 | 0.500 | 60.0 |",
        "| grid_a | s (CPU) | ABSGD two | 1 | 0.500 | 2.0 | diverged | diverged | diverged | 60.0 |",  # noqa: E501
        "| grid_a | s (CPU) | ABSGD two | 9 | 0.500 | 18.0 | 0.900 | 0.900 | 0.900 | 60.0 |",
        "| grid_a | s (CPU) | ABSGD three | 2 | 0.500 | 4.0 | diverged | diverged | diverged | 60.0 |",  # noqa: E501
    ]  # the target-ESS method has no fixed λ: left out
    assert lam_scale_table([str(tmp_path / "grid_a.jsonl")]).count("ABSGD-ESS") == 0


def test_curve_table_gives_mean_test_accuracy_by_epoch_and_the_fall_from_the_best(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import curve_tables

    def with_curve(seed: int, tests: list[float | None], vals: list[float]) -> dict:
        curve = [
            {"epoch": e, "test_top1": t, "val_balanced_accuracy": v}
            for e, (t, v) in enumerate(zip(tests, vals, strict=True), start=1)
        ]
        return {**_row("CE", seed, None, 0.5), "curve": curve}

    rows = [
        # best test 80 at epoch 2, last 65: fall 15; best validation at epoch 3: test 70
        with_curve(0, [0.60, 0.80, 0.70, 0.65], [0.1, 0.3, 0.4, 0.2]),
        # epoch 3 not evaluated; fall 5; validation ties at epochs 1 and 2: the first, test 70
        with_curve(1, [0.70, 0.75, None, 0.70], [0.5, 0.5, 0.2, 0.1]),
        {**_row("AB", 0, 1.0, 0.5), "curve": [{"epoch": 1}]},  # no test curve: no row
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = curve_tables([str(path)], every=2)
    assert "| method | ep. 2 | ep. 4 | best → last (points) | at best val. epoch | seeds |" in text
    # epoch 2: (80 + 75) / 2; epoch 4: (65 + 70) / 2; falls -15 and -5: mean -10, sd 7.07;
    # early stopping: 70 and 70
    assert "| CE | 77.5 | 67.5 | -10.00 ± 7.07 | 70.00 ± 0.00 | 2 |" in text
    assert "| AB |" not in text
    # every=3: epoch 3 is missing for seed 1, so its mean is not shown
    assert "| CE | – | 67.5 |" in curve_tables([str(path)], every=3)


def test_online_benchmark_runs_on_a_short_stream(tmp_path):
    env_root = os.environ.get("ABSGD_SHARED_DATA")
    root = (Path(env_root) if env_root else ROOT.parent / "shared" / "data") / "fashion-mnist"
    if not root.is_dir():
        pytest.skip(f"Fashion-MNIST not found at {root} (set ABSGD_SHARED_DATA)")
    out = tmp_path / "online.jsonl"
    text = _run(
        "online.py", "--data-root", str(root), "--out", str(out), "--seeds", "0", "--limit", "96"
    ).stdout
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    # 2 streams × (CE, focal, running CB, ABSGD and ABSGD-ESS with each of their candidates)
    methods = {(r["stream"], r["method"]) for r in rows}
    assert len(methods) == 10 and all(r["environment"]["torch"] for r in rows)
    assert all(sum(r["stream_class_counts"]) == 96 for r in rows)
    assert len(rows) == 2 * (3 + 5 + 3)
    for stream in ("long-tailed", "drifting"):
        for method in ("ABSGD", "ABSGD-ESS"):
            here = [r for r in rows if r["stream"] == stream and r["method"] == method]
            (chosen,) = [r for r in here if r.get("chosen")]
            assert chosen["val_balanced"] == max(r["val_balanced"] for r in here)
    assert "ABSGD-ESS" in text and "method − CE" in text


def test_shot_groups_are_recomputed_from_per_class_accuracy():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import shot_accuracies

    metrics = {
        "per_class_accuracy": [1.0, 0.8, 0.5, 0.3, 0.0],
        "train_class_counts": [5000, 1001, 1000, 200, 199],
    }
    # > 1000: 5000, 1001; 200..1000: 1000, 200; < 200: 199
    assert shot_accuracies(metrics, 1000, 200) == {"many": 0.9, "medium": 0.4, "few": 0.0}
    assert shot_accuracies(metrics, 10_000, 100)["many"] is None


def test_a_diverged_run_is_recorded_and_the_grid_goes_on(tmp_path):
    results = tmp_path / "smoke.jsonl"
    _run("grid.py", "smoke", "--out", str(results), "--methods", "CE", "--set", "optim.lr=1e12")
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert [r["seed"] for r in rows] == [0, 1]  # both seeds ran
    assert all(r["metrics"] is None and "diverged in epoch" in r["diverged"] for r in rows)
    table = _run("summarize.py", str(results)).stdout
    assert "| CE | – | – | – | – | – | – | 0 (+2 diverged) |" in table


def test_every_grid_run_resolves_to_a_valid_config():
    # Every (setting, method, candidate) of every grid is a config the trainer accepts, with
    # an objective its builders accept, so a grid cannot fail hours into a run on a typo.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from grids import GRIDS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from absgd.cli import SHIPPED_CONFIGS
    from absgd.training.build import build_objective_for
    from absgd.training.config import load_config

    counts = np.arange(10, 0, -1) * 10
    checked = 0
    for grid in GRIDS.values():
        for setting_overrides in grid.settings.values():
            for method in grid.methods.values():
                base = [*grid.common, *setting_overrides, *method.overrides]
                for candidate in method.lams or (None,):
                    extra = [] if candidate is None else [f"{method.param}={candidate}"]
                    cfg = load_config(SHIPPED_CONFIGS / f"{grid.config}.yaml", [*base, *extra])
                    build_objective_for(cfg.objective, counts)  # options the builders accept
                    checked += 1
    assert checked > 100


def _wave_plan(tmp_path: Path, jobs: list[tuple[str, list[str]]], grid: str = "smoke") -> Path:
    plan = tmp_path / "plan.json"
    out = [grid, "--out", "{work}/wave.jsonl"]
    plan.write_text(json.dumps([{"name": n, "args": out + a} for n, a in jobs]))
    return plan


def test_gpu_wave_runs_its_jobs_together_and_packs_their_lines(tmp_path):
    # ABSGD with --seeds 1 --lams 1: a seed of a candidate run before the choice (the
    # speculative second wave); its line is the seed-1 line that seed 0's choice of λ = 1 uses.
    plan = _wave_plan(
        tmp_path,
        [
            ("ce", ["--methods", "CE", "--only-seeds", "0"]),
            ("ab", ["--methods", "ABSGD", "--lams", "1", "--seeds", "1"]),
        ],
    )
    work, packed = tmp_path / "w", tmp_path / "out"
    args = ("--work", str(work), "--budget", "600", "--stop-in", "300", "--pack", str(packed))
    _run("gpu_wave.py", str(plan), *args, "--epochs", "2")
    rows = [json.loads(x) for x in (packed / "wave.jsonl").read_text().splitlines()]
    assert sorted((r["method"], r["seed"], r["lam"]) for r in rows) == [
        ("ABSGD", 1, 1.0),
        ("CE", 0, None),
    ]
    state = json.loads((packed / "state.json").read_text())
    assert [(j["name"], j["fate"], j["epochs"]) for j in state["jobs"]] == [
        ("ce", "ended", 2),
        ("ab", "ended", 2),
    ]
    with tarfile.open(packed / "runs.tar.gz") as tar:
        names = tar.getnames()
    assert sum(n.endswith("metrics.jsonl") for n in names) == 2
    assert {"logs/ce.log", "logs/ab.log"} <= set(names)
    assert not list(packed.glob("checkpoints.part*"))  # nothing unfinished


def test_gpu_wave_runs_a_branch_beside_its_base(tmp_path):
    # the branch waits for the base's checkpoint: its runs in its own folder, the base's
    # given by --base-runs
    branch = ["--methods", "ABSGD, branched", "--lams", "1", "--base-runs", "{work}/runs/base"]
    plan = _wave_plan(
        tmp_path,
        [
            ("base", ["--methods", "CE", "--only-seeds", "0"]),
            ("branch", [*branch, "--wait", "300"]),
        ],
        grid="smoke_branch",
    )
    work, packed = tmp_path / "w", tmp_path / "out"
    args = ("--work", str(work), "--budget", "600", "--stop-in", "300", "--pack", str(packed))
    _run("gpu_wave.py", str(plan), *args, "--epochs", "2", "--protect", "0")
    rows = [json.loads(x) for x in (packed / "wave.jsonl").read_text().splitlines()]
    lines = {(r["method"], r["seed"], r["lam"]): r for r in rows}
    assert set(lines) == {("CE", 0, None), ("ABSGD, branched", 0, 1.0)}
    source = lines[("ABSGD, branched", 0, 1.0)]["branched_from"]["checkpoint"]
    assert source.startswith(str(work / "runs" / "base"))
    state = json.loads((packed / "state.json").read_text())
    assert [j["fate"] for j in state["jobs"]] == ["ended", "ended"]


def test_gpu_wave_tells_a_waiting_job_by_its_last_output_line(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_wave import _waiting
        from grid import WAITING_MARK
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    log = tmp_path / "job.log"
    assert not _waiting(log)  # no output yet: starting
    log.write_text(f"[s] B seed 0: waits for x/checkpoint-epoch1.pt (...) {WAITING_MARK}\n")
    assert _waiting(log)
    with open(log, "a") as fh:  # then it trains: a run's line, then its warnings
        fh.write("[s] B seed 0 ...\nUserWarning: the effective sample size ...\n")
    assert not _waiting(log)


def _gpu_wave():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_wave
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return gpu_wave


def test_gpu_wave_measures_a_rate_over_its_window_only():
    rate = _gpu_wave().rate
    samples: list = []
    assert rate(samples, 0.0, 0, window=10) is None  # one sample
    assert rate(samples, 4.0, 0, window=10) is None  # no epoch ended yet
    assert rate(samples, 8.0, 2, window=10) == 2 / 8
    # the sample at 0 s falls out of the window: (5 - 0) epochs over 12 - 4 seconds
    assert rate(samples, 12.0, 5, window=10) == 5 / 8
    assert [t for t, _ in samples] == [4.0, 8.0, 12.0]


def test_gpu_wave_chooses_which_job_to_stop_on_a_scripted_clock():
    choose = _gpu_wave().choose_stop

    def jobs(*specs):  # (name, fate, projected end or None)
        out = []
        for name, fate, end in specs:
            job = {"name": name, "fate": fate}
            if end is not None:
                job["projected_end_s"] = end
            out.append(job)
        return out

    never = lambda job: False  # noqa: E731
    plan = jobs(("a", "running", 50.0), ("b", "running", 120.0), ("c", "running", 90.0))
    kw = dict(budget=100.0, window=10.0, protect=1, waiting=never)
    # b is projected past the budget; nothing is stopped during the first two windows
    assert choose(plan, since_launch=20.0, since_last_stop=math.inf, **kw) is None
    # then the last-listed running job goes first, though b is the late one
    assert choose(plan, since_launch=21.0, since_last_stop=math.inf, **kw)["name"] == "c"
    # at most one every 0.75 window
    plan[2]["fate"] = "stopped"
    assert choose(plan, since_launch=25.0, since_last_stop=7.5, **kw) is None
    assert choose(plan, since_launch=29.0, since_last_stop=7.6, **kw)["name"] == "b"
    # the protected first job is never stopped, however late
    plan[1]["fate"] = "stopped"
    plan[0]["projected_end_s"] = 1e9
    assert choose(plan, since_launch=60.0, since_last_stop=math.inf, **kw) is None
    # no projection yet (no epoch ended in the window): not late
    fresh = jobs(("a", "running", None), ("b", "running", None))
    assert choose(fresh, since_launch=60.0, since_last_stop=math.inf, **kw) is None
    # ended jobs are not stopped and their stale projections do not count
    done = jobs(("a", "running", 50.0), ("b", "ended", 500.0), ("c", "ended", 60.0))
    assert choose(done, since_launch=60.0, since_last_stop=math.inf, **kw) is None
    done[1]["fate"], done[2]["fate"] = "running", "ended"  # b is late and may be stopped
    assert choose(done, since_launch=60.0, since_last_stop=math.inf, **kw)["name"] == "b"
    done[1]["fate"], done[2]["projected_end_s"] = "ended", 1e9  # only an ended job is late
    assert choose(done, since_launch=60.0, since_last_stop=math.inf, **kw) is None


def test_gpu_wave_stops_no_job_while_those_it_may_stop_only_wait():
    choose = _gpu_wave().choose_stop
    plan = [
        {"name": "first", "fate": "running", "projected_end_s": 1e6},
        {"name": "waiter", "fate": "running"},
        {"name": "third", "fate": "running", "projected_end_s": 1e6},
    ]
    waits = lambda job: job["name"] == "waiter"  # noqa: E731
    kw = dict(since_launch=100.0, budget=5.0, window=4.0, protect=1, waiting=waits)
    # a job that may be stopped trains: the last listed goes, waiting or not
    assert choose(plan, since_last_stop=math.inf, **kw)["name"] == "third"
    plan[2]["fate"] = "stopped at 9.0 s (budget)"
    # then only the waiting one is left to stop, and it takes no GPU: none is stopped
    assert choose(plan, since_last_stop=math.inf, **kw) is None
    # once it trains, it is stopped
    kw["waiting"] = lambda job: False
    assert choose(plan, since_last_stop=math.inf, **kw) == plan[1]


def test_gpu_wave_stops_the_last_listed_job_first_and_keeps_the_protected_one(tmp_path):
    slow = ["--set", "train.epochs=100000"]
    plan = _wave_plan(
        tmp_path,
        [
            ("first", ["--methods", "CE", "--only-seeds", "0", *slow]),
            ("second", ["--methods", "CE", "--only-seeds", "1", *slow]),
            ("third", ["--methods", "ABSGD", "--lams", "1", *slow]),
        ],
    )
    work, packed = tmp_path / "w", tmp_path / "out"
    # A rate needs an epoch to end within the window. Short calls, each watching the jobs the
    # first launched, until both stops happened: a slow start under load only takes longer.
    common = ("--work", str(work), "--budget", "5", "--window", "3", "--epochs", "100000")
    try:
        pids = None
        for _ in range(40):
            _run("gpu_wave.py", str(plan), *common, "--stop-in", "8", "--pack", str(packed),
                 "--checkpoints")  # fmt: skip
            state = json.loads((work / "state.json").read_text())
            # later calls watch the same jobs: nothing is launched again
            assert pids is None or [j["pid"] for j in state["jobs"]] == pids
            pids = [j["pid"] for j in state["jobs"]]
            if sum(j["fate"].startswith("stopped") for j in state["jobs"]) == 2:
                break
        else:
            pytest.fail(f"two jobs were not stopped in 40 calls: {state['jobs']}")
        _run("gpu_wave.py", str(plan), *common, "--stop-in", "0")  # one more call: no launch
        again = json.loads((work / "state.json").read_text())
        assert [j["pid"] for j in again["jobs"]] == pids
        fates = {j["name"]: j["fate"] for j in state["jobs"]}
        assert fates["first"] == "running"  # protected (--protect 1), outlives the call
        stopped = {n: float(f.split()[2]) for n, f in fates.items() if f.startswith("stopped")}
        assert set(stopped) == {"second", "third"} and stopped["third"] < stopped["second"]
        with tarfile.open(packed / "runs.tar.gz") as tar:
            assert "logs/third.log" in tar.getnames()
        parts = sorted(packed.glob("checkpoints.part*"))
        with tarfile.open(fileobj=io.BytesIO(b"".join(p.read_bytes() for p in parts))) as tar:
            saved = [n for n in tar.getnames() if n.endswith("checkpoint.pt")]
            configs = [n for n in tar.getnames() if n.endswith("/config.yaml")]
        # each with its run's config beside it (what a resume reads)
        assert sorted(configs) == sorted(n.replace("checkpoint.pt", "config.yaml") for n in saved)
        # Every unfinished run's checkpoint that exists: each run that ended an epoch has one
        # (checkpoint_every 1), the running one's too. A stopped run writes the checkpoint of
        # its current step on SIGTERM, so one stopped during its first epoch has one if the
        # signal came after its training loop started, and none if before.
        with_epochs = {j["name"] for j in state["jobs"] if j["epochs"] >= 1}
        assert "first" in with_epochs
        names = {n.split("/")[1] for n in saved}
        assert with_epochs <= names
        assert names - with_epochs <= set(stopped)
    finally:
        _kill_wave(work)


def _kill_wave(work: Path) -> None:
    """Kill every job a wave launched (its state.json names them), whatever the test did."""
    if not (work / "state.json").exists():
        return
    for job in json.loads((work / "state.json").read_text())["jobs"]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job["pid"], signal.SIGKILL)


def test_gpu_wave_refuses_a_plan_whose_job_names_repeat(tmp_path):
    plan = _wave_plan(tmp_path, [("a", ["--methods", "CE"]), ("a", ["--methods", "ABSGD"])])
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_wave.py"), str(plan)]
    out = subprocess.run(
        [*cmd, "--work", str(tmp_path / "w"), "--budget", "1", "--stop-in", "0"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "job names repeat" in out.stderr
    assert not (tmp_path / "w").exists()


def test_every_gpu_plan_names_grid_methods_settings_and_candidates_that_exist():
    # A typo in a plan would cost a GPU session: check each job against benchmarks/grids.py.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from grids import GRIDS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    plans = sorted((ROOT / "benchmarks" / "gpu_plans").glob("*.json"))
    assert plans
    for plan in plans:
        jobs = json.loads(plan.read_text())
        assert len({j["name"] for j in jobs}) == len(jobs), plan.name
        for job in jobs:
            args = job["args"]
            grid = GRIDS[args[0]]

            def values(flag: str, args: list[str] = args) -> list[str]:
                if flag not in args:
                    return []
                rest = args[args.index(flag) + 1 :]
                return rest[: next((k for k, a in enumerate(rest) if a.startswith("--")), None)]

            methods = values("--methods")
            assert methods and set(methods) <= set(grid.methods), (plan.name, job["name"])
            assert set(values("--settings")) <= set(grid.settings), (plan.name, job["name"])
            lams = {float(x) for x in values("--lams")}
            assert lams <= {c for m in methods for c in grid.methods[m].lams}, job["name"]
            seeds = {int(x) for x in values("--only-seeds") + values("--seeds")}
            assert seeds <= set(grid.seeds), (plan.name, job["name"])
            assert "--out" in args and "train.device=cuda" in args, (plan.name, job["name"])
            # a branch names the job that runs its base's seed (listed before it, with the same
            # output, data and overrides), and waits for it
            for method in methods:
                base = grid.methods[method].branch_from
                assert (base is None) == ("--base-runs" not in args), (plan.name, job["name"])
                if base is None:
                    continue
                assert "--wait" in args, (plan.name, job["name"])
                (folder,) = values("--base-runs")
                source = next(j for j in jobs if folder == f"{{work}}/runs/{j['name']}")
                source_args = source["args"]
                assert base in values("--methods", source_args), (plan.name, job["name"])
                assert jobs.index(source) < jobs.index(job), (plan.name, job["name"])
                for flag in ("--only-seeds", "--settings", "--out", "--data-root", "--set"):
                    assert values(flag, source_args) == values(flag), (plan.name, flag)


def test_paired_table_marks_a_seed_whose_runs_trained_apart_before_the_switch(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import pair_tables

    def run(method: str, seed: int, losses: list[float], top1: float) -> dict:
        row = _row(method, seed, None, top1)
        row["config"] = {"objective": {"lam_switch": 2}}
        row["curve"] = [{"epoch": e + 1, "train_loss": v} for e, v in enumerate(losses)]
        return row

    rows = [
        run("CE", 0, [2.0, 1.5, 1.0], 0.50),
        run("CE", 1, [2.0, 1.5, 1.0], 0.50),
        # seed 0: the same stage 1 but for the last digits of the mean, then ABSGD differs
        run("AB", 0, [2.0 * (1 + 1e-9), 1.5, 3.0], 0.52),
        run("AB", 1, [2.1, 1.5, 1.0], 0.53),  # seed 1: another stage-1 model from epoch 1
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = pair_tables([str(path)], [("CE", "AB")])
    assert "| s0 +2.00, s1† +3.00 |" in text
    assert "† The two runs of this seed trained differently before the switch" in text
    same = [run("CE", 0, [2.0, 1.5], 0.5), run("AB", 0, [2.0, 1.5], 0.6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in same))
    assert "†" not in pair_tables([str(path)], [("CE", "AB")]).split("| AB − CE |")[1]


def test_pair_with_several_bases_takes_each_seeds_base_run_that_shares_its_stage_1(tmp_path):
    """``--pair "CE | CE again" AB``: a seed pairs with the first listed base run that trained
    the same stage 1 as its method run, else with the first listed run (marked †)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summarize import main
    from summary import pair_tables, per_class_tables

    def run(method: str, seed: int, first_loss: float, top1: float) -> dict:
        row = _row(method, seed, None, top1)
        row["config"] = {"objective": {"lam_switch": 2}}
        row["curve"] = [{"epoch": 1, "train_loss": first_loss}, {"epoch": 2, "train_loss": 1.0}]
        row["metrics"]["train_class_counts"] = [10, 5]
        return row

    rows = [
        run("CE", 0, 2.0, 0.50),
        run("CE", 1, 2.5, 0.40),  # trained apart from AB's seed 1
        run("CE again", 1, 2.1, 0.44),  # shares AB's seed-1 stage 1
        run("CE again", 2, 2.2, 0.60),
        run("CE", 3, 2.3, 0.50),  # apart, and no other base run of seed 3: kept, marked †
        run("AB", 0, 2.0, 0.51),
        run("AB", 1, 2.1, 0.47),
        run("AB", 2, 2.2, 0.64),
        run("AB", 3, 2.4, 0.55),
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = pair_tables([str(path)], [("CE | CE again", "AB")])
    # differences 1, 3, 4, 5 points: the seed-1 partner is CE again (0.44), not CE (0.40)
    assert "| AB − CE / CE again | 4 | +3.25 [" in text
    assert "| s0 +1.00, s1 +3.00, s2 +4.00, s3† +5.00 |" in text
    assert "Partners by seed, AB: CE for s0, s3; CE again for s1, s2." in text
    by_class = per_class_tables([str(path)], [("CE | CE again", "AB")])
    assert "AB − CE / CE again by class" in by_class
    # class 0 (top1 + 10 points in _row): base 60, 54, 70, 60 (61.00 ± 6.63), AB 61, 57, 74, 65
    assert "| 0 | 10 | 61.00 ± 6.63 | 64.25 ± 7.27 | +3.25 [" in by_class
    # one base name: as before, and no partners line
    single = pair_tables([str(path)], [("CE", "AB")])
    assert "| AB − CE | 3 | " in single and "Partners" not in single
    assert main([str(path), "--pair", "CE|CE again", "AB"]) == 0


def test_paired_table_marks_a_base_rerun_that_trained_apart_before_its_drw_switch(tmp_path):
    """Without an ABSGD switch the DRW switch ends stage 1 (a base re-run against its earlier
    run); a run with neither gets no mark."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from summary import pair_tables

    def run(method: str, seed: int, losses: list[float], objective: dict) -> dict:
        row = _row(method, seed, None, 0.5 + 0.01 * seed)
        row["config"] = {"objective": objective}
        row["curve"] = [{"epoch": e + 1, "train_loss": v} for e, v in enumerate(losses)]
        return row

    drw = {"class_weighting": "drw", "class_weighting_options": {"switch": 2}}
    rows = [
        run("DRW", 0, [2.0, 1.5, 1.0], drw),
        run("DRW", 1, [2.0, 1.5, 1.0], drw),
        run("DRW again", 0, [2.0, 1.5, 0.9], drw),  # apart only after the switch
        run("DRW again", 1, [2.0, 1.6, 1.0], drw),  # apart at epoch 2, before it
        run("CE", 1, [2.0, 1.6, 1.0], {}),  # no switch of either kind
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = pair_tables([str(path)], [("DRW", "DRW again"), ("DRW", "CE")])
    assert "| s0 +0.00, s1† +0.00 |" in text
    assert "†" not in text.split("| CE − DRW |")[1].split("\n")[0]


def test_tabular_guard_question_summary_by_hand(tmp_path):
    """Question 4 of benchmarks/tabular.py: the paired differences over tables, the verdicts
    and the choices, on hand-made rows (two tables, five folds; t(0.975, 1 df) = 12.706)."""
    pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tabular

    rows = []
    cells = {  # method: {table: (balanced accuracy, accuracy)}
        "ABSGD(λ=∞)": {"A": (0.60, 0.90), "B": (0.50, 0.80)},
        "ABSGD(ESS by rule (k))": {"A": (0.62, 0.888), "B": (0.53, 0.795)},
        "ABSGD(ESS by rule (t))": {"A": (0.60, 0.90), "B": (0.50, 0.80)},
        "ABSGD(ESS by rule (g))": {"A": (0.64, 0.895), "B": (0.52, 0.795)},
    }
    # the balanced base on three tables (t(0.975, 2 df) = 4.303): (k) gains +3, +4, +3.5 (half
    # 4.303·0.5/√3 = 1.24) at −0.5, −0.2, −0.35 (half 0.37): meets; (t) loses −1, −2, −1.5
    cells |= {
        "ABSGD(balanced, λ=∞)": {"A": (0.60, 0.90), "B": (0.50, 0.80), "C": (0.70, 0.95)},
        "ABSGD(balanced, ESS by rule (k))": {
            "A": (0.63, 0.895),
            "B": (0.54, 0.798),
            "C": (0.735, 0.9465),
        },
        "ABSGD(balanced, ESS by rule (t))": {
            "A": (0.59, 0.90),
            "B": (0.48, 0.80),
            "C": (0.685, 0.95),
        },
    }
    for method, per in cells.items():
        for table, (bal, acc) in per.items():
            for fold in range(5):
                row = {"table": table, "fold": fold, "method": method}
                row |= {"balanced_accuracy": bal, "accuracy": acc}
                if "rule" in method:
                    row["chosen"] = {"target_ess": 0.7} if "(k)" in method else {"lam": math.inf}
                rows.append(json.dumps(row))
    rows.append(json.dumps({"table": "A", "fold": 0, "method": "x", "balanced_accuracy": 0.1}))
    path = tmp_path / "guard.jsonl"
    path.write_text("\n".join(rows) + "\n\n")
    text = tabular.summarize_guard(path)
    # (k): accuracy −1.2 and −0.5 (mean −0.85, sd 0.495, half 12.706·0.495/√2 = 4.45), balanced
    # +2 and +3 (half 6.35); one table costs more than a point; target 0.7 chosen in 10 folds
    assert (
        "| ABSGD(ESS by rule (k)) | 57.50 | +2.50 [-3.85, +8.85] | 84.15 | -0.85 [-5.30, +3.60] | "
        "-1.20 (A) | 1 | 0.7 ×10 |"
    ) in text
    assert "| ABSGD(ESS by rule (t)) | 55.00 | +0.00 [+0.00, +0.00] |" in text
    assert "λ = ∞ ×10" in text
    assert "- ABSGD(ESS by rule (k)): misses its bound (accuracy), no gain shown" in text
    assert "- ABSGD(ESS by rule (t)): meets its bound (accuracy), no gain shown" in text
    assert "- (t) − (k), balanced_accuracy: -2.50 [-8.85, +3.85]" in text
    # (g): balanced +4 and +2 over (t) (sd √2, half 12.706); accuracy −0.5 on both tables
    assert "- ABSGD(ESS by rule (g)): meets its bound (accuracy), no gain shown" in text
    assert "- (g) − (t), balanced_accuracy: +3.00 [-9.71, +15.71]" in text
    assert "- (g) − (t), accuracy: -0.50 [-0.50, -0.50]" in text
    assert "(incomplete)" in text  # the fixed targets have no rows here
    assert "| ABSGD(balanced, ESS by rule (k)) | 63.50 | +3.50 [+2.26, +4.74] | 87.98 | " in text
    assert "-0.35 [-0.72, +0.02] | -0.50 (A) | 0 |" in text
    assert "- ABSGD(balanced, ESS by rule (k)): meets its bound (accuracy), gains" in text
    assert "- ABSGD(balanced, ESS by rule (t)): meets its bound (accuracy), loses" in text


def test_tabular_fresh_tables_are_disjoint_and_named():
    """Question 5's fresh tables share no table with the evaluation or development sets, and
    an unknown split is refused by name before any file is read."""
    pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tabular

    fresh = set(tabular.FRESH_BINARY) | set(tabular.FRESH_MULTICLASS)
    earlier = {*tabular.BINARY, *tabular.MULTICLASS, *tabular.DEV_BINARY, *tabular.DEV_MULTICLASS}
    assert len(fresh) == 24 and not fresh & earlier
    with pytest.raises(ValueError, match=r"split='test'.*eval, dev, fresh"):
        tabular.tables("test")


def test_tabular_mild_tables_and_the_summary_over_sources(tmp_path):
    """Question 6's tables are new, come from 11 sources, and ``by_source`` pairs over the
    sources, each the mean of its tables (hand-computed)."""
    pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tabular

    earlier = {*tabular.BINARY, *tabular.DEV_BINARY, *tabular.FRESH_BINARY}
    assert len(set(tabular.MILD_BINARY)) == 43 and not set(tabular.MILD_BINARY) & earlier
    assert {tabular.source(t) for t in tabular.MILD_BINARY} == {
        "cleveland", "dermatology", "ecoli", "glass", "haberman", "iris", "new-thyroid", "pima",
        "vehicle", "wisconsin", "yeast",
    }  # fmt: skip
    with pytest.raises(ValueError, match="'3-class'"):
        tabular.source("3-class")
    # (t) − base in balanced accuracy: ecoli1 +4, ecoli-0_vs_1 +2 (source ecoli: +3), glass0 +1
    cells = {"ecoli1": 0.04, "ecoli-0_vs_1": 0.02, "glass0": 0.01}
    rows = []
    for table, gain in cells.items():
        for fold in range(5):
            for method, bal in (("ABSGD(λ=∞)", 0.5), ("ABSGD(ESS by rule (t))", 0.5 + gain)):
                rows.append({"table": table, "fold": fold, "method": method,
                             "balanced_accuracy": bal, "accuracy": 0.9})  # fmt: skip
    path = tmp_path / "mild.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_table = tabular.summarize_guard(path)
    by_source = tabular.summarize_guard(path, by_source=True)
    assert "3 tables; differences in points, paired over the tables" in by_table
    assert "| ABSGD(ESS by rule (t)) | 52.33 | +2.33 [-1.46, +6.13] |" in by_table
    # sources: +3 and +1 (mean +2, sd √2, half 12.706)
    assert "2 sources; differences in points, paired over the sources" in by_source
    assert "| ABSGD(ESS by rule (t)) | 52.00 | +2.00 [-10.71, +14.71] |" in by_source


def test_tabular_guard_models_fit(tmp_path):
    """Question 4's models build and fit (a tiny table; every search refits by its rule)."""
    pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tabular

    models = tabular.guard_methods(0)
    assert sum("by rule" in name for name in models) == 6
    tabular.warm_up(tabular.guard_methods)
