"""Train a small classifier with ABSGDTrainer; save its parameters (a helper for the tests).

python hf_run.py OUT_DIR [--epochs N] [--resume CHECKPOINT] [--batch B]
torchrun --nproc_per_node 2 hf_run.py OUT_DIR ...   (the Trainer's own DDP, on CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch import nn
from transformers import TrainingArguments

from absgd.integrations import ScheduledObjective
from absgd.integrations.huggingface import ABSGDTrainer


class Net(nn.Module):
    """An MLP that returns ``{"logits": ...}`` like a transformers model."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.body(x)}


class Rows(torch.utils.data.Dataset):
    """96 rows of an imbalanced 3-class problem (64 / 24 / 8), fixed by a seed."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.y = torch.tensor([0] * 64 + [1] * 24 + [2] * 8)
        self.x = torch.randn(96, 6, generator=g) + torch.eye(3, 6)[self.y] * 1.5

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def run(
    out: str,
    epochs: int = 3,
    batch: int = 16,
    resume: str | None = None,
    target_ess: float | None = None,
) -> dict:
    """Train (λ = ∞ in epoch 0, then λ = 1), checkpointing every epoch; return the final
    parameters, the logged λ / ESS and the objective's state (also written to result.json)."""
    training = TrainingArguments(
        output_dir=out,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch,  # the global batch: split_batches below
        learning_rate=0.1,
        optim="sgd",
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="epoch",
        report_to=[],
        use_cpu=True,
        seed=0,
        accelerator_config={"split_batches": True},
        dataloader_drop_last=True,
        disable_tqdm=True,
    )
    objective = ScheduledObjective(lam=1.0, switch_epoch=1, target_ess=target_ess)
    trainer = ABSGDTrainer(model=Net(), args=training, train_dataset=Rows(), absgd=objective)
    trainer.train(resume_from_checkpoint=resume)
    result = {
        "params": {k: v.tolist() for k, v in trainer.model.state_dict().items()},
        "history": [
            {"epoch": h["epoch"], "lam": h["absgd_lam"], "ess": h["absgd_ess"]}
            for h in trainer.state.log_history
            if "absgd_lam" in h
        ],
        "state": {k: v.tolist() for k, v in objective.state_dict().items()},
    }
    if trainer.is_world_process_zero():
        with open(f"{out}/result.json", "w") as f:
            json.dump(result, f, default=str)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resume")
    parser.add_argument("--target-ess", type=float)
    args = parser.parse_args()
    run(args.out, args.epochs, args.batch, args.resume, args.target_ess)
    # Close the process group the Trainer opened under torchrun: left to the interpreter's
    # exit, its communication threads were once destroyed while running (SIGABRT).
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
    if "LOCAL_RANK" in os.environ:
        # Under torchrun, end without the interpreter's shutdown, as `absgd` does: gloo's
        # threads still alive then abort a finished process now and then (SIGABRT, "terminate
        # called without an active exception"), which torchrun reports as a failure.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
