"""The tables of ``benchmarks/summarize.py``, by concept: :mod:`summary.runs` reads the result
lines, :mod:`summary.stats` holds the t intervals, and each other module makes one kind of table
(:mod:`summary.means`, :mod:`summary.pairs`, :mod:`summary.switch`, :mod:`summary.curves`);
:mod:`summary.choose` evaluates a selection rule as a method."""

from summary.choose import Choice, choice_tables, chosen_runs, parse_choice
from summary.curves import curve_tables, early_stopped, test_curve
from summary.means import tables
from summary.pairs import base_names, pair_tables, per_class_tables
from summary.runs import (
    before_switch,
    device_label,
    lam_switch,
    load,
    method_groups,
    same_stage_one,
    shot_accuracies,
    stage_one_end,
    train_prior_top1,
)
from summary.stats import mean_std, paired, t_central, t_quantile
from summary.switch import (
    after_switch,
    candidate_tables,
    drop_text,
    lam_scale_table,
    largest_step_scale,
    loss_at_switch,
    switch_tables,
    warning_kinds,
)

__all__ = [
    "Choice",
    "after_switch",
    "base_names",
    "before_switch",
    "candidate_tables",
    "choice_tables",
    "chosen_runs",
    "curve_tables",
    "device_label",
    "drop_text",
    "early_stopped",
    "lam_scale_table",
    "lam_switch",
    "largest_step_scale",
    "load",
    "loss_at_switch",
    "mean_std",
    "method_groups",
    "pair_tables",
    "paired",
    "parse_choice",
    "per_class_tables",
    "same_stage_one",
    "shot_accuracies",
    "stage_one_end",
    "switch_tables",
    "t_central",
    "t_quantile",
    "tables",
    "test_curve",
    "train_prior_top1",
    "warning_kinds",
]
