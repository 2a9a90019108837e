"""Per-sample classification losses, each a function and an ``nn.Module``, registered by name.

=====================  ====================================================  =============
name                   loss                                                   needs counts
=====================  ====================================================  =============
``ce``                 cross-entropy (optional label smoothing)               no
``focal``              softmax focal loss, γ (Lin et al. 2017)                no
``ldam``               label-distribution-aware margin (Cao et al. 2019)      yes
``logit_adjusted``     ``CE(z + τ log π)`` (Menon et al. 2021)                yes
``balanced_softmax``   ``CE(z + log n)`` (Ren et al. 2020)                    yes
``sce``                symmetric cross-entropy (Wang et al. 2019)             no
``gce``                generalised cross-entropy L_q (Zhang & Sabuncu 2018)   no
``truncated_gce``      truncated L_q, ``k = 0.5`` by default                  no
=====================  ====================================================  =============

``build_loss(name, class_counts=..., **options)`` builds one; every loss takes
``reduction="none" | "mean" | "sum"`` and an optional per-class ``weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from absgd.losses.robust import (
    GeneralizedCrossEntropyLoss,
    SymmetricCrossEntropyLoss,
    generalized_cross_entropy,
    symmetric_cross_entropy,
)
from absgd.losses.softmax import (
    BalancedSoftmaxLoss,
    CrossEntropyLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    balanced_softmax_loss,
    cross_entropy,
    focal_loss,
    ldam_loss,
    ldam_margins,
    logit_adjusted_loss,
)
from absgd.registry import Registry

__all__ = [
    "LOSSES",
    "BalancedSoftmaxLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "GeneralizedCrossEntropyLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "SymmetricCrossEntropyLoss",
    "balanced_softmax_loss",
    "build_loss",
    "cross_entropy",
    "focal_loss",
    "generalized_cross_entropy",
    "ldam_loss",
    "ldam_margins",
    "logit_adjusted_loss",
    "symmetric_cross_entropy",
]

LOSSES: Registry = Registry("loss")
LOSSES.register("ce")(CrossEntropyLoss)
LOSSES.register("focal")(FocalLoss)
LOSSES.register("ldam")(LDAMLoss)
LOSSES.register("logit_adjusted")(LogitAdjustedLoss)
LOSSES.register("balanced_softmax")(BalancedSoftmaxLoss)
LOSSES.register("sce")(SymmetricCrossEntropyLoss)
LOSSES.register("gce")(GeneralizedCrossEntropyLoss)


@LOSSES.register("truncated_gce")
def _truncated_gce(
    *,
    q: float = 0.7,
    k: float = 0.5,
    weight: Sequence[float] | Tensor | None = None,
    reduction: str = "mean",
) -> GeneralizedCrossEntropyLoss:
    return GeneralizedCrossEntropyLoss(q=q, k=k, weight=weight, reduction=reduction)  # type: ignore[arg-type]


def build_loss(
    name: str,
    *,
    class_counts: Sequence[int] | np.ndarray | Tensor | None = None,
    **options: Any,
) -> nn.Module:
    """Build the loss registered as ``name``.

    ``class_counts`` (training-set size of each class) is passed to the losses that need it
    (``ldam``, ``logit_adjusted``, ``balanced_softmax``) and ignored by the others.

    >>> build_loss("focal", gamma=2.0, reduction="none")
    FocalLoss(reduction='none')
    >>> build_loss("ldam")
    Traceback (most recent call last):
    ...
    ValueError: loss 'ldam' needs class_counts (the number of training samples of each class)
    """
    factory = LOSSES.get(name)
    if getattr(factory, "needs_class_counts", False):
        if class_counts is None:
            raise ValueError(
                f"loss {name!r} needs class_counts (the number of training samples of each class)"
            )
        options = {"class_counts": class_counts, **options}
    return LOSSES.build(name, **options)
