#!/usr/bin/env bash
# One wave of grid runs on a one-GPU machine (benchmarks/gpu_wave.py), in calls of at most a
# few minutes each: the first call starts CUDA MPS and launches the plan, every call
# (the first included) watches for STOP_IN seconds and copies the results into PACK.
#
#   bash benchmarks/gpu_wave_session.sh PLAN BUDGET STOP_IN PACK [PROTECT]
#
# PLAN: a JSON plan (benchmarks/gpu_plans/); BUDGET: seconds from the launch by which every
# run should end (runs that project past it are stopped, last-listed first, never the first
# PROTECT, default 6); STOP_IN: seconds this call watches. The data archive is expected at
# .devdata/cifar10_jpeg_q75.tar.gz (the plans' --data-root); wheels in .whl/ (for packages
# the machine lacks, e.g. pydantic) are installed into /tmp/site first. WORK=/tmp/wave.
set -euo pipefail
cd "$(dirname "$0")/.."
plan=$1 budget=$2 stop_in=$3 pack=$4 protect=${5:-6}
work=${WORK:-/tmp/wave}
py=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null && [[ ! -d /tmp/site ]]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$pack"
if [[ ! -f $work/state.json ]]; then
    { nvidia-cuda-mps-control -d && echo "MPS on" || echo "MPS off"; } > /tmp/mps.txt 2>&1
    {
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
        cat /tmp/mps.txt
        "$py" -c "import torch; print(torch.__version__, torch.cuda.is_available())"
    } > "$pack/device.txt" 2>&1
    cat "$pack/device.txt"
fi
"$py" benchmarks/gpu_wave.py "$plan" --work "$work" --budget "$budget" --stop-in "$stop_in" \
    --protect "$protect" --pack "$pack" --checkpoints
