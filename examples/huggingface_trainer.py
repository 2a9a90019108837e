"""ABSGD in the Hugging Face Trainer: a tiny transformer on an imbalanced text task, offline.

Nothing is downloaded: the model is a BERT built from a config (2 layers, width 64, randomly
initialised) and the task is generated here. Each "sentence" is 24 tokens from a vocabulary of
200: filler words, a cue word of its class twice and a cue word of another class once, so the
model must find which cue occurs twice. Five classes, long-tailed training set
(exponential profile, ratio 50: 1,000 sentences of class 0 down to 20 of class 4), balanced
test set (200 per class).

Three runs share the seed, the model, the batches and the optimiser (AdamW, learning rate
1e-3 with the Trainer's linear decay; ``--optim sgd --lr 0.1`` for momentum SGD, which did not
learn this task from a random start in 12 epochs): ``transformers.Trainer`` with its
cross-entropy, ``ABSGDTrainer`` with λ = 1 from half-way (the paper's two-stage protocol), and
``ABSGDTrainer`` with λ solved per batch for an effective sample size of 0.9 from half-way.
One seed: a demonstration of the integration, not a benchmark.

    pip install 'torch-absgd[transformers]'
    python examples/huggingface_trainer.py        # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from absgd.data import long_tail_counts
from absgd.integrations import ScheduledObjective
from absgd.integrations.huggingface import ABSGDTrainer

VOCAB, LENGTH, CLASSES = 200, 24, 5
CUES = 8  # cue words per class: ids 10 + 8c ... 10 + 8c + 7; ids from 50 on are fillers


def sentences(counts: list[int], seed: int) -> dict[str, torch.Tensor]:
    """``counts[c]`` sentences of class c: fillers, one cue of another class, and two cues of
    class c (the cue that occurs twice names the class)."""
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for c, n in enumerate(counts):
        for _ in range(n):
            tokens = rng.integers(50, VOCAB, size=LENGTH)
            other = rng.choice([k for k in range(CLASSES) if k != c])
            cues = [10 + CUES * c + rng.integers(CUES)] * 2 + [
                10 + CUES * other + rng.integers(CUES)
            ]
            places = rng.choice(np.arange(1, LENGTH), size=len(cues), replace=False)
            tokens[places] = cues
            tokens[0] = 1  # [CLS]
            ids.append(tokens)
            labels.append(c)
    return {"input_ids": torch.tensor(np.array(ids)), "labels": torch.tensor(labels)}


class Rows(torch.utils.data.Dataset):
    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data["labels"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.data.items()}


def model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=LENGTH,
        num_labels=CLASSES,
    )
    return BertForSequenceClassification(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--optim", default="adamw_torch", help="a TrainingArguments optimiser")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = Rows(sentences(long_tail_counts(1000, CLASSES, 50), seed=0))
    test = sentences([200] * CLASSES, seed=1)
    switch = args.epochs // 2
    runs = {
        "Trainer (cross-entropy)": None,
        f"ABSGDTrainer (λ=1 from epoch {switch})": ScheduledObjective(lam=1.0, switch_epoch=switch),
        f"ABSGDTrainer (ESS 0.9 from epoch {switch})": ScheduledObjective(
            lam=1.0, target_ess=0.9, switch_epoch=switch
        ),
    }
    print(f"training sentences per class: {train.data['labels'].bincount().tolist()}")
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for label, objective in runs.items():
            started = time.perf_counter()
            training = TrainingArguments(
                output_dir=out,
                num_train_epochs=args.epochs,
                per_device_train_batch_size=32,
                learning_rate=args.lr,
                optim=args.optim,
                optim_args="momentum=0.9" if args.optim == "sgd" else None,
                save_strategy="no",
                report_to=[],
                use_cpu=True,
                seed=0,
                disable_tqdm=True,
                log_level="error",
            )
            net = model()
            if objective is None:
                trainer: Trainer = Trainer(model=net, args=training, train_dataset=train)
            else:
                trainer = ABSGDTrainer(
                    model=net, args=training, train_dataset=train, absgd=objective
                )
            trainer.train()
            net.eval()
            with torch.no_grad():
                pred = net(input_ids=test["input_ids"]).logits.argmax(1)
            y = test["labels"]
            recall = np.array([float((pred[y == c] == c).float().mean()) for c in range(CLASSES)])
            results[label] = (recall, time.perf_counter() - started)

    print(f"\nbalanced test set, {args.epochs} epochs, seed 0 (in %):\n")
    print("| trainer | balanced accuracy | worst class | rarest two classes | time |")
    print("|---|---|---|---|---|")
    for label, (recall, seconds) in results.items():
        print(
            f"| {label} | {100 * recall.mean():.2f} | {100 * recall.min():.2f} | "
            f"{100 * recall[-2:].mean():.2f} | {seconds:.0f} s |"
        )
    print("\nper-class recall (%), class 0 (most frequent) to 4 (rarest):")
    for label, (recall, _) in results.items():
        print(f"  {label}: " + " ".join(f"{100 * r:.0f}" for r in recall))


if __name__ == "__main__":
    main()
