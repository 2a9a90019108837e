"""Models for imbalanced and noisy-label classification, by name.

=====================  ============================================  ===========================
name                   what                                          parameters (10 classes)
=====================  ============================================  ===========================
``resnet20/32/44/56``  CIFAR ResNet, option-A shortcuts (CIFAR-LT)   0.27 / 0.46 / 0.66 / 0.85 M
``resnet10/18/50``     ImageNet-style ResNet (ImageNet-LT, iNat)     4.9 / 11.2 / 23.5 M
``cnn8``               6 conv + 2 fc, noisy-label CIFAR-10           1.64 M
``small_cnn``          2 conv + 2 fc, fast on a CPU (Fashion-MNIST)  0.21 M
``mlp``                fully connected, tabular data                 depends on the sizes
=====================  ============================================  ===========================

Every model is a :class:`Classifier`: ``model(x) == model.classifier(model.forward_features(x))``
with penultimate features of size ``model.num_features``; ``normed_classifier=True`` gives a
cosine classifier (:class:`NormedLinear`). Build one with :func:`build_model`::

    model = build_model("resnet32", num_classes=10, normed_classifier=True)

Devices and dtypes follow ``model.to(...)``; nothing here picks a device.
:func:`to_channels_last` converts a convolutional model to the NHWC memory layout.
"""

from absgd.models.base import (
    Classifier,
    NormedLinear,
    count_parameters,
    kaiming_init,
    make_classifier,
    to_channels_last,
)
from absgd.models.cnn import ConvNet, cnn8, small_cnn
from absgd.models.mlp import MLP, mlp
from absgd.models.registry import build_model, get_model_builder, list_models, register_model
from absgd.models.resnet import ResNet, resnet10, resnet18, resnet50
from absgd.models.resnet_cifar import CifarResNet, resnet20, resnet32, resnet44, resnet56

__all__ = [
    "MLP",
    "CifarResNet",
    "Classifier",
    "ConvNet",
    "NormedLinear",
    "ResNet",
    "build_model",
    "cnn8",
    "count_parameters",
    "get_model_builder",
    "kaiming_init",
    "list_models",
    "make_classifier",
    "mlp",
    "register_model",
    "resnet10",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet50",
    "resnet56",
    "small_cnn",
    "to_channels_last",
]
