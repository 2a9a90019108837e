#!/usr/bin/env bash
# The full CIFAR-10-LT (exp, ratio 100) protocol of Cao et al. 2019 / the ABSGD paper on one GPU:
# ResNet-32, 200 epochs, batch 128, LR 0.1 (5 warm-up epochs, x0.01 at 160, x0.0001 at 180),
# for CE, LDAM-DRW and ABSGD + LDAM-DRW (λ = 5, γ = 0.7, two-stage switch at 160), bf16
# autocast, channels-last, the training images held on the GPU. The three runs share the GPU
# (ResNet-32 leaves most of it idle); each appends its JSON line to its own file, then the
# summary table is printed.
#
#   DATA=../shared/data/cifar10-jpeg/cifar10_jpeg_q75.tar.gz bash benchmarks/paper_protocol_gpu.sh
#
# DATA: an image-folder archive or directory of CIFAR-10 (train|test/<class>/*.jpg or .png).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg/cifar10_jpeg_q75.tar.gz}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
pids=()
for method in "CE" "LDAM-DRW" "ABSGD + LDAM-DRW"; do
    file="$OUT/cifar10_lt_paper_$(echo "$method" | tr -c 'A-Za-z0-9\n' '_').jsonl"
    python benchmarks/grid.py cifar10_lt_paper --data-root "$DATA" --out "$file" \
        --methods "$method" > "$file.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
python benchmarks/summarize.py "$OUT"/cifar10_lt_paper_*.jsonl
nvidia-smi --query-gpu=name --format=csv,noheader || true
exit $status
