"""Dropout before the classifier of the CIFAR ResNets (the ABSGD authors' ``--DP``)."""

from __future__ import annotations

import pytest
import torch

from absgd.models import build_model


def test_dropout_acts_on_the_classifier_input_in_training_only():
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, dropout=0.25)
    seen = {}
    model.classifier.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].detach()))
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    features = model.forward_features(x).detach()
    model(x)
    torch.testing.assert_close(seen["x"], features)  # evaluation: no dropout
    model.train()
    torch.manual_seed(1)
    features = model.forward_features(x).detach()  # batch norm in train mode: same batch
    torch.manual_seed(1)
    model(x)
    kept = seen["x"] != 0
    assert 0.1 < 1 - kept.float().mean().item() < 0.4  # about a quarter dropped
    torch.testing.assert_close(seen["x"][kept], features[kept] / 0.75)


def test_no_dropout_by_default_and_bad_values_are_refused():
    assert isinstance(build_model("resnet32", num_classes=10).dropout, torch.nn.Identity)
    for bad in (1.0, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match="dropout must be a probability in \\[0, 1\\)"):
            build_model("resnet32", num_classes=10, dropout=bad)
