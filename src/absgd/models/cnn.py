r"""Plain convolutional networks: ``cnn8`` (noisy-label CIFAR-10) and ``small_cnn`` (fast,
for 28×28 Fashion-MNIST / MNIST or 32×32 images on a CPU).

``cnn8`` — the 8-layer CNN of the noisy-label literature for CIFAR-10: 6 convolutional and 2
fully connected layers, as described by Wang et al., "Symmetric Cross Entropy for Robust
Learning with Noisy Labels", ICCV 2019, Sec. 5, and used with the same layer sizes by Ma et
al., "Normalized Loss Functions for Deep Learning with Noisy Labels", ICML 2020. Exactly::

    [conv 3×3 (pad 1) → BN → ReLU] × 2, 64 channels   → max-pool 2×2     32 → 16
    [conv 3×3 (pad 1) → BN → ReLU] × 2, 128 channels  → max-pool 2×2     16 → 8
    [conv 3×3 (pad 1) → BN → ReLU] × 2, 196 channels  → max-pool 2×2      8 → 4
    flatten (196·4·4 = 3136) → linear 256 → BN → ReLU   (the 256 features)
    → linear classifier

Difference from those descriptions: the convolutions and the 256-unit linear layer have no
bias, since a batch norm follows each (the biases would be cancelled by it); that removes
776 + 256 = 1,032 redundant parameters. With 10 classes ``cnn8`` has 1,638,762 parameters.

``small_cnn`` — designed here for speed on a CPU (about 90 % test accuracy on balanced
Fashion-MNIST after a few epochs)::

    conv 3×3 (pad 1), 16 → BN → ReLU → max-pool 2×2      28 → 14
    conv 3×3 (pad 1), 32 → BN → ReLU → max-pool 2×2      14 → 7
    flatten (32·7·7 = 1568) → linear 128 → ReLU → dropout (the 128 features)
    → linear classifier

Both take ``in_channels`` and ``input_size`` (an int or ``(H, W)``; the flattened size is
computed from it, so inputs must have that size). Initialisation: Kaiming-normal (fan-in)
weights, zero biases, BN scale 1 and shift 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from absgd.models.base import Classifier, check_positive_int, kaiming_init, make_classifier
from absgd.models.registry import register_model

__all__ = ["ConvNet", "cnn8", "small_cnn"]


def _size2(input_size: int | Sequence[int]) -> tuple[int, int]:
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2:
        raise ValueError(f"input_size must be an int or (height, width), got {input_size!r}")
    h, w = (check_positive_int("input_size", s) for s in size)
    return h, w


class ConvNet(Classifier):
    """Stacks of ``conv 3×3 → BN → ReLU`` separated by 2×2 max-pools, then a fully connected
    hidden layer and the classifier (see the module docstring for ``cnn8`` and ``small_cnn``).

    Args:
        blocks: channels of each conv layer, one tuple per pooling stage, e.g.
            ``((64, 64), (128, 128), (196, 196))``.
        num_classes: number of outputs.
        hidden: width of the fully connected hidden layer (the feature dimension).
        in_channels, input_size: input shape (``input_size`` an int or ``(H, W)``).
        hidden_batch_norm: BN between the hidden linear layer and its ReLU (``cnn8``).
        dropout: dropout probability after the hidden layer.
        normed_classifier: cosine classifier (:class:`~absgd.models.NormedLinear`).
    """

    def __init__(
        self,
        blocks: Sequence[Sequence[int]],
        num_classes: int,
        *,
        hidden: int,
        in_channels: int = 3,
        input_size: int | Sequence[int] = 32,
        hidden_batch_norm: bool = False,
        dropout: float = 0.0,
        normed_classifier: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.num_features = check_positive_int("hidden", hidden)
        cin = check_positive_int("in_channels", in_channels)
        h, w = _size2(input_size)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        for stage in blocks:
            for cout in stage:
                check_positive_int("conv channels", cout)
                layers += [
                    nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                ]
                cin = cout
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"input_size {input_size!r} is too small for {len(blocks)} 2×2 poolings"
            )
        self.input_size = _size2(input_size)
        self.features = nn.Sequential(*layers)
        fc: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(cin * h * w, hidden, bias=not hidden_batch_norm),
        ]
        if hidden_batch_norm:
            fc.append(nn.BatchNorm1d(hidden))
        fc.append(nn.ReLU(inplace=True))
        if dropout > 0:
            fc.append(nn.Dropout(dropout))
        self.fc = nn.Sequential(*fc)
        kaiming_init(self)
        self.classifier = make_classifier(hidden, num_classes, normed_classifier)

    def forward_features(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"expected inputs of spatial size {self.input_size} (input_size), got "
                f"{tuple(x.shape[-2:])}"
            )
        return self.fc(self.features(x))


@register_model("cnn8")
def cnn8(
    num_classes: int,
    *,
    in_channels: int = 3,
    input_size: int | Sequence[int] = 32,
    normed_classifier: bool = False,
) -> ConvNet:
    """The 8-layer CNN for noisy-label CIFAR-10 (Wang et al. 2019; Ma et al. 2020)."""
    return ConvNet(
        ((64, 64), (128, 128), (196, 196)),
        num_classes,
        hidden=256,
        in_channels=in_channels,
        input_size=input_size,
        hidden_batch_norm=True,
        normed_classifier=normed_classifier,
    )


@register_model("small_cnn")
def small_cnn(
    num_classes: int,
    *,
    in_channels: int = 1,
    input_size: int | Sequence[int] = 28,
    widths: Sequence[int] = (16, 32),
    hidden: int = 128,
    dropout: float = 0.0,
    normed_classifier: bool = False,
) -> ConvNet:
    """Two conv-BN-ReLU-pool stages and a hidden layer: fast on a CPU (Fashion-MNIST)."""
    return ConvNet(
        tuple((w,) for w in widths),
        num_classes,
        hidden=hidden,
        in_channels=in_channels,
        input_size=input_size,
        dropout=dropout,
        normed_classifier=normed_classifier,
    )
