"""docs/data.md stays true: its ``python`` blocks run (``py`` blocks need user files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_there_are_runnable_examples() -> None:
    assert len(blocks()) >= 4


@pytest.mark.parametrize("index", range(len(blocks())))
def test_example_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = blocks()[index]
    if "load_digits_lt" in code:
        pytest.importorskip("sklearn")
    exec(compile(code, f"docs/data.md python block {index}", "exec"), {})
