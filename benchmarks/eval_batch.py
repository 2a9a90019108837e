"""Evaluation speed by batch size: which ``train.eval_batch_size`` default suits a device.

ResNet-32 (CIFAR, random weights, channels-last, eval mode, no gradients) predicts the same
``--images`` random 32×32 images at each batch size; the sizes alternate ``--repeats`` times
(A B C A B C ...) and the median images per second is reported, with its ratio to the largest
size. Evaluation in ``absgd train`` runs on the validation split every epoch and, with
``train.test_every``, on the test split, so on a CPU its batch size matters.

    OMP_NUM_THREADS=1 python benchmarks/eval_batch.py
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from absgd.fileio import write_json
from absgd.models import build_model


def images_per_second(model: torch.nn.Module, images: torch.Tensor, batch: int) -> float:
    sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            model(images[i : i + batch])
    sync()
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2048, help="images per measurement")
    p.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--repeats", type=int, default=3, help="A B C rounds")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.images < 1 or args.repeats < 1 or min(args.batches) < 1:
        p.error(
            f"--images, --repeats and --batches must be positive, got {args.images}, "
            f"{args.repeats}, {args.batches}"
        )
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("resnet32", num_classes=10).to(device).eval()
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    images = torch.randn(args.images, 3, 32, 32, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    images_per_second(model, images[: max(args.batches)], max(args.batches))  # warm-up
    rates: dict[int, list[float]] = {b: [] for b in args.batches}
    for _ in range(args.repeats):
        for b in args.batches:
            rates[b].append(images_per_second(model, images, b))
    medians = {b: statistics.median(r) for b, r in rates.items()}
    top = max(args.batches)
    threads = torch.get_num_threads()
    print(f"ResNet-32 evaluation, {args.images} images, {device}, {threads} thread(s), "
          f"{platform.machine()}")  # fmt: skip
    print(f"| eval batch | images/s (median) | vs batch {top} |")
    print("|---|---|---|")
    for b in args.batches:
        print(f"| {b} | {medians[b]:.0f} | {medians[b] / medians[top]:.2f}x |")
    if args.json:
        record = {"device": str(device), "threads": torch.get_num_threads(), "rates": rates}
        write_json(args.json, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
