"""The shipped digits configs are exactly the runs of `absgd demo` (offline, seconds)."""

from __future__ import annotations

from dataclasses import replace

from absgd.cli import SHIPPED_CONFIGS
from absgd.demo import demo_configs
from absgd.training.config import config_to_dict, load_config


def test_shipped_digits_configs_are_the_demo_runs():
    for demo, name in zip(demo_configs(), ("ce", "ce_absgd"), strict=True):
        shipped = load_config(SHIPPED_CONFIGS / f"cpu/digits_lt50_{name}.yaml")
        same_labels = replace(shipped, name=demo.name, method=demo.method)
        assert config_to_dict(same_labels) == config_to_dict(demo)
