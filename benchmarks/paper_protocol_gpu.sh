#!/usr/bin/env bash
# The full CIFAR-10-LT (exp, ratio 100) protocol of Cao et al. 2019 / the ABSGD paper on one GPU:
# ResNet-32, 200 epochs, batch 128, LR 0.1 (5 warm-up epochs, x0.01 at 160, x0.0001 at 180),
# for CE, LDAM-DRW, ABSGD + LDAM-DRW (λ = 5, γ = 0.7, two-stage switch at 160) and
# ABSGD-ESS + LDAM-DRW (target effective sample size 0.9 from the switch), bf16
# autocast, channels-last, the training images held on the GPU. The four runs share the GPU
# (ResNet-32 leaves most of it idle); each appends its JSON line to its own file, then the
# summary table is printed.
#
#   DATA=../shared/data/cifar10-jpeg/cifar10_jpeg_q75.tar.gz bash benchmarks/paper_protocol_gpu.sh
#
# DATA: an image-folder archive or directory of CIFAR-10 (train|test/<class>/*.jpg or .png).
# OUT: where the JSON lines and logs go (default benchmarks/results).
# KEEP: if set, every run's directory (metrics.jsonl, final.json, plots) is kept under it.
# SHORT=1: also run the 20-epoch CIFAR-10-LT grid (cifar10_lt_short, six methods, fp32 as on
#   the CPU) on the same GPU, one process per method, into $OUT/cifar10_lt_short_gpu_*.jsonl.
# REPRO=1: instead, the decisive comparison of the reproduction issue on exp ratio 100: the
#   grids cifar10_lt_repro_ours and cifar10_lt_repro_authors (CE, CB-DRW, LDAM-DRW, each
#   with ABSGD at a validation-chosen λ and with a validation-chosen target ESS; 3 seeds),
#   fp32, one process per grid and method, into $OUT/cifar10_lt_repro_*.jsonl; and the
#   authors' CE with batch 128 and with bf16 (the baseline gap, 20 processes in all);
#   then the paired tables. SETTING overrides the setting ("exp, ratio 10", "step, ratio 100");
#   GRIDS (space-separated), BASES (comma-separated) and CONTROLS=0 run a part of it, e.g.
#   GRIDS=cifar10_lt_repro_authors BASES=LDAM-DRW CONTROLS=0 for a short GPU session (the
#   grids resume from their files, so parts add up).
# PYTHON: the interpreter (default python).
# EXTRA: further `--set KEY=VALUE` arguments for every run (e.g. a quick smoke test).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg/cifar10_jpeg_q75.tar.gz}
OUT=${OUT:-benchmarks/results}
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
read -r -a extra <<< "${EXTRA:-}"
keep=()
if [[ -n "${KEEP:-}" ]]; then keep=(--keep-runs "$KEEP"); fi
slug() { echo "$1" | tr -c 'A-Za-z0-9\n' '_'; }

pids=()
launch() {  # grid, method, file, further grid.py arguments
    "$PYTHON" benchmarks/grid.py "$1" --data-root "$DATA" --out "$3" --methods "$2" \
        "${keep[@]}" "${@:4}" "${extra[@]}" > "$3.log" 2>&1 &
    pids+=($!)
}
if [[ "${REPRO:-0}" == 1 ]]; then
    setting=${SETTING:-exp, ratio 100}
    read -r -a grids <<< "${GRIDS:-cifar10_lt_repro_ours cifar10_lt_repro_authors}"
    IFS=',' read -r -a bases <<< "${BASES:-CE,CB-DRW,LDAM-DRW}"
    for grid in "${grids[@]}"; do
        for base in "${bases[@]}"; do
            for method in "$base" "ABSGD + $base" "ABSGD-ESS + $base"; do
                launch "$grid" "$method" "$OUT/${grid}_$(slug "$setting")_$(slug "$method").jsonl" \
                    --settings "$setting" --set train.device=cuda
            done
        done
    done
    if [[ " ${grids[*]} " == *" cifar10_lt_repro_authors "* && "${CONTROLS:-1}" == 1 ]]; then
        for method in "CE, batch 128" "CE, bf16"; do  # the baseline gap, one factor at a time
            launch cifar10_lt_repro_authors "$method" \
                "$OUT/cifar10_lt_repro_authors_$(slug "$setting")_$(slug "$method").jsonl" \
                --settings "$setting" --set train.device=cuda
        done
    fi
    status=0
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    for grid in "${grids[@]}"; do
        pairs=()
        for base in "${bases[@]}"; do
            pairs+=(--pair "$base" "ABSGD + $base" --pair "$base" "ABSGD-ESS + $base")
        done
        if [[ $grid == cifar10_lt_repro_authors ]]; then
            pairs+=(--pair CE "CE, batch 128" --pair CE "CE, bf16")
        fi
        "$PYTHON" benchmarks/summarize.py "$OUT/${grid}"_*.jsonl "${pairs[@]}" || status=1
    done
    nvidia-smi --query-gpu=name --format=csv,noheader || true
    exit $status
fi
for method in "CE" "LDAM-DRW" "ABSGD + LDAM-DRW" "ABSGD-ESS + LDAM-DRW"; do
    launch cifar10_lt_paper "$method" "$OUT/cifar10_lt_paper_$(slug "$method").jsonl"
done
if [[ "${SHORT:-0}" == 1 ]]; then
    for method in "CE" "CB-DRW" "LDAM-DRW" "ABSGD" "ABSGD + CB-DRW" "ABSGD + LDAM-DRW"; do
        launch cifar10_lt_short "$method" "$OUT/cifar10_lt_short_gpu_$(slug "$method").jsonl" \
            --set train.device=cuda
    done
fi
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
"$PYTHON" benchmarks/summarize.py "$OUT"/cifar10_lt_paper_*.jsonl || status=1
if [[ "${SHORT:-0}" == 1 ]]; then
    "$PYTHON" benchmarks/summarize.py "$OUT"/cifar10_lt_short_gpu_*.jsonl || status=1
fi
nvidia-smi --query-gpu=name --format=csv,noheader || true
exit $status
