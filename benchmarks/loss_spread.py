"""How sharp a λ is, read from the per-sample losses of a checkpoint (docs/results.md §10).

    python benchmarks/loss_spread.py RUN_DIR [--lams 0.25 0.5 1 3 10] [--thin 4]

``RUN_DIR`` is a run directory (its ``config.yaml`` and the checkpoint of the epoch to look at,
e.g. the last epoch of stage 1 of a two-stage run). The script computes the cross-entropy of
every training sample as training sees it (``--mode train``: the training augmentation,
dropout and batch-norm statistics of shuffled batches of the run's batch size, each sample
once, no update; ``--mode eval``: the evaluation transform and running statistics) and the
effective sample size of ABSGD's weights ``w_i ∝ exp(l_i/λ)`` (Qi et al., arXiv 2012.06951),

    ESS = (Σ w)² / (B · Σ w²),

averaged over random batches of the run's batch size ``B``, for each λ. It does so for every
sample, and again with a random ``(k − 1)/k`` of the misclassified samples left out
(``--thin k``): the mean loss falls, as on a longer schedule, while the losses the model
still gets wrong keep their size (the correctly classified samples keep theirs too, so the
mean cannot fall below theirs). The last row gives the thinned set's ESS at λ scaled
by the ratio of the two mean losses, the λ that carrying λ over by the mean loss would use.
If the weights' spread came from the mean loss, that row would match the first.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from absgd.training import sharpness
from absgd.training.build import build_model_for, prepare_data
from absgd.training.checkpoint import load_checkpoint
from absgd.training.config import load_config
from absgd.training.sharpness import random_batches, training_batches


def batch_ess(losses: torch.Tensor, lam: float, batch_size: int, batches: int, seed: int) -> float:
    """Mean over ``batches`` random batches (drawn without replacement within a batch) of the
    ESS of ``w ∝ exp(l/λ)``, computed in float64."""
    rows = random_batches(losses.numel(), batch_size, batches, seed)
    return float(sharpness.batch_ess(losses, lam, rows).mean())


def thin_misclassified(wrong: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Indices that keep every correctly classified sample and ``ceil(n_wrong / k)`` of the
    misclassified ones, drawn at random."""
    if k < 1:
        raise ValueError(f"--thin must be a positive integer, got {k}")
    wrong_idx = torch.nonzero(wrong).flatten()
    gen = torch.Generator().manual_seed(seed)
    keep = wrong_idx[torch.randperm(wrong_idx.numel(), generator=gen)]
    keep = keep[: math.ceil(wrong_idx.numel() / k)]
    return torch.sort(torch.cat([torch.nonzero(~wrong).flatten(), keep])).values


@torch.no_grad()
def training_losses(
    run_dir: Path, mode: str = "train"
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Per-sample cross-entropy and misclassification of the training split under the run
    directory's checkpoint (``mode`` as in the module docstring), the run's batch size, and
    the checkpoint's epoch."""
    cfg = load_config(run_dir / "config.yaml")
    data = prepare_data(cfg.data)
    state = load_checkpoint(run_dir)
    losses, wrong = [], []
    cpu = torch.device("cpu")
    # dropout and augmentation seeded from the run's seed: a call repeats exactly
    with sharpness.seeded_from_run(cfg.train.seed, cpu):
        model = build_model_for(cfg, data)
        model.load_state_dict(state["model"])
        for logits, y in training_batches(cfg, data, model, mode, cpu):
            losses.append(F.cross_entropy(logits, y, reduction="none"))
            wrong.append(logits.argmax(dim=1) != y)
    return torch.cat(losses), torch.cat(wrong), cfg.train.batch_size, int(state.get("epoch", -1))


def table(
    losses: torch.Tensor,
    wrong: torch.Tensor,
    lams: list[float],
    batch_size: int,
    thin: int,
    batches: int = 400,
    seed: int = 0,
) -> str:
    """The markdown table described in the module docstring."""
    kept = thin_misclassified(wrong, thin, seed)
    sets = {"every sample": (losses, wrong), f"misclassified thinned 1/{thin}": (
        losses[kept], wrong[kept])}  # fmt: skip
    mean_all = float(losses.mean())
    head = ["samples", "n", "misclassified", "mean loss", "mean loss, misclassified"]
    head += [f"ESS, λ = {lam:g}" for lam in lams]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, (loss, bad) in sets.items():
        wrong_mean = float(loss[bad].mean()) if bool(bad.any()) else float("nan")
        cells = [name, str(loss.numel()), f"{float(bad.double().mean()):.3f}",
                 f"{float(loss.mean()):.3f}", f"{wrong_mean:.3f}"]  # fmt: skip
        cells += [f"{batch_ess(loss, lam, batch_size, batches, seed):.3f}" for lam in lams]
        out.append("| " + " | ".join(cells) + " |")
    loss, bad = sets[f"misclassified thinned 1/{thin}"]
    ratio = float(loss.mean()) / mean_all
    cells = [f"thinned, λ × {ratio:.3f} (the mean loss's ratio)", str(loss.numel()), "", "", ""]
    cells += [f"{batch_ess(loss, lam * ratio, batch_size, batches, seed):.3f}" for lam in lams]
    out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--lams", type=float, nargs="+", default=[0.25, 0.5, 1.0, 3.0, 10.0])
    p.add_argument("--thin", type=int, default=4, help="keep 1/K of the misclassified samples")
    p.add_argument("--batches", type=int, default=400, help="random batches per ESS")
    p.add_argument(
        "--mode",
        choices=("train", "eval"),
        default="train",
        help="losses as training sees them (augmentation, batch statistics) or as evaluation",
    )
    args = p.parse_args(argv)
    if not (args.run_dir / "config.yaml").is_file():
        p.error(f"{args.run_dir} has no config.yaml: give a run directory")
    bad = [lam for lam in args.lams if not (lam > 0 and math.isfinite(lam))]
    if bad:
        p.error(f"--lams must be positive and finite, got {bad}")
    if args.thin < 1 or args.batches < 1:
        p.error(f"--thin and --batches must be positive, got {args.thin} and {args.batches}")
    losses, wrong, batch_size, epoch = training_losses(args.run_dir, args.mode)
    print(f"{args.run_dir} (checkpoint of epoch {epoch}, {args.mode} mode), batch size "
          f"{batch_size}\n")  # fmt: skip
    print(table(losses, wrong, args.lams, batch_size, args.thin, args.batches))
    quantiles = np.quantile(losses.numpy(), [0.5, 0.9, 0.99])
    print(f"\nloss quantiles 0.5 / 0.9 / 0.99: {' / '.join(f'{q:.3f}' for q in quantiles)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
