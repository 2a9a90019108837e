"""ABSGD in PyTorch Lightning: plain training against ABSGD on long-tailed images, offline.

Data: Fashion-MNIST from ``../shared/data/fashion-mnist`` (or ``$ABSGD_SHARED_DATA``) when it
is there, made long-tailed (exponential profile, ratio 100: 6,000 images of class 0 down to
60 of class 9), tested on the balanced test set; otherwise scikit-learn's bundled 8×8 digits
(ratio 50, a balanced held-out test split). The model is an MLP on the pixels, trained with
momentum SGD. Both runs share everything (seed, model, batches, learning rate) except the
loss: plain cross-entropy, or ABSGD through :class:`absgd.integrations.ScheduledObjective`
and :class:`absgd.integrations.lightning.ABSGDCallback`: plain for the first half of the
epochs, then λ solved per batch for an effective sample size of 0.9 (the two-stage protocol
of the paper with the scale-free temperature). One seed: a demonstration of the
integration, not a benchmark (docs/results.md has those).

    pip install 'torch-absgd[lightning,sklearn]'
    python examples/lightning.py            # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Run as a script, this file's folder is first on sys.path and its name would shadow the
# lightning package: take the folder off before importing it.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from absgd.data import make_long_tailed  # noqa: E402
from absgd.data.sources import SOURCES  # noqa: E402
from absgd.integrations import ScheduledObjective  # noqa: E402
from absgd.integrations.lightning import ABSGDCallback  # noqa: E402


def load() -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(name, x_train, y_train, x_test, y_test) as float32 pixels in [0, 1]."""
    shared = os.environ.get("ABSGD_SHARED_DATA")
    root = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared" / "data"
    if (root / "fashion-mnist").is_dir():
        name, ratio = "Fashion-MNIST-LT (ratio 100)", 100.0
        splits = SOURCES.build("fashion_mnist", root=str(root / "fashion-mnist"))
    else:
        name, ratio = "digits-LT (ratio 50; Fashion-MNIST not found)", 50.0
        splits = SOURCES.build("digits")
    train = make_long_tailed(splits.train, ratio, seed=0)

    def flat(x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), -1) / 255.0).astype(np.float32)

    return name, flat(train.x), train.y, flat(splits.test.x), splits.test.y


class Classifier(L.LightningModule):
    def __init__(self, n_in: int, n_classes: int, criterion: nn.Module, lr: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(n_in, 256), nn.ReLU(), nn.Linear(256, n_classes))
        self.criterion = criterion
        self.lr = lr

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return self.criterion(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)


def recall_per_class(model: Classifier, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        pred = model.net(torch.from_numpy(x)).argmax(1).numpy()
    return np.array([np.mean(pred[y == c] == c) for c in np.unique(y)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    name, x_train, y_train, x_test, y_test = load()
    n_classes = int(y_train.max()) + 1
    switch = args.epochs // 2
    runs = {
        "plain cross-entropy": nn.CrossEntropyLoss(),
        f"ABSGD (ESS 0.9 from epoch {switch})": ScheduledObjective(
            lam=1.0, target_ess=0.9, switch_epoch=switch
        ),
    }
    print(f"{name}: {len(y_train)} training images {np.bincount(y_train).tolist()}")
    results = {}
    for label, criterion in runs.items():
        started = time.perf_counter()
        torch.manual_seed(0)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)),
            batch_size=128,
            shuffle=True,
        )
        model = Classifier(x_train.shape[1], n_classes, criterion, lr=0.05)
        callbacks = [ABSGDCallback(log=False)] if isinstance(criterion, ScheduledObjective) else []
        trainer = L.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            callbacks=callbacks,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, loader)
        recall = recall_per_class(model, x_test, y_test)
        results[label] = (recall, time.perf_counter() - started)

    print(f"\ntest set, {args.epochs} epochs, seed 0 (in %):\n")
    print("| loss | balanced accuracy | worst class | tail half (classes 5–9) | time |")
    print("|---|---|---|---|---|")
    for label, (recall, seconds) in results.items():
        tail = recall[len(recall) // 2 :].mean()
        print(
            f"| {label} | {100 * recall.mean():.2f} | {100 * recall.min():.2f} | "
            f"{100 * tail:.2f} | {seconds:.0f} s |"
        )
    print("\nper-class recall (%):")
    for label, (recall, _) in results.items():
        print(f"  {label}: " + " ".join(f"{100 * r:.0f}" for r in recall))


if __name__ == "__main__":
    main()
