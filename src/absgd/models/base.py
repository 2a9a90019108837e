r"""What every model here shares: the :class:`Classifier` interface, the cosine classifier
:class:`NormedLinear`, weight initialisation and small helpers.

Every model is ``logits = classifier(forward_features(x))``: ``forward_features`` returns the
penultimate features ``(N, num_features)`` and ``classifier`` maps them to ``(N, num_classes)``
logits. Code that needs the features (LDAM's margins on cosines, decoupled classifier
re-training, feature statistics) uses the two halves directly.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Classifier",
    "NormedLinear",
    "count_parameters",
    "kaiming_init",
    "make_classifier",
    "to_channels_last",
]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int if it is an integer ``>= 1``, else raise naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class NormedLinear(nn.Module):
    r"""Cosine classifier: ``logits[n, c] = <x_n / ‖x_n‖, w_c / ‖w_c‖>``, values in ``[-1, 1]``.

    No bias. The cosines are usually multiplied by a scale ``s`` inside the loss (LDAM,
    Cao et al. 2019, uses ``s = 30``), not here. Normalisation is done in float32 whatever the
    input dtype, and the result is returned in the input's dtype.

    ``weight`` has shape ``(out_features, in_features)`` like :class:`torch.nn.Linear`; each
    class vector starts as a random unit vector (Gaussian direction, norm 1).

    Difference from the LDAM-DRW code: that stores the weight transposed,
    ``(in_features, out_features)``; transpose it to load such a checkpoint.

    >>> head = NormedLinear(4, 3)
    >>> logits = head(torch.randn(5, 4))
    >>> logits.shape, bool(logits.abs().max() <= 1 + 1e-6)
    (torch.Size([5, 3]), True)
    """

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.weight)
            self.weight.div_(self.weight.norm(dim=1, keepdim=True).clamp_min(self.eps))

    def forward(self, x: Tensor) -> Tensor:
        x32 = F.normalize(x.float(), dim=1, eps=self.eps)
        w32 = F.normalize(self.weight.float(), dim=1, eps=self.eps)
        return F.linear(x32, w32).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def make_classifier(in_features: int, num_classes: int, normed: bool = False) -> nn.Module:
    """The final layer: :class:`torch.nn.Linear` (Kaiming-normal weight, zero bias) or, with
    ``normed=True``, :class:`NormedLinear`."""
    check_positive_int("num_classes", num_classes)
    if normed:
        return NormedLinear(in_features, num_classes)
    head = nn.Linear(in_features, num_classes)
    nn.init.kaiming_normal_(head.weight, nonlinearity="relu")
    nn.init.zeros_(head.bias)
    return head


def kaiming_init(module: nn.Module, mode: Literal["fan_in", "fan_out"] = "fan_in") -> None:
    """He et al. (2015) initialisation of every conv and linear layer under ``module``:
    weights ``N(0, 2 / fan)`` (``fan`` = fan-in or fan-out), biases zero; batch-norm
    scales 1 and shifts 0. :class:`NormedLinear` layers are left alone."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Classifier(nn.Module):
    """Base class: ``forward(x) = classifier(forward_features(x))``.

    Subclasses set ``num_classes``, ``num_features`` and ``classifier`` and implement
    :meth:`forward_features`.
    """

    num_classes: int
    num_features: int
    classifier: nn.Module

    def forward_features(self, x: Tensor) -> Tensor:
        """Penultimate features, shape ``(N, num_features)``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits, shape ``(N, num_classes)``."""
        return self.classifier(self.forward_features(x))

    @property
    def normed_classifier(self) -> bool:
        """Whether the classifier is a cosine classifier (:class:`NormedLinear`)."""
        return isinstance(self.classifier, NormedLinear)

    def reset_classifier(self, num_classes: int | None = None, normed: bool | None = None) -> None:
        """Replace the classifier with a freshly initialised one (for decoupled classifier
        re-training, Kang et al. 2020, or a new label set), on the old one's device and dtype.

        ``num_classes`` and ``normed`` default to the current ones.
        """
        old = next(self.classifier.parameters())
        n = self.num_classes if num_classes is None else num_classes
        use_normed = self.normed_classifier if normed is None else bool(normed)
        head = make_classifier(self.num_features, n, use_normed)
        self.classifier = head.to(device=old.device, dtype=old.dtype)
        self.num_classes = n


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (shared parameters counted once).

    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store every 4-D parameter and buffer of ``model`` in ``channels_last`` (NHWC) order,
    in place, and return ``model``.

    Convolutions on GPUs with tensor cores (and often on CPUs) run faster in this layout. Feed
    the inputs in the same layout, ``x = x.contiguous(memory_format=torch.channels_last)``;
    outputs are the same up to floating-point rounding. Models without 4-D weights (MLP) are
    unchanged.

    >>> conv = to_channels_last(nn.Conv2d(3, 8, 3))
    >>> conv.weight.is_contiguous(memory_format=torch.channels_last)
    True
    """
    # torch's stubs omit Module.to's memory_format keyword, which torch accepts
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
