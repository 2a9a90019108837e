"""Multi-layer perceptron for tabular data (or any input, flattened).

``x (N, in_features) → [linear → ReLU → dropout] per hidden width → linear classifier``.
The features are the last hidden layer's output; with ``hidden=()`` the model is multinomial
logistic regression and the features are the (flattened) input itself. Initialisation:
Kaiming-normal (fan-in) weights, zero biases.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from absgd.models.base import Classifier, check_positive_int, kaiming_init, make_classifier
from absgd.models.registry import register_model

__all__ = ["MLP", "mlp"]


class MLP(Classifier):
    """Fully connected network; inputs of shape ``(N, ...)`` are flattened to ``(N, D)``.

    Args:
        in_features: ``D``, the number of input features.
        num_classes: number of outputs.
        hidden: widths of the hidden layers (``()`` for logistic regression).
        dropout: dropout probability after each hidden layer's ReLU.
        normed_classifier: cosine classifier (:class:`~absgd.models.NormedLinear`).

    >>> import torch
    >>> model = MLP(5, 3, hidden=(16, 8))
    >>> model(torch.randn(4, 5)).shape, model.forward_features(torch.randn(4, 5)).shape
    (torch.Size([4, 3]), torch.Size([4, 8]))
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.0,
        normed_classifier: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.num_classes = check_positive_int("num_classes", num_classes)
        if isinstance(hidden, int):
            hidden = (hidden,)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, check_positive_int("hidden widths", h)), nn.ReLU(True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.num_features = width
        kaiming_init(self)
        self.classifier = make_classifier(width, num_classes, normed_classifier)

    def forward_features(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"expected {self.in_features} input features (in_features), got {x.shape[1]}"
            )
        return self.body(x)


@register_model("mlp")
def mlp(
    num_classes: int,
    *,
    in_features: int,
    hidden: Sequence[int] = (256, 256),
    dropout: float = 0.0,
    normed_classifier: bool = False,
) -> MLP:
    """Multi-layer perceptron for tabular data; see :class:`MLP`."""
    return MLP(
        in_features,
        num_classes,
        hidden=hidden,
        dropout=dropout,
        normed_classifier=normed_classifier,
    )
