r"""ImageNet-style ResNets (He et al. 2016): ResNet-10, ResNet-18 (basic blocks), ResNet-50
(bottleneck blocks), for the large-scale long-tailed benchmarks (ImageNet-LT, iNaturalist,
Places-LT; Liu et al. 2019, Kang et al. 2020).

Architecture for input ``(N, in_channels, H, W)`` (224×224 in the papers)::

    conv 7×7, 64, stride 2 → BN → ReLU → max-pool 3×3, stride 2         H/4
    stage 1..4: widths 64, 128, 256, 512; stride 2 in the first block
                of stages 2-4                                           H/4 … H/32
    global average pool → 512·e features → classifier                   (e = 1 or 4)

- basic block (e = 1): ``relu(bn(conv3×3(relu(bn(conv3×3(x))))) + shortcut(x))``;
- bottleneck (e = 4): 1×1 (w) → 3×3 (w, carries the stride) → 1×1 (4w), BN after each, ReLU
  after the first two and after the sum. Putting the stride on the 3×3 rather than the first
  1×1 (as in the paper) is the "ResNet v1.5" variant used by the long-tailed literature;
- shortcut: identity, or a 1×1 convolution + BN ("option B") where the shape changes.

Blocks per stage: ResNet-10 ``[1, 1, 1, 1]``, ResNet-18 ``[2, 2, 2, 2]``, ResNet-50
``[3, 4, 6, 3]``. Convolutions have no bias. Initialisation: Kaiming-normal (fan-out)
convolutions, BN scale 1 and shift 0 (``zero_init_residual=True`` zeroes the scale of each
block's last BN so every block starts as the identity, Goyal et al. 2017), Kaiming-normal linear
classifier with zero bias. With 1000 classes ResNet-18 has 11,689,512 parameters and ResNet-50
25,557,032, the standard counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from absgd.models.base import Classifier, check_positive_int, kaiming_init, make_classifier
from absgd.models.registry import register_model

__all__ = ["ResNet", "resnet10", "resnet18", "resnet50"]


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


def _projection(cin: int, cout: int, stride: int) -> nn.Module:
    return _conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()


def _last_bn(branch: nn.Sequential) -> nn.BatchNorm2d:
    """The batch norm of the last conv-BN pair of a residual branch."""
    last = branch[-1]
    assert isinstance(last, nn.Sequential) and isinstance(last[1], nn.BatchNorm2d)
    return last[1]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers and a projection shortcut where the shape changes."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            _conv_bn(in_channels, width, 3, stride),
            nn.ReLU(inplace=True),
            _conv_bn(width, width, 3),
        )
        self.shortcut = _projection(in_channels, width, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return _last_bn(self.branch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.branch(x) + self.shortcut(x), inplace=True)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride) → 1×1 (×4 channels) conv-BN layers and a projection shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out = width * self.expansion
        self.branch = nn.Sequential(
            _conv_bn(in_channels, width, 1),
            nn.ReLU(inplace=True),
            _conv_bn(width, width, 3, stride),
            nn.ReLU(inplace=True),
            _conv_bn(width, out, 1),
        )
        self.shortcut = _projection(in_channels, out, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return _last_bn(self.branch)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.branch(x) + self.shortcut(x), inplace=True)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


class ResNet(Classifier):
    """ImageNet-style ResNet; see the module docstring.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)``.
        num_classes: number of outputs.
        in_channels: input channels.
        widths: base width of each stage (the block multiplies it by its expansion).
        normed_classifier: cosine classifier (:class:`~absgd.models.NormedLinear`).
        zero_init_residual: start every residual branch's last BN scale at 0.
    """

    def __init__(
        self,
        block: Literal["basic", "bottleneck"],
        layers: Sequence[int],
        num_classes: int,
        *,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        normed_classifier: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {block!r}")
        layers, widths = tuple(layers), tuple(widths)
        if not layers or len(layers) != len(widths):
            raise ValueError(
                f"layers and widths must be non-empty and of equal length, got {layers} and "
                f"{widths}"
            )
        for name, values in (("layers", layers), ("widths", widths)):
            for v in values:
                check_positive_int(f"every entry of {name}", v)
        check_positive_int("in_channels", in_channels)
        block_cls = _BLOCKS[block]
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.stem = nn.Sequential(
            _conv_bn(in_channels, widths[0], 7, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        cin = widths[0]
        for i, (count, width) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for j in range(count):
                blocks.append(block_cls(cin, width, stride=2 if i > 0 and j == 0 else 1))
                cin = width * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = cin
        kaiming_init(self, mode="fan_out")
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)
        self.classifier = make_classifier(cin, num_classes, normed_classifier)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


def _builder(name: str, block: Literal["basic", "bottleneck"], layers: tuple[int, ...]):
    def build(
        num_classes: int,
        *,
        in_channels: int = 3,
        normed_classifier: bool = False,
        zero_init_residual: bool = False,
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> ResNet:
        return ResNet(
            block,
            layers,
            num_classes,
            in_channels=in_channels,
            widths=widths,
            normed_classifier=normed_classifier,
            zero_init_residual=zero_init_residual,
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"ImageNet-style {name} ({block} blocks {list(layers)}); see :class:`ResNet`."
    return register_model(name)(build)


resnet10 = _builder("resnet10", "basic", (1, 1, 1, 1))
resnet18 = _builder("resnet18", "basic", (2, 2, 2, 2))
resnet50 = _builder("resnet50", "bottleneck", (3, 4, 6, 3))
