"""absgd: attentional-biased stochastic gradient descent (ABSGD) for PyTorch.

ABSGD (Qi, Xu, Yin, Jin, Yang; "Attentional-Biased Stochastic Gradient Descent",
arXiv 2012.06951, TMLR 2023) is momentum SGD on a mini-batch loss in which every sample
carries the weight ``p_i = exp(l_i/λ) / (B · s_t)``, with ``s_t`` a moving average of
``mean exp(l/λ)``. λ > 0 up-weights hard / minority samples (class imbalance), λ < 0
down-weights high-loss samples (label noise), λ = ∞ is plain SGD.
"""

from __future__ import annotations

__version__ = "0.1.0"

from absgd import class_weights, losses, schedules
from absgd.abloss import ABLoss
from absgd.objective import Objective, build_objective
from absgd.optim import ABSGD, ABAdam
from absgd.rgd import RGDWeighting
from absgd.weighting import ABState, ABWeighting, ab_weights, effective_sample_size

__all__ = [
    "ABSGD",
    "ABAdam",
    "ABLoss",
    "ABState",
    "ABWeighting",
    "Objective",
    "RGDWeighting",
    "__version__",
    "ab_weights",
    "build_objective",
    "class_weights",
    "effective_sample_size",
    "losses",
    "schedules",
]
