"""Architectures against hand calculations: parameter counts, the option-A shortcut, stage
shapes, the cosine classifier, and the published ResNet-18/50 counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from absgd.models import (
    CifarResNet,
    NormedLinear,
    ResNet,
    build_model,
    count_parameters,
    make_classifier,
    resnet32,
)
from absgd.models.resnet_cifar import BasicBlockA

# -- parameter counts -----------------------------------------------------------------------


def cifar_resnet_params(depth: int, c: int) -> int:
    """By hand: 3×3 convs without bias, two BN parameters per channel, linear 64 -> C."""
    n = (depth - 2) // 6
    convs = 9 * (3 * 16 + 2 * n * 16 * 16)  # stem + stage 1 (all 16 -> 16)
    convs += 9 * (16 * 32 + (2 * n - 1) * 32 * 32)  # stage 2
    convs += 9 * (32 * 64 + (2 * n - 1) * 64 * 64)  # stage 3
    bns = 2 * 16 * (2 * n + 1) + 2 * 32 * 2 * n + 2 * 64 * 2 * n
    return convs + bns + 64 * c + c


def basic_resnet_params(blocks: list[int], c: int) -> int:
    """By hand: ImageNet ResNet with basic blocks and 1×1 projection shortcuts."""
    total = 7 * 7 * 3 * 64 + 2 * 64  # stem conv + BN
    cin = 64
    for stage, (count, w) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
        for j in range(count):
            total += 9 * cin * w + 9 * w * w + 2 * 2 * w  # two convs, two BNs
            if j == 0 and (stage > 0 or cin != w):
                total += cin * w + 2 * w  # projection conv + BN
            cin = w
    return total + 512 * c + c


def test_resnet32_has_464154_parameters_for_10_classes() -> None:
    # 461,232 conv weights + 2,272 BN + 650 classifier, the ~0.46 M of He et al. Table 6.
    assert cifar_resnet_params(32, 10) == 461_232 + 2_272 + 650 == 464_154
    assert count_parameters(resnet32(10)) == 464_154


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
@pytest.mark.parametrize("c", [10, 100])
def test_cifar_resnet_counts(depth: int, c: int) -> None:
    assert count_parameters(CifarResNet(depth, c)) == cifar_resnet_params(depth, c)


def test_cifar_resnet_published_sizes() -> None:
    # He et al. 2016, Table 6: 0.27 M, 0.46 M, 0.66 M, 0.85 M, 1.7 M
    got = [round(count_parameters(CifarResNet(d, 10)) / 1e6, 2) for d in (20, 32, 44, 56, 110)]
    assert got == [0.27, 0.46, 0.66, 0.85, 1.73]


def test_imagenet_resnet_counts() -> None:
    assert count_parameters(build_model("resnet10", 1000)) == basic_resnet_params([1] * 4, 1000)
    assert count_parameters(build_model("resnet18", 1000)) == basic_resnet_params([2] * 4, 1000)
    # the standard published counts
    assert count_parameters(build_model("resnet18", 1000)) == 11_689_512
    assert count_parameters(build_model("resnet50", 1000)) == 25_557_032
    # in_channels only changes the stem
    gray = count_parameters(build_model("resnet18", 1000, in_channels=1))
    assert gray == 11_689_512 - 2 * 7 * 7 * 64


def test_cnn8_and_small_cnn_counts() -> None:
    convs = 9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 196 + 196 * 196)
    bns = 2 * (64 + 64 + 128 + 128 + 196 + 196) + 2 * 256
    fcs = 196 * 4 * 4 * 256 + (256 * 10 + 10)
    assert convs + bns + fcs == 1_638_762
    assert count_parameters(build_model("cnn8", 10)) == 1_638_762
    small = 9 * 16 + 2 * 16 + 9 * 16 * 32 + 2 * 32 + (32 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(build_model("small_cnn", 10)) == small == 206_970
    # 32×32 RGB: only the first conv and the flattened size change
    rgb = small + 9 * 16 * 2 + (32 * 8 * 8 - 32 * 7 * 7) * 128
    assert count_parameters(build_model("small_cnn", 10, in_channels=3, input_size=32)) == rgb


def test_mlp_and_normed_counts() -> None:
    model = build_model("mlp", 4, in_features=30, hidden=(64, 32))
    assert count_parameters(model) == 31 * 64 + 65 * 32 + 33 * 4
    assert count_parameters(build_model("mlp", 4, in_features=30, hidden=())) == 31 * 4
    # cosine classifier: no bias
    assert count_parameters(resnet32(10, normed_classifier=True)) == 464_154 - 10


# -- CIFAR ResNet structure -----------------------------------------------------------------


def test_option_a_shortcut_is_parameter_free_and_pads_with_zeros() -> None:
    block = BasicBlockA(16, 32, stride=2)
    per_block = 9 * 16 * 32 + 9 * 32 * 32 + 2 * 2 * 32  # the two conv-BN layers only
    assert count_parameters(block) == per_block
    x = torch.randn(2, 16, 8, 8)
    sc = block.shortcut(x)
    assert sc.shape == (2, 32, 4, 4)
    torch.testing.assert_close(sc[:, 8:24], x[:, :, ::2, ::2], rtol=0, atol=0)
    assert sc[:, :8].abs().sum() == 0 and sc[:, 24:].abs().sum() == 0
    same = BasicBlockA(16, 16)
    torch.testing.assert_close(same.shortcut(x), x, rtol=0, atol=0)


def test_cifar_resnet_layout() -> None:
    model = resnet32(10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 31 and all(c.kernel_size == (3, 3) and c.bias is None for c in convs)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1  # 31 convs + 1 linear = 32 weighted layers
    assert [len(s) for s in (model.stage1, model.stage2, model.stage3)] == [5, 5, 5]
    shapes = []
    x = torch.randn(2, 3, 32, 32)
    out = F.relu(model.bn1(model.conv1(x)))
    for stage in (model.stage1, model.stage2, model.stage3):
        out = stage(out)
        shapes.append(tuple(out.shape[1:]))
    assert shapes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert model.num_features == 64


def test_kaiming_normal_init() -> None:
    torch.manual_seed(0)
    model = CifarResNet(56, 10)
    w = torch.cat([m.weight.flatten() for m in model.stage3.modules() if isinstance(m, nn.Conv2d)])
    # fan-in 9·64 = 576 for almost all of them: std sqrt(2/576)
    assert w.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.02)
    assert abs(w.mean().item()) < 1e-3
    assert torch.all(model.classifier.bias == 0)


def test_imagenet_resnet_shapes_and_zero_init() -> None:
    model = build_model("resnet50", 5, zero_init_residual=True).eval()
    assert model.num_features == 2048
    stem = model.stem(torch.randn(1, 3, 64, 64))
    assert stem.shape == (1, 64, 16, 16)  # stride 2 conv, stride 2 max-pool
    sizes = []
    out = stem
    for stage in model.stages:
        out = stage(out)
        sizes.append(tuple(out.shape[1:]))
    assert sizes == [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (2048, 2, 2)]
    # with zero-initialised last BNs every block starts as relu(shortcut(x))
    block = model.stages[0][1]
    torch.testing.assert_close(block(out := F.relu(torch.randn(1, 256, 4, 4))), out)
    with pytest.raises(ValueError, match="block must be one of"):
        ResNet("wide", [1, 1], 10, widths=(8, 16))


# -- cosine classifier ----------------------------------------------------------------------


def test_normed_linear_gives_cosines() -> None:
    torch.manual_seed(0)
    head = NormedLinear(6, 4)
    x = torch.randn(5, 6) * 10
    got = head(x)
    w = head.weight.detach()
    expected = (x / x.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
    torch.testing.assert_close(got, expected)
    assert got.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(head(3.7 * x), got)  # scale-invariant in x
    own = head(5 * w[2:3])[0]  # a class vector itself has cosine 1 with its class
    assert own[2].item() == pytest.approx(1.0, abs=1e-6) and own.argmax() == 2
    torch.testing.assert_close(w.norm(dim=1), torch.ones(4))  # unit-norm class vectors at init


def test_normed_model_logits_are_cosines_of_the_features() -> None:
    model = resnet32(10, normed_classifier=True).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        f = model.forward_features(x)
        w = model.classifier.weight
        cos = F.normalize(f, dim=1) @ F.normalize(w, dim=1).T
        torch.testing.assert_close(model(x), cos)
    assert isinstance(make_classifier(8, 3, normed=True), NormedLinear)
