"""Train a small classifier with Lightning and ABSGDCallback; save its parameters (a helper
for the tests).

    python lightning_run.py OUT_DIR [--devices 2] [--epochs N] [--resume CKPT]
"""

from __future__ import annotations

import argparse
import json

import lightning as L
import torch
from torch import nn

from absgd.integrations import ScheduledObjective
from absgd.integrations.lightning import ABSGDCallback


class Classifier(L.LightningModule):
    def __init__(self, target_ess: float | None = None, batch: int = 16) -> None:
        super().__init__()
        self.batch = batch  # the global batch
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        self.criterion = ScheduledObjective(lam=1.0, switch_epoch=1, target_ess=target_ess)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        return self.criterion(self.net(x), y)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        # Unshuffled, and dealt round-robin by an unshuffled DistributedSampler (Lightning's
        # own shuffles), so the processes' batches together are the single process's batch.
        data, world = dataset(), self.trainer.world_size
        sampler = torch.utils.data.DistributedSampler(data, shuffle=False) if world > 1 else None
        return torch.utils.data.DataLoader(data, batch_size=self.batch // world, sampler=sampler)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def dataset() -> torch.utils.data.TensorDataset:
    """96 rows of an imbalanced 3-class problem (64 / 24 / 8), fixed by a seed."""
    g = torch.Generator().manual_seed(1)
    y = torch.tensor([0] * 64 + [1] * 24 + [2] * 8)
    x = torch.randn(96, 6, generator=g) + torch.eye(3, 6)[y] * 1.5
    return torch.utils.data.TensorDataset(x, y)


def run(
    out: str,
    devices: int = 1,
    epochs: int = 3,
    batch: int = 16,
    resume: str | None = None,
    target_ess: float | None = None,
) -> dict:
    """Train (λ = ∞ in epoch 0, then λ = 1); save ``final.ckpt``; return the final parameters
    and the objective's state (also written to result.json). ``devices > 1`` re-runs this
    file as a script in each process: call it from the command line then."""
    trainer = L.Trainer(
        use_distributed_sampler=False,
        max_epochs=epochs,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        callbacks=[ABSGDCallback()],
        logger=L.pytorch.loggers.CSVLogger(out, name="logs", version=0),
        log_every_n_steps=1,
        default_root_dir=out,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    module = Classifier(target_ess, batch)
    trainer.fit(module, ckpt_path=resume)
    trainer.save_checkpoint(f"{out}/final.ckpt")
    result = {
        "params": {k: v.tolist() for k, v in module.net.state_dict().items()},
        "state": {k: v.tolist() for k, v in module.criterion.state_dict().items()},
    }
    if trainer.is_global_zero:
        with open(f"{out}/result.json", "w") as f:
            json.dump(result, f, default=str)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="the global batch")
    parser.add_argument("--resume")
    parser.add_argument("--target-ess", type=float)
    args = parser.parse_args()
    run(args.out, args.devices, args.epochs, args.batch, args.resume, args.target_ess)


if __name__ == "__main__":
    main()
