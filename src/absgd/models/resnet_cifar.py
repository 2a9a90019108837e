r"""CIFAR ResNets (He et al. 2016, Sec. 4.2): ResNet-20/32/44/56, the CIFAR-LT standard.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2;
ResNet-32 is the backbone of the CIFAR-LT protocol of Cao et al. (LDAM-DRW, NeurIPS 2019),
which the ABSGD paper follows.

Architecture for depth ``6n + 2`` (ResNet-32: ``n = 5``) and input ``(N, 3, 32, 32)``::

    conv 3×3, 16                              → BN → ReLU          32×32
    stage 1: n basic blocks, 16 channels                            32×32
    stage 2: n basic blocks, 32 channels, stride 2 in the first     16×16
    stage 3: n basic blocks, 64 channels, stride 2 in the first      8×8
    global average pool → 64 features → linear classifier

Basic block: ``relu(bn(conv3×3(relu(bn(conv3×3(x))))) + shortcut(x))``. Shortcut "option A":
parameter-free; where a block halves the resolution and doubles the channels the shortcut takes
every second pixel, ``x[:, :, ::2, ::2]``, and pads the new channels with zeros (half before the
existing channels, half after, as in the LDAM-DRW code, so its weights line up channel for
channel). Convolutions have no bias (batch norm follows). Initialisation: Kaiming-normal
(fan-in) convolution and linear weights, zero linear bias, BN scale 1 and shift 0.

Parameters for ``C`` classes (convolutions, batch norms, classifier)::

    9·(3·16 + 2n·16² + 16·32 + (2n−1)·32² + 32·64 + (2n−1)·64²)
    + 2·16·(2n+1) + 2·32·2n + 2·64·2n + 65·C

ResNet-32 with 10 classes: 461,232 + 2,272 + 650 = 464,154.

Differences from the LDAM-DRW code: the linear bias starts at zero (PyTorch's default uniform
there); the cosine classifier's weight is stored as ``(classes, features)`` (see
:class:`~absgd.models.NormedLinear`); parameter names differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from absgd.models.base import Classifier, check_positive_int, kaiming_init, make_classifier
from absgd.models.registry import register_model

__all__ = ["CifarResNet", "resnet20", "resnet32", "resnet44", "resnet56"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlockA(nn.Module):
    """Two 3×3 conv-BN layers with a parameter-free (option A) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"option-A shortcut cannot reduce channels ({in_channels} -> {out_channels})"
            )
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        extra = out_channels - in_channels
        self.pad = (extra // 2, extra - extra // 2)

    def shortcut(self, x: Tensor) -> Tensor:
        """Identity, subsampled by ``stride`` and zero-padded to ``out_channels``."""
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad != (0, 0):
            x = F.pad(x, (0, 0, 0, 0, *self.pad))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class CifarResNet(Classifier):
    """ResNet of depth ``6n + 2`` for small (32×32) images; see the module docstring.

    Args:
        depth: 20, 32, 44, 56, 110, ... (``6n + 2``).
        num_classes: number of outputs.
        in_channels: input channels (3 for RGB).
        widths: channels of the three stages.
        normed_classifier: use a cosine classifier (:class:`~absgd.models.NormedLinear`,
            logits in ``[-1, 1]``; LDAM scales them inside the loss) instead of a linear one.
        dropout: probability of dropping a pooled feature before the classifier in training
            (0: none; the ABSGD authors' CIFAR-10-LT command uses 0.2). ``forward_features``
            returns the features before it.
    """

    def __init__(
        self,
        depth: int,
        num_classes: int,
        *,
        in_channels: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        normed_classifier: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not (0.0 <= dropout < 1.0)
        ):
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, ...), got {depth!r}"
            )
        check_positive_int("in_channels", in_channels)
        widths = tuple(widths)
        if len(widths) != 3 or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths
        ):
            raise ValueError(f"widths must be three positive integers, got {widths!r}")
        n = (depth - 2) // 6
        self.depth = depth
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.num_features = widths[-1]
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        cin = widths[0]
        for i, width in enumerate(widths):
            blocks = [BasicBlockA(cin, width, stride=1 if i == 0 else 2)]
            blocks += [BasicBlockA(width, width) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stage1, self.stage2, self.stage3 = stages
        kaiming_init(self)
        self.dropout = nn.Dropout(float(dropout)) if dropout > 0 else nn.Identity()
        self.classifier = make_classifier(self.num_features, num_classes, normed_classifier)

    def forward_features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.stage3(self.stage2(self.stage1(out)))
        return out.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.forward_features(x)))


def _cifar_builder(depth: int):
    def build(
        num_classes: int,
        *,
        in_channels: int = 3,
        normed_classifier: bool = False,
        widths: Sequence[int] = (16, 32, 64),
        dropout: float = 0.0,
    ) -> CifarResNet:
        return CifarResNet(
            depth,
            num_classes,
            in_channels=in_channels,
            widths=widths,
            normed_classifier=normed_classifier,
            dropout=dropout,
        )

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = (
        f"CIFAR ResNet-{depth} ({(depth - 2) // 6} blocks per stage, option-A shortcuts); "
        "see :class:`CifarResNet`."
    )
    return register_model(f"resnet{depth}")(build)


resnet20 = _cifar_builder(20)
resnet32 = _cifar_builder(32)
resnet44 = _cifar_builder(44)
resnet56 = _cifar_builder(56)
