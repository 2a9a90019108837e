"""PNG plots of a run: per-class accuracy against training count, learning curves, ABSGD weights.

Uses matplotlib's non-interactive Agg backend; imported only when a run finishes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from absgd.fileio import atomic_write

__all__ = ["plot_run"]


def _save(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    with atomic_write(path) as fh:
        fh.write(buffer.getvalue())


def _per_class(final: dict[str, Any], path: Path) -> None:
    counts = np.asarray(final["train_class_counts"], dtype=float)
    acc = np.asarray([np.nan if a is None else a for a in final["per_class_accuracy"]], float)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(counts, 100 * acc, s=18)
    if len(counts) <= 20:
        for name, n, a in zip(final["class_names"], counts, acc, strict=True):
            ax.annotate(
                str(name), (n, 100 * a), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("test accuracy of the class (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(f"{final['method']} on {final['dataset']}")
    ax.grid(alpha=0.3)
    _save(fig, path)


def markers(config: dict[str, Any] | None, final: dict[str, Any]) -> list[tuple[float, str]]:
    """Vertical lines for the learning curves, ``(x, label)`` with x in the plots' 1-based epoch
    axis: the ABSGD switch, the DRW switch and the LR milestones (a change at 0-based epoch
    ``k`` acts from plotted epoch ``k + 1``, so it is drawn at ``k + 0.5``) and the epoch whose
    model was selected."""
    out: list[tuple[float, str]] = []
    if config:
        objective = config.get("objective") or {}
        if objective.get("weighting") == "absgd" and objective.get("lam_switch") is not None:
            out.append((float(objective["lam_switch"]) + 0.5, "ABSGD on"))
        switch = (objective.get("class_weighting_options") or {}).get("switch")
        if objective.get("class_weighting") == "drw" and switch is not None:
            out.append((float(switch) + 0.5, "DRW on"))
        optim = config.get("optim") or {}
        if optim.get("schedule") == "step":
            out += [(float(m) + 0.5, "LR decay") for m in optim.get("milestones") or ()]
    if final.get("selected_epoch") is not None:
        out.append((float(final["selected_epoch"]), "selected"))
    return out


def _mark(ax: Any, lines: Sequence[tuple[float, str]]) -> None:
    styles = {"selected": ("black", ":"), "LR decay": ("grey", "--")}
    seen: set[str] = set()
    for x, label in lines:
        colour, style = styles.get(label, ("tab:red", "--"))
        ax.axvline(x, color=colour, linestyle=style, linewidth=1,
                   label=None if label in seen else label)  # fmt: skip
        seen.add(label)


def _curves(
    history: list[dict[str, Any]],
    path: Path,
    lines: list[tuple[float, str]] = (),  # type: ignore[assignment]
) -> None:
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    _mark(left, lines)
    _mark(right, lines)
    left.plot(epochs, [r["train_loss"] for r in history], label="train loss (objective)")
    left.set_xlabel("epoch")
    left.set_yscale("log")
    left.legend()
    left.grid(alpha=0.3)
    for split in ("val", "test"):
        points = [(r["epoch"], r[split]) for r in history if r.get(split)]
        if points:
            xs = [e for e, _ in points]
            right.plot(xs, [100 * m["top1"] for _, m in points], label=f"{split} top-1")
            right.plot(
                xs,
                [100 * m["balanced_accuracy"] for _, m in points],
                linestyle="--",
                label=f"{split} balanced",
            )
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy (%)")
    right.grid(alpha=0.3)
    if right.lines:
        right.legend()
    _save(fig, path)


def _lam_and_ess(history: list[dict[str, Any]], ax: Any) -> None:
    """Effective sample size per epoch (left axis) and the λ in force (right, log scale)."""
    ess = [
        (r["epoch"], r["effective_sample_size"]) for r in history if "effective_sample_size" in r
    ]
    if ess:
        ax.plot(*zip(*ess, strict=True), color="tab:blue", marker=".", label="ESS")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("effective sample size", color="tab:blue")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    lam = [(r["epoch"], abs(r["lam"])) for r in history if isinstance(r.get("lam"), (int, float))]
    if lam:
        right = ax.twinx()
        right.plot(*zip(*lam, strict=True), color="tab:red", marker=".", label="|λ|")
        right.set_yscale("log")
        right.set_ylabel("|λ| in force (∞ not shown)", color="tab:red")


def _weights(history: list[dict[str, Any]], final: dict[str, Any], path: Path) -> bool:
    rows = [
        (r["epoch"], r["mean_weight_per_class"]) for r in history if r.get("mean_weight_per_class")
    ]
    if not rows:
        return False
    epochs = [e for e, _ in rows]
    table = np.asarray([[np.nan if v is None else v for v in w] for _, w in rows], dtype=float)
    counts = np.asarray(final["train_class_counts"], dtype=float)
    order = np.argsort(-counts)
    colours = plt.cm.viridis(np.linspace(0, 1, len(counts)))
    fig, (ax, low) = plt.subplots(
        2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    _lam_and_ess(history, low)
    for rank, c in enumerate(order):
        label = f"{final['class_names'][c]} (n={int(counts[c])})" if len(counts) <= 12 else None
        ax.plot(epochs, table[:, c], color=colours[rank], label=label)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    # At λ = ∞ every weight is 1 up to rounding: no offset axis that magnifies the rounding.
    ax.ticklabel_format(axis="y", useOffset=False)
    low, high = np.nanmin(table), np.nanmax(table)
    if high - low < 0.05:
        ax.set_ylim(min(low, 1.0) - 0.5, max(high, 1.0) + 0.5)
    ax.set_ylabel("mean weight B·p of the class")
    ax.set_title("mean per-sample weight of each class (1 = uniform, plain SGD)")
    ax.grid(alpha=0.3)
    if len(counts) <= 12:
        ax.legend(fontsize=7)
    _save(fig, path)
    return True


def plot_run(out: Path, history: list[dict[str, Any]], final: dict[str, Any]) -> list[Path]:
    """Write the plots of a finished run into ``out/plots`` and return their paths."""
    plots = Path(out) / "plots"
    written = [plots / "per_class_accuracy.png", plots / "learning_curves.png"]
    _per_class(final, written[0])
    config = None
    if (Path(out) / "config.yaml").is_file():
        import yaml

        config = yaml.safe_load((Path(out) / "config.yaml").read_text(encoding="utf-8"))
    _curves(history, written[1], markers(config, final))
    if _weights(history, final, plots / "sample_weights.png"):
        written.append(plots / "sample_weights.png")
    return written
