"""``absgd demo``: plain SGD and ABSGD side by side on long-tailed digits, offline, in seconds.

The data is scikit-learn's bundled 8×8 digits (1,797 real images, no download): a balanced
test split of 52 images per class is held out and the rest is made long-tailed at ratio 50
with the standard exponential profile (122 images of class 0 down to 2 of class 9). Both runs
share the seed, the model (an MLP with one hidden layer of 128 units), the schedule (30 epochs,
batch 32, LR 0.05 divided by 10 at epoch 20, random 1-pixel shifts) and the budget; ABSGD uses
the two-stage protocol of the paper: plain SGD until the LR decay, then λ = 2.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from absgd.training.config import RunConfig, load_config

__all__ = ["demo_configs", "run_demo"]

_COMMON = [
    "data.name=digits",
    "data.imbalance_ratio=50",
    "data.val_source=none",
    "data.augment=crop",
    "data.padding=1",
    "model.name=mlp",
    "model.options={hidden: [128]}",
    "optim.lr=0.05",
    "optim.weight_decay=5e-4",
    "optim.warmup_epochs=0",
    "optim.schedule=step",
    "optim.factors=[0.1]",
    "train.batch_size=32",
    "train.device=cpu",
    "train.deterministic=true",
    "train.seed=0",
]


def demo_configs(epochs: int = 30) -> list[RunConfig]:
    """The two runs of the demo; the LR decay and the λ switch sit at 2/3 of ``epochs``."""
    if epochs < 2:
        raise ValueError(f"the demo needs at least 2 epochs, got {epochs}")
    switch = max(1, round(epochs * 2 / 3))
    common = [*_COMMON, f"train.epochs={epochs}", f"optim.milestones=[{switch}]"]
    sgd = load_config(None, [*common, "name=demo-sgd", "method=plain SGD"])
    absgd = load_config(
        None,
        [
            *common,
            "name=demo-absgd",
            "method=ABSGD (λ=2, two-stage)",
            "objective.weighting=absgd",
            "objective.lam=2",
            f"objective.lam_switch={switch}",
        ],
    )
    return [sgd, absgd]


def run_demo(
    epochs: int | None = None, out: str | Path | None = None, quiet: bool = False
) -> list[dict[str, Any]]:
    """Train both demo runs (into ``out``, or a temporary directory) and return their rows."""
    from absgd.training import Reporter, train

    class _Say(Reporter):
        def message(self, text: str) -> None:
            if not quiet:
                print(text, flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(out) if out is not None else Path(tmp)
        for cfg in demo_configs(30 if epochs is None else epochs):
            if not quiet:
                print(f"training {cfg.method} ...", flush=True)
            final = train(cfg, base / cfg.name, reporter=_Say())
            rows.append({"run": cfg.name, **final})
    return rows
