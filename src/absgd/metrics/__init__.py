"""Metrics for imbalanced and noisy-label classification, and ABSGD diagnostics.

Pure functions (numpy or torch inputs, host results): :func:`confusion_matrix`,
:func:`top_k_accuracy`, :func:`per_class_accuracy`, :func:`balanced_accuracy`,
:func:`macro_f1`, :func:`prior_accuracy` (accuracy at another class prior, e.g. the training
skew) and :func:`prior_effective_size` (how many images drawn at that prior it is worth),
:func:`shot_accuracy` (many / medium / few-shot) and :func:`evaluate`, which
returns all of them in one JSON-serialisable dict; :func:`mean_weight_per_class` for the ABSGD
weights.

Streaming accumulators that stay on the device (no host synchronisation per batch):
:class:`ConfusionMeter` (→ the :func:`evaluate` dict), :class:`ClassWeightMeter`,
:class:`EffectiveSampleSizeMeter` and :class:`MeanMeter`.

Conventions (details in :mod:`absgd.metrics.classification`): accuracies are fractions in
``[0, 1]``; a class absent from the labels has per-class accuracy NaN (``None`` in the dict)
and is left out of every mean; F1 of a class with no correct prediction is 0; many-shot means
more than 100 training images, few-shot fewer than 20, medium 20 to 100 inclusive.
"""

from absgd.metrics.classification import (
    balanced_accuracy,
    confusion_matrix,
    evaluate,
    macro_f1,
    per_class_accuracy,
    prior_accuracy,
    prior_effective_size,
    shot_accuracy,
    to_jsonable,
    top_k_accuracy,
)
from absgd.metrics.meters import (
    ClassWeightMeter,
    ConfusionMeter,
    EffectiveSampleSizeMeter,
    MeanMeter,
    mean_weight_per_class,
)

__all__ = [
    "ClassWeightMeter",
    "ConfusionMeter",
    "EffectiveSampleSizeMeter",
    "MeanMeter",
    "balanced_accuracy",
    "confusion_matrix",
    "evaluate",
    "macro_f1",
    "mean_weight_per_class",
    "per_class_accuracy",
    "prior_accuracy",
    "prior_effective_size",
    "shot_accuracy",
    "to_jsonable",
    "top_k_accuracy",
]
