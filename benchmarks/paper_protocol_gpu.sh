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
#   fp32, one file per grid and method, $OUT/cifar10_lt_repro_*.jsonl; the authors' CE with
#   batch 128 and with bf16 (the baseline gap), and their CB-DRW with the raw Σ c·l of their
#   ABSGD code (CONTROLS=0 leaves these three out); then the paired tables.
#   Every run is its own process, in two waves: first each seed of the methods without λ and
#   each λ / target candidate of the ABSGD methods (seed 0), then the other seeds of the
#   chosen values; so the longest chain is two runs. SETTING overrides the setting ("exp,
#   ratio 10", "step, ratio 100");
#   GRIDS (space-separated), BASES (comma-separated) and CONTROLS=0 run a part of it, e.g.
#   GRIDS=cifar10_lt_repro_authors BASES=LDAM-DRW CONTROLS=0: 10 runs at once, then 4 (the
#   grids resume from their files, so parts add up). Timing on one H200 through MPS: the
#   bf16 paper runs took 410-448 s with 9 sharing it; the authors' preset in fp32 with the
#   test split every epoch, 613-652 s with 11 and then 6 sharing it, so both waves of one
#   base need more than a 15-minute session: for such a session, run one wave of a few
#   fixed methods with benchmarks/gpu_wave.py and a plan in benchmarks/gpu_plans/.
# MAX_PARALLEL: at most this many runs at once (default 24); the others wait their turn.
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
failed=0
launch() {  # grid, method, file, log, further grid.py arguments; at most MAX_PARALLEL at once
    while (( $(jobs -rp | wc -l) >= ${MAX_PARALLEL:-24} )); do wait -n || failed=1; done
    "$PYTHON" benchmarks/grid.py "$1" --data-root "$DATA" --out "$3" --methods "$2" \
        "${keep[@]}" "${@:5}" "${extra[@]}" > "$4" 2>&1 &
    pids+=($!)
}
wait_all() {  # wait for every launched process; 1 if any failed (also one reaped earlier)
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || failed=1; done
    pids=()
    local result=$failed
    failed=0
    return $result
}
grid_value() {  # grid, method, "lams" or "seeds": the values from benchmarks/grids.py
    "$PYTHON" -c 'import sys; sys.path.insert(0, "benchmarks"); from grids import GRIDS
g = GRIDS[sys.argv[1]]; m = g.methods[sys.argv[2]]
print(*(m.lams if sys.argv[3] == "lams" else g.seeds))' "$1" "$2" "$3"
}
if [[ "${REPRO:-0}" == 1 ]]; then
    setting=${SETTING:-exp, ratio 100}
    read -r -a grids <<< "${GRIDS:-cifar10_lt_repro_ours cifar10_lt_repro_authors}"
    BASES_LIST=${BASES:-CE,CB-DRW,LDAM-DRW}
    IFS=',' read -r -a bases <<< "$BASES_LIST"
    jobs=()  # grid|method
    for grid in "${grids[@]}"; do
        for base in "${bases[@]}"; do
            for method in "$base" "ABSGD + $base" "ABSGD-ESS + $base"; do jobs+=("$grid|$method"); done
        done
        if [[ $grid == cifar10_lt_repro_authors && "${CONTROLS:-1}" == 1 ]]; then
            for method in "CE, batch 128" "CE, bf16" "CB-DRW, unnormalised"; do
                # each control beside its base only
                [[ ",$BASES_LIST," == *",${method%%,*},"* ]] && jobs+=("$grid|$method")
            done
        fi
    done
    status=0
    for wave in 1 2; do
        for job in "${jobs[@]}"; do
            grid=${job%%|*} method=${job#*|}
            file="$OUT/${grid}_$(slug "$setting")_$(slug "$method").jsonl"
            values=$(grid_value "$grid" "$method" lams)  # a bad GRIDS / BASES stops here
            read -r -a lams <<< "$values"
            values=$(grid_value "$grid" "$method" seeds)
            read -r -a seeds <<< "$values"
            if [[ ${#lams[@]} -gt 0 && $wave == 1 ]]; then  # each candidate, seed 0
                for lam in "${lams[@]}"; do
                    launch "$grid" "$method" "$file" "$file.lam$lam.log" --lams "$lam" \
                        --settings "$setting" --set train.device=cuda
                done
            elif [[ ${#lams[@]} -gt 0 || $wave == 1 ]]; then  # each seed (of the chosen λ)
                for seed in "${seeds[@]}"; do
                    [[ ${#lams[@]} -gt 0 && $seed == "${seeds[0]}" ]] && continue
                    launch "$grid" "$method" "$file" "$file.seed$seed.log" --only-seeds "$seed" \
                        --settings "$setting" --set train.device=cuda
                done
            fi
        done
        wait_all || status=1
    done
    for grid in "${grids[@]}"; do
        pairs=()
        for base in "${bases[@]}"; do
            pairs+=(--pair "$base" "ABSGD + $base" --pair "$base" "ABSGD-ESS + $base")
        done
        if [[ $grid == cifar10_lt_repro_authors ]]; then
            pairs+=(--pair CE "CE, batch 128" --pair CE "CE, bf16")
            pairs+=(--pair CB-DRW "CB-DRW, unnormalised")
        fi
        "$PYTHON" benchmarks/summarize.py "$OUT/${grid}"_*.jsonl --after-switch "${pairs[@]}" \
            || status=1
    done
    nvidia-smi --query-gpu=name --format=csv,noheader || true
    exit $status
fi
for method in "CE" "LDAM-DRW" "ABSGD + LDAM-DRW" "ABSGD-ESS + LDAM-DRW"; do
    file="$OUT/cifar10_lt_paper_$(slug "$method").jsonl"
    launch cifar10_lt_paper "$method" "$file" "$file.log"
done
if [[ "${SHORT:-0}" == 1 ]]; then
    for method in "CE" "CB-DRW" "LDAM-DRW" "ABSGD" "ABSGD + CB-DRW" "ABSGD + LDAM-DRW"; do
        file="$OUT/cifar10_lt_short_gpu_$(slug "$method").jsonl"
        launch cifar10_lt_short "$method" "$file" "$file.log" --set train.device=cuda
    done
fi
status=0
wait_all || status=1
"$PYTHON" benchmarks/summarize.py "$OUT"/cifar10_lt_paper_*.jsonl || status=1
if [[ "${SHORT:-0}" == 1 ]]; then
    "$PYTHON" benchmarks/summarize.py "$OUT"/cifar10_lt_short_gpu_*.jsonl || status=1
fi
nvidia-smi --query-gpu=name --format=csv,noheader || true
exit $status
