"""The README stays true: its quickstart runs, and CI runs its set-up lines verbatim."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_the_two_setup_lines_of_the_readme_verbatim():
    setup = _blocks("bash")[0].strip().splitlines()
    assert len(setup) == 2, setup
    assert "pytest" in setup[1]
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for line in setup:
        assert line in ci_lines, f"{line!r} is not a line of .ci/run"


def test_quickstart_runs_and_learns_the_minority_class():
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_blocks("python")[0], "README quickstart", "exec"), namespace)
    assert printed.getvalue().startswith("recall per class: [")  # the snippet shows a result
    model, x, y = namespace["model"], namespace["x"], namespace["y"]
    with torch.no_grad():
        pred = model(x).argmax(1)
    recall = [(pred[y == c] == c).float().mean().item() for c in (0, 1)]
    assert min(recall) > 0.8, recall
    assert namespace["loss_fn"].lam == 1.0
