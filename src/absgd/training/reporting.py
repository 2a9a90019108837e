"""What a training run tells its user: the progress hooks of :func:`~absgd.training.train`
and the warnings when ABSGD's weights concentrate on a few samples or its step grows far
beyond its base's."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = [
    "LARGE_STEP",
    "LOW_ESS",
    "Reporter",
    "drawn_warnings",
    "large_step_warning",
    "low_ess_warning",
]


class Reporter:
    """Progress hooks of :func:`~absgd.training.train`; the default does nothing (the library is
    quiet)."""

    def message(self, text: str) -> None:
        """A line for the user (data summary, epoch summary...)."""

    def data_progress(self, what: str, done: int, total: int) -> None:
        """``done`` of ``total`` items of ``what`` are decoded."""

    def epoch_start(self, epoch: int, epochs: int, steps: int, start_step: int) -> None:
        """An epoch with ``steps`` steps starts (at ``start_step`` when resuming)."""

    def step(self) -> None:
        """One optimisation step is done."""

    def epoch_end(self, record: dict[str, Any]) -> None:
        """The epoch's ``metrics.jsonl`` record."""


LOW_ESS = 0.3
"""An epoch whose mean effective sample size ``(Σp)²/(BΣp²)`` of ABSGD's weights falls below
this draws a warning (once per run): most of each batch's weight then rests on a few samples.
Runs whose weights concentrated like that collapsed in the benchmarks (ESS 0.01–0.39 with
LDAM-DRW, docs/results.md, sections 6–7), though not every one: ABSGD + CE at λ = 1 ran at
0.17–0.25 on CIFAR-10-LT and was the most accurate λ (section 7), while λ = −1 on CE under
label noise, with the step rescaled to the mean loss, collapsed at 0.10 (section 8). It flags
concentrated weights, not a step that is too large: unrescaled target-ESS runs collapsed at
0.57–0.65, and class-weighted runs under the batch-mean normalisation at 0.36–0.91 (sections 7
and 9): :data:`LARGE_STEP` watches the step."""


def low_ess_warning(
    epoch: int, ess: float | None, lam: float | None, target_ess: float | None = None
) -> str | None:
    """The warning for an epoch (0-based) of ABSGD with λ ``lam`` (solved for ``target_ess``
    if given) whose mean effective sample size was ``ess``, or ``None`` if there is nothing to
    warn about (λ infinite: plain SGD)."""
    if ess is None or lam is None or not math.isfinite(lam) or not ess < LOW_ESS:
        return None
    advice = (
        f"a larger objective.target_ess (now {target_ess:g}) keeps it up"
        if target_ess is not None
        else "a larger |λ| (objective.lam), or objective.target_ess (e.g. 0.9), keeps it up"
    )
    return (
        f"epoch {epoch + 1}: the effective sample size of ABSGD's weights was {ess:.3f}, "
        f"below {LOW_ESS}: λ = {lam:.3g} puts most of each batch's weight on a few samples, "
        "where runs with class weights (DRW, LDAM) collapsed in the benchmarks (CE with λ > 0 "
        f"did not). Check validation accuracy after the switch; if it fell, {advice}"
    )


LARGE_STEP = 1.5
"""An epoch whose mean step scale (:attr:`absgd.Objective.last_step_scale`: the sum of the
objective's coefficients on the per-sample losses, 1 for its base's mean) exceeds this many times
the sum of ABSGD's weights (``1/α + u``, what its options choose) draws a warning (once per run)
when class weights are on. The excess comes from the class weights: divided by their batch mean,
the scale grows as the weights move onto the rare classes, whose class weights are largest, which
the effective sample size does not show. A prompt to check validation, not a classifier: in the
measured runs (docs/results.md §7 and §9, the batch mean, the first epoch after the switch) the
collapses the effective sample size did not flag ran at 1.95 to 6.07 and the runs that did not
collapse at 1.75 or less (1.17–1.75 on CIFAR-10-LT, 1.03 on Fashion-MNIST-LT). A first value
of 2, set from the five CIFAR-10-LT runs alone, missed the Fashion-MNIST-LT collapse at 1.95;
1.5 was set after it and, tested on our preset's runs, flagged both collapses (2.47, 6.07) and
LDAM-DRW λ = 30, which did not collapse (1.69; 1.75 in the authors' preset): between about 1.7
and 2 the scale does not tell a collapse from a good run. Measured in the first epoch after the
switch."""


def large_step_warning(
    epoch: int, step_scale: float | None, lam: float | None, weights_sum: float = 1.0
) -> str | None:
    """The warning for an epoch (0-based) of ABSGD with λ ``lam`` whose mean step scale was
    ``step_scale`` where its weights sum to ``weights_sum``, or ``None`` (no scale recorded,
    λ infinite, or at most :data:`LARGE_STEP` times ``weights_sum``)."""
    if step_scale is None or lam is None or not math.isfinite(lam):
        return None
    if not step_scale > LARGE_STEP * weights_sum:
        return None
    return (
        f"epoch {epoch + 1}: the objective's step scale was {step_scale:.3g}, "
        f"{step_scale / weights_sum:.3g} times the {weights_sum:.3g} that ABSGD's weights sum "
        f"to (more than {LARGE_STEP:g} times): dividing the class weights by their batch mean "
        "multiplies the step as the weights move onto rare classes. "
        "objective.normalize_class_weights=weighted keeps it at the weights' sum. Check "
        "validation accuracy after the switch"
    )


def drawn_warnings(history: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The warnings a run drew, ``{"kind", "epoch", "text"}`` each, from its per-epoch records
    (``metrics.jsonl``, where the epoch that drew a warning keeps it under ``warnings``): what
    ``final.json["warnings"]`` lists."""
    return [
        {"kind": w["kind"], "epoch": int(r["epoch"]), "text": w["text"]}
        for r in history
        for w in r.get("warnings", ())
    ]
