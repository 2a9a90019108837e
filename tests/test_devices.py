"""The environment record that makes runs on different CPUs tellable apart."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch

from absgd.training.devices import cpu_description, describe_environment


def test_cpu_description_names_the_kernels_torch_dispatches_to() -> None:
    d = cpu_description()
    assert d["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert d["cpu"]
    env = describe_environment(torch.device("cpu"))
    assert env["cpu"] == d["cpu"] and env["cpu_capability"] == d["cpu_capability"]


def test_cpu_model_read_from_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU 9000 @ 3.0GHz\nflags\t: a\n"
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if str(self) == "/proc/cpuinfo":
            return text
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    assert cpu_description()["cpu"] == "Example CPU 9000 @ 3.0GHz"


def test_cpu_model_falls_back_without_cpuinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(self: Path, *args: object, **kwargs: object) -> str:
        raise OSError("no such file")

    monkeypatch.setattr(Path, "read_text", unreadable)
    assert cpu_description()["cpu"] == (platform.processor() or platform.machine())
