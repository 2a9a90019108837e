"""docs/models_metrics.md stays true: its ``python`` blocks run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from absgd.models import registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "models_metrics.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_there_are_runnable_examples() -> None:
    assert len(blocks()) >= 6


@pytest.mark.parametrize("index", range(len(blocks())))
def test_example_runs(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # examples may register models: keep the global registry unchanged
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    code = blocks()[index]
    exec(compile(code, f"docs/models_metrics.md python block {index}", "exec"), {})


def test_documented_parameter_counts() -> None:
    from absgd.models import build_model, count_parameters

    text = DOC.read_text(encoding="utf-8")
    names = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet10", "resnet18", "resnet50"]
    for name in [*names, "cnn8", "small_cnn"]:
        assert f"{count_parameters(build_model(name, 10)):,}" in text, name
