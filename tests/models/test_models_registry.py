"""Every registered model: forward + backward, training smoke test, features interface,
channels_last, device/dtype following; and the registry itself (names, errors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from absgd.models import (
    Classifier,
    NormedLinear,
    build_model,
    get_model_builder,
    list_models,
    register_model,
    to_channels_last,
)
from absgd.models import registry as registry_module

# Input of a tiny test batch for every registered model: (per-sample shape, builder kwargs).
# A newly registered model must be added here, or test_every_model_has_a_spec fails.
SPECS: dict[str, tuple[tuple[int, ...], dict]] = {
    "resnet20": ((3, 16, 16), {}),
    "resnet32": ((3, 32, 32), {}),
    "resnet44": ((3, 8, 8), {}),
    "resnet56": ((3, 8, 8), {}),
    "resnet10": ((3, 64, 64), {}),
    "resnet18": ((3, 64, 64), {}),
    "resnet50": ((3, 64, 64), {}),
    "cnn8": ((3, 32, 32), {}),
    "small_cnn": ((1, 28, 28), {}),
    "mlp": ((12,), {"in_features": 12, "hidden": (16, 16)}),
}
MODELS = list_models()
NUM_CLASSES = 7
BATCH = 2


def _model(name: str, **extra) -> Classifier:
    torch.manual_seed(0)
    _shape, kwargs = SPECS[name]
    return build_model(name, NUM_CLASSES, **kwargs, **extra)


def _input(name: str, batch: int = BATCH, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *SPECS[name][0], generator=g)


def test_every_model_has_a_spec() -> None:
    missing = sorted(set(MODELS) - set(SPECS))
    assert not missing, f"add a test input spec to SPECS for the new model(s) {missing}"
    assert {"resnet32", "resnet18", "resnet50", "cnn8", "small_cnn", "mlp"} <= set(MODELS)


@pytest.mark.parametrize("normed", [False, True])
@pytest.mark.parametrize("name", MODELS)
def test_forward_backward(name: str, normed: bool) -> None:
    model = _model(name, normed_classifier=normed)
    assert isinstance(model, Classifier)
    assert model.num_classes == NUM_CLASSES and model.normed_classifier is normed
    x = _input(name).requires_grad_()
    logits = model(x)
    assert logits.shape == (BATCH, NUM_CLASSES) and logits.dtype == torch.float32
    F.cross_entropy(logits * (30 if normed else 1), torch.tensor([0, 3])).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    if normed:
        assert logits.abs().max() <= 1 + 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_two_sgd_steps_lower_the_loss(name: str) -> None:
    model = _model(name)
    x = _input(name, batch=4)
    y = torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[2] < losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_features_then_classifier_is_the_forward(name: str) -> None:
    model = _model(name).eval()
    x = _input(name)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (BATCH, model.num_features)
        torch.testing.assert_close(model.classifier(features), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_gives_the_same_outputs(name: str) -> None:
    model = _model(name).eval()
    x = _input(name)
    with torch.no_grad():
        expected = model(x)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        got = to_channels_last(model)(x)
    for p in model.parameters():
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_device_follows_the_input(name: str) -> None:
    # On the meta device nothing is computed: any tensor created on a fixed device (or any
    # host synchronisation) inside forward would fail here.
    with torch.device("meta"):
        model = _model(name)
    out = model(_input(name).to("meta"))
    assert out.device.type == "meta" and out.shape == (BATCH, NUM_CLASSES)


@pytest.mark.parametrize("name", ["resnet20", "small_cnn", "mlp", "cnn8"])
@pytest.mark.parametrize("normed", [False, True])
def test_dtype_follows_the_model(name: str, normed: bool) -> None:
    model = _model(name, normed_classifier=normed).double().eval()
    x = _input(name).double()
    assert model(x).dtype == torch.float64
    bf16 = _model(name, normed_classifier=normed).to(torch.bfloat16).eval()
    assert bf16(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_no_device_is_hard_coded() -> None:
    root = Path(__file__).resolve().parents[2] / "src" / "absgd"
    for folder in ("models", "metrics"):
        for path in (root / folder).glob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert ".cuda(" not in text and '"cuda"' not in text, path


@pytest.mark.parametrize("name", ["resnet32", "resnet18", "cnn8", "mlp"])
def test_reset_classifier(name: str) -> None:
    model = _model(name).double()
    model.reset_classifier(3, normed=True)
    assert isinstance(model.classifier, NormedLinear) and model.num_classes == 3
    assert model.classifier.weight.dtype == torch.float64
    assert model(_input(name).double()).shape == (BATCH, 3)
    model.reset_classifier(normed=False)
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 3


# -- registry -------------------------------------------------------------------------------


def test_list_models_is_sorted_and_builders_are_retrievable() -> None:
    assert sorted(MODELS) == MODELS
    assert get_model_builder("resnet32")(5).num_classes == 5


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown model 'resnet33'") as err:
        build_model("resnet33", 10)
    for name in MODELS:
        assert name in str(err.value)


def test_bad_kwargs_are_named_with_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['normed'\]") as err:
        build_model("resnet32", 10, normed=True)
    assert "normed_classifier" in str(err.value)
    with pytest.raises(TypeError, match="in_features"):
        build_model("mlp", 10)  # required option missing


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        build_model("resnet32", 0)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("mlp", True, in_features=3)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        from absgd.models import CifarResNet

        CifarResNet(30, 10)
    with pytest.raises(ValueError, match="dropout"):
        build_model("small_cnn", 10, dropout=1.5)
    with pytest.raises(ValueError, match="too small"):
        build_model("cnn8", 10, input_size=4)


def test_wrong_input_size_is_explained() -> None:
    model = build_model("small_cnn", 10)
    with pytest.raises(ValueError, match=r"spatial size \(28, 28\)"):
        model(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="expected 12 input features"):
        _model("mlp")(torch.zeros(2, 13))


def test_register_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_model("tiny_test_model")
    def tiny(num_classes: int, *, width: int = 4) -> nn.Module:
        return nn.Sequential(nn.Linear(3, width), nn.Linear(width, num_classes))

    assert "tiny_test_model" in list_models()
    assert build_model("tiny_test_model", 5, width=2)(torch.zeros(1, 3)).shape == (1, 5)
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_test_model")(tiny)
    register_model("tiny_test_model", overwrite=True)(tiny)
    with pytest.raises(TypeError, match="num_classes as its first parameter"):
        register_model("broken")(lambda classes: nn.Linear(1, classes))
    with pytest.raises(ValueError, match="non-empty string"):
        register_model("")
