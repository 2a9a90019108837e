"""docs/models_metrics.md stays true: its ``python`` blocks run and do what the page says."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from absgd.models import registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "models_metrics.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def _models(ns: dict[str, Any], out: list[str]) -> None:
    # "features ... (4, 64)", "logits ... (4, 10); the same as model(x)", "# 464154"
    assert ns["features"].shape == (4, 64)
    assert ns["logits"].shape == (4, 10)
    torch.testing.assert_close(ns["logits"], ns["model"](ns["x"]))
    assert out[-1] == "464154"
    assert "resnet32" in out[0] and "small_cnn" in out[0]


def _decoupled(ns: dict[str, Any], out: list[str]) -> None:
    model = ns["model"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}  # "freeze the backbone"
    assert ns["optimizer"].param_groups[0]["params"] == [
        model.classifier.weight,
        model.classifier.bias,
    ]
    assert model.classifier.out_features == 10  # "fresh head, same size"
    # cosine logits are in [-1, 1], so scaled by s = 30 they are in [-30, 30]
    assert ns["logits"].shape == (2, 10) and ns["logits"].abs().max() <= 30.0 + 1e-4


def _channels_last(ns: dict[str, Any], out: list[str]) -> None:
    assert out == ["torch.Size([8, 10])"]
    convs = [p for p in ns["model"].parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)


def _own_model(ns: dict[str, Any], out: list[str]) -> None:
    assert out == ["torch.Size([1, 3])"]
    assert "linear_probe" in registry.list_models()


def _evaluate(ns: dict[str, Any], out: list[str]) -> None:
    logits, y, result = ns["logits"], ns["y"], ns["result"]
    pred = logits.argmax(1)
    assert result["top1"] == pytest.approx(float(np.mean(pred == y)))
    recalls = [np.mean(pred[y == c] == c) for c in range(10)]
    assert result["balanced_accuracy"] == pytest.approx(float(np.mean(recalls)))
    # many: > 100 training images (the first 8 classes), medium: 20..100 (83 and 50), few: none
    assert result["many"] == pytest.approx(float(np.mean(recalls[:8])))
    assert result["medium"] == pytest.approx(float(np.mean(recalls[8:])))
    assert out[1] == "None {'many': 8, 'medium': 2, 'few': 0}"  # the comment in the block


def _streaming(ns: dict[str, Any], out: list[str]) -> None:
    result = ns["result"]
    assert result["num_samples"] == 5 * 64 and result["num_classes"] == 10
    # 100 training images per class is "medium" (20 <= n <= 100)
    assert result["shot_num_classes"] == {"many": 0, "medium": 10, "few": 0}
    assert sum(map(sum, result["confusion_matrix"])) == 320


def _diagnostics(ns: dict[str, Any], out: list[str]) -> None:
    per_class, ess = ns["per_class"].compute(), ns["ess"].compute()
    assert int(np.argmax(per_class)) == 2  # "class 2 weighs most"
    assert 1 / 32 < ess < 1.0  # "ESS below 1" (and above one sample of 32)


CHECKS: list[Callable[[dict[str, Any], list[str]], None]] = [
    _models,
    _decoupled,
    _channels_last,
    _own_model,
    _evaluate,
    _streaming,
    _diagnostics,
]


def test_every_example_has_its_check() -> None:
    assert len(blocks()) == len(CHECKS)


@pytest.mark.parametrize("index", range(len(blocks())))
def test_example_runs_and_does_what_the_page_says(
    index: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # examples may register models: keep the global registry unchanged
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    torch.manual_seed(0)
    namespace: dict[str, Any] = {}
    code = blocks()[index]
    exec(compile(code, f"docs/models_metrics.md python block {index}", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    CHECKS[index](namespace, out)


def test_documented_parameter_counts() -> None:
    from absgd.models import build_model, count_parameters

    text = DOC.read_text(encoding="utf-8")
    names = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet10", "resnet18", "resnet50"]
    for name in [*names, "cnn8", "small_cnn"]:
        assert f"{count_parameters(build_model(name, 10)):,}" in text, name
