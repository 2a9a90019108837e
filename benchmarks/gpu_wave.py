"""Run one wave of grid processes side by side on a GPU inside a fixed device budget.

    python benchmarks/gpu_wave.py PLAN.json --work /tmp/wave --budget 700 --stop-in 560 \\
        --pack "$OUT"

A plan is a JSON list of jobs in priority order, each ``{"name": ..., "args": [...]}`` with
the arguments of one ``benchmarks/grid.py`` process (several processes may share one
``--out`` file; see grid.py), where ``{work}`` stands for ``--work``. The first call launches
every job in its own process session, so the jobs outlive the call, and records the launch in
``WORK/state.json``; a later call with the same ``--work`` only watches. A call watches for
``--stop-in`` seconds (or until every job has ended), then copies what exists into
``--pack``: the result files, every run's ``metrics.jsonl`` / ``final.json`` / log
(``runs.tar.gz``), ``state.json`` with each job's epochs, rate and fate, and with
``--checkpoints`` the checkpoints of unfinished runs and those that bases keep for their branches
(split into parts of at most 15 MiB).

The budget: every job should end within ``--budget`` seconds of the launch. After two ``--window``
(60 s), each job's rate (epochs per second over the last window) projects its end; while some job
would end past the budget, the lowest-priority job still running is stopped (SIGTERM, so it writes
its checkpoint), at most one every 0.75 window, never one of the first ``--protect`` jobs, and none
while every job that may be stopped only waits (``grid.py --wait``) for a base's checkpoint or a λ
choice. Stopping a job helps the others only where they share a bottleneck (the GPU); where each job
is bound by its own process the projection does not improve and the protected jobs run on.

On an H200 shared through CUDA MPS, eleven 200-epoch ResNet-32 runs (batch 100, test split
every epoch) started together trained at 4–5 s an epoch each; with six left, 2.2–2.6 s
(2.5–2.9 s with the evaluation and the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grid import WAITING_MARK

from absgd.fileio import write_text

ROOT = Path(__file__).resolve().parents[1]


def _epochs(run_root: Path) -> int:
    """Epoch lines written so far by the run(s) under ``run_root``."""
    total = 0
    for path in run_root.glob("**/metrics.jsonl"):
        with open(path) as fh:
            total += sum(1 for line in fh if line.startswith('{"epoch"'))
    return total


def _waiting(log: Path) -> bool:
    """Whether the job's last output line says that it waits (``grid.py --wait``)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except FileNotFoundError:
        return False
    return bool(lines) and lines[-1].rstrip().endswith(WAITING_MARK)


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (an earlier call launched it)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")
    return done == 0


def _write_state(work: Path, state: dict[str, Any]) -> None:
    write_text(work / "state.json", json.dumps(state, indent=1))


def launch(plan: list[dict[str, Any]], work: Path, budget: float) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.setdefault("ABSGD_CACHE_DIR", str(work / "cache"))
    jobs = []
    for job in plan:
        runs = work / "runs" / job["name"]
        runs.mkdir(parents=True, exist_ok=True)
        log = open(work / f"{job['name']}.log", "w")  # noqa: SIM115 (the child keeps it)
        args = [a.replace("{work}", str(work)) for a in job["args"]]
        cmd = [sys.executable, str(ROOT / "benchmarks/grid.py"), *args]
        cmd += ["--keep-runs", str(runs)]
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        jobs.append({"name": job["name"], "pid": proc.pid, "cmd": cmd, "fate": "running"})
    now = time.time()
    return {"launched": now, "finish_by": now + budget, "jobs": jobs}


def rate(samples: list[tuple[float, int]], now: float, epochs: int, window: float) -> float | None:
    """Add the sample ``(now, epochs)`` to a job's ``samples``, forget those older than
    ``window`` seconds, and return its epochs per second over what is left (``None`` until an
    epoch has ended within the window)."""
    samples.append((now, epochs))
    while samples and now - samples[0][0] > window:
        samples.pop(0)
    if len(samples) >= 2 and samples[-1][1] > samples[0][1]:
        return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
    return None


def late_jobs(jobs: list[dict[str, Any]], budget: float) -> list[dict[str, Any]]:
    """The running jobs projected to end past ``budget`` seconds from the launch."""
    return [j for j in jobs if j["fate"] == "running" and j.get("projected_end_s", 0.0) > budget]


def choose_stop(
    jobs: list[dict[str, Any]],
    *,
    since_launch: float,
    budget: float,
    window: float,
    protect: int,
    since_last_stop: float,
    waiting: Callable[[dict[str, Any]], bool],
) -> dict[str, Any] | None:
    """The job to stop now, if any. ``jobs`` are all of the plan's jobs in priority order,
    each with its ``fate`` and, where measured, ``projected_end_s`` (seconds from the launch).
    A job is stopped only after two windows, while some running job is projected past
    ``budget``, at most one every 0.75 window: the lowest-priority running job that is not
    among the first ``protect``, unless every such job only ``waiting`` (``grid.py --wait``),
    which takes no GPU."""
    running = [j for j in jobs if j["fate"] == "running"]
    late = since_launch > 2 * window and bool(late_jobs(jobs, budget))
    victims = [j for j in running if jobs.index(j) >= protect]
    if not late or not victims or since_last_stop <= 0.75 * window:
        return None
    if all(waiting(j) for j in victims):
        return None
    return victims[-1]


def watch(
    work: Path, state: dict[str, Any], stop_in: float, protect: int, epochs: int, window: float
) -> None:
    stop_at = time.time() + stop_in
    samples: dict[str, list[tuple[float, int]]] = {j["name"]: [] for j in state["jobs"]}
    last_stop = -math.inf
    stopped: list[dict[str, Any]] = []
    budget = state["finish_by"] - state["launched"]
    while True:
        now = time.time()
        since_launch = now - state["launched"]
        for job in state["jobs"]:
            job["epochs"] = _epochs(work / "runs" / job["name"])
            if job["fate"] == "running" and not _alive(job["pid"]):
                job["fate"] = "ended"
            if job["fate"] == "running":
                measured = rate(samples[job["name"]], now, job["epochs"], window)
                if measured is not None:
                    job["rate"] = measured
                    job["projected_end_s"] = since_launch + (epochs - job["epochs"]) / measured
        victim = choose_stop(
            state["jobs"],
            since_launch=since_launch,
            budget=budget,
            window=window,
            protect=protect,
            since_last_stop=now - last_stop,
            waiting=lambda job: _waiting(work / f"{job['name']}.log"),
        )
        if victim is not None:
            late = [j["name"] for j in late_jobs(state["jobs"], budget)]
            os.killpg(victim["pid"], signal.SIGTERM)
            victim["fate"] = f"stopped at {since_launch:.1f} s (budget)"
            last_stop = now
            print(f"stopped {victim['name']}: {late} ran late", flush=True)
            stopped.append(victim)
            for job in state["jobs"]:  # the others' rates change: measure again, project anew
                if job["fate"] == "running":
                    samples[job["name"]].clear()
                    job.pop("projected_end_s", None)
        _write_state(work, state)
        line = " ".join(f"{j['name']}:{j['epochs']}" for j in state["jobs"])
        print(f"[{since_launch:4.0f} s] {line}", flush=True)
        if not any(j["fate"] == "running" for j in state["jobs"]) or now >= stop_at:
            # the jobs stopped by this call write their checkpoint on SIGTERM: let them finish
            # before the results are packed
            deadline = time.time() + 120
            while any(_alive(j["pid"]) for j in stopped) and time.time() < deadline:
                time.sleep(0.5)
            return
        time.sleep(min(window / 6, max(0.0, stop_at - now)))


def pack(work: Path, dest: Path, checkpoints: bool) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in work.glob("*.jsonl"):
        shutil.copy(path, dest / path.name)
    shutil.copy(work / "state.json", dest / "state.json")
    with tarfile.open(dest / "runs.tar.gz", "w:gz") as tar:
        for path in sorted(work.glob("*.log")):
            tar.add(path, arcname=f"logs/{path.name}")
        for path in sorted((work / "runs").glob("**/*")):
            if path.name in ("metrics.jsonl", "final.json", "config.yaml"):
                tar.add(path, arcname=str(path.relative_to(work)))
    for stale in dest.glob("checkpoints.part*"):  # an earlier pack's parts
        stale.unlink()
    if not checkpoints:
        return
    unfinished = [
        p for p in (work / "runs").glob("**/checkpoint.pt")
        if not (p.parent / "final.json").exists()
    ]  # fmt: skip
    # the checkpoints that bases keep for their branches (a branch not started yet needs one)
    unfinished += sorted((work / "runs").glob("**/checkpoint-epoch*.pt"))
    if unfinished:
        with tarfile.open(work / "checkpoints.tar", "w") as tar:
            configs = sorted({path.parent / "config.yaml" for path in unfinished})
            for path in [*unfinished, *configs]:  # each with its run's config (a resume reads it)
                tar.add(path, arcname=str(path.relative_to(work)))
        subprocess.run(
            ["split", "-b", "15M", str(work / "checkpoints.tar"), str(dest / "checkpoints.part")],
            check=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("plan", type=Path, help="JSON list of {name, args} in priority order")
    p.add_argument("--work", type=Path, required=True, help="state, logs, runs, results")
    p.add_argument("--budget", type=float, required=True, help="seconds from launch to the end")
    p.add_argument("--stop-in", type=float, required=True, help="seconds this call watches")
    p.add_argument("--pack", type=Path, help="copy the results here when the call ends")
    p.add_argument("--protect", type=int, default=1, help="never stop the first N jobs")
    p.add_argument("--epochs", type=int, default=200, help="epochs per run (the projection)")
    p.add_argument("--window", type=float, default=60.0, help="seconds a rate is measured over")
    p.add_argument("--checkpoints", action="store_true", help="pack unfinished checkpoints")
    args = p.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    names = [job["name"] for job in plan]
    if len(set(names)) != len(names):
        p.error(f"job names repeat in {args.plan}: {names}")
    args.work.mkdir(parents=True, exist_ok=True)
    state_path = args.work / "state.json"
    if state_path.exists():
        state = json.loads(state_path.read_text())
    else:
        state = launch(plan, args.work, args.budget)
        _write_state(args.work, state)
    watch(args.work, state, args.stop_in, args.protect, args.epochs, args.window)
    if args.pack is not None:
        pack(args.work, args.pack, args.checkpoints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
