"""The estimator's network: linear layers with ReLU between them, its penalty and its logits."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from absgd.sklearn._data import Rows, batches

PREDICT_CHUNK = 8192  # rows per chunk at prediction time


def build_network(
    n_features: int, hidden: tuple[int, ...], n_outputs: int, seed: int
) -> nn.Sequential:
    """Linear layers with ReLU between them, initialised from ``Generator(seed)`` only."""
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    width = n_features
    for size in (*hidden, n_outputs):
        layer = torch.nn.utils.skip_init(nn.Linear, width, size)  # no global RNG draw
        bound = 1.0 / math.sqrt(width)
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
        layers += [layer, nn.ReLU()]
        width = size
    return nn.Sequential(*layers[:-1])


def layer_shapes(model: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def l2_penalty(model: nn.Module, alpha: float) -> Tensor | float:
    """``(α/2) Σ ‖W‖²`` over the weight matrices (the biases are not penalised)."""
    if alpha == 0:
        return 0.0
    return 0.5 * alpha * sum((m.weight * m.weight).sum() for m in linear_layers(model))


def logits(model: nn.Module, rows: Rows, n_rows: int, dtype: torch.dtype) -> Tensor:
    """Logits of the first ``n_rows`` rows in ``dtype`` on the CPU, chunk by chunk."""
    params = [
        (m.weight.detach().to(dtype), m.bias.detach().to(dtype)) for m in linear_layers(model)
    ]
    chunks = []
    with torch.no_grad():
        for idx in batches(np.arange(n_rows), PREDICT_CHUNK):
            h = rows(idx)
            for k, (weight, bias) in enumerate(params):
                h = F.linear(h, weight, bias)
                if k < len(params) - 1:
                    h = torch.relu(h)
            chunks.append(h.to("cpu"))
    return torch.cat(chunks)
