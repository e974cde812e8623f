#!/usr/bin/env bash
# The prepared GPU check (issue 12, item 8). On a GPU machine, from a fresh copy of the tree, in about
# 10 minutes by default: 9 min 53 s on an H200 on 2026-12-04 (install 21 s, tests 2 min 7 s,
# throughput 1 min, the 5-minute training 6 min 21 s with its data, probes and test pass):
# install; the tests marked `gpu` (CUDA device choice and the amp probe, DDP over NCCL, four CNN trials sharing
# one GPU); the pixel models' and char LSTM's step throughput at 32x32; a 5-minute CNN time-to-accuracy
# sweep (the `fast` space, real CIFAR-10). On request, after those: the CNN GPU path (fp32 / bf16 /
# torch.compile, fractional GPUs) and the input pipeline on the GPU. Figures go to
# benchmarks/results.json with a `_cuda` suffix, where `python -m benchmarks.run --render` finds them.
#
#   bash benchmarks/gpu_check.sh [OUT [STEP ...]]
#     OUT   a folder for the logs and a copy of results.json after each step (default ./gpu-check)
#     STEP  any of: install tests throughput tta (the default), gpu_path and pipeline (asked for by
#           name); steps run in this order whatever the order asked
#
# Offline machines: RAYSWEEP_WHEELS=DIR installs the wheels in DIR (no index, no dependency
# resolution) into RAYSWEEP_GPU_SITE (default /tmp/raysweep-gpu-site) on top of the machine's own
# CUDA build of torch, and raysweep runs from src/. Without it, pip installs a fresh venv from the index.
# DIR holds what `pip install -e '.[test]'` adds to that machine's packages, fetched elsewhere with
# `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 ...`
# (on 2026-12-04: 70 wheels, 74 MB once ray's jars, rllib, serve, llm and dashboard client were zipped out).
# Every step has a time limit and its own log; a failed step does not stop the next. Exit 1 if any failed.
# Meant for a machine of its own: after each step it ends every Ray process there (`ray stop --force`).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-$PWD/gpu-check}}"
shift $(($# > 0 ? 1 : 0))
STEPS=" ${*:-install tests throughput tta} "
mkdir -p "$OUT"
export RAYSWEEP_DATA_DIR="${RAYSWEEP_DATA_DIR:-$PWD/../shared/data}" PYTHONUNBUFFERED=1
SITE="${RAYSWEEP_GPU_SITE:-/tmp/raysweep-gpu-site}"
if [ -n "${RAYSWEEP_WHEELS:-}" ]; then
    PY=python3
    export PYTHONPATH="$PWD/src:$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH"
else
    PY="$PWD/.venv-gpu/bin/python"
fi
failed=()

step() {  # step NAME SECONDS COMMAND...: COMMAND under a time limit, logged to OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    [[ $STEPS == *" $name "* ]] || return 0
    echo "== $name (limit ${limit} s) $(date +%T)"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc $(date +%T)"
    [ "$rc" -eq 0 ] || failed+=("$name")
    # A step stopped at its limit leaves its Ray processes running (they are in sessions of their own):
    # end them, so that the next step measures a quiet machine.
    "$PY" -m ray.scripts.scripts stop --force >/dev/null 2>&1 || true
    cp benchmarks/results.json "$OUT/" 2>/dev/null || true
}

install() {
    if [ -n "${RAYSWEEP_WHEELS:-}" ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$RAYSWEEP_WHEELS"/*.whl
    else
        python3 -m venv .venv-gpu && "$PY" -m pip install -q --upgrade pip && "$PY" -m pip install -q -e '.[test]'
    fi
    "$PY" -c "import torch, ray, mlflow, optuna, datasets
assert torch.cuda.is_available(), 'torch sees no CUDA device'
print('torch', torch.__version__, torch.cuda.get_device_name(0), '| ray', ray.__version__, '| mlflow', mlflow.__version__)"
}

bench() {  # bench NAME REPEATS: one benchmark on the GPU, merged into benchmarks/results.json
    "$PY" -m benchmarks.run --device cuda --only "$1" --repeats "$2"
}

export PY SITE
export -f install bench  # `timeout` runs programs, so the steps below run these through bash -c

nvidia-smi -L | tee "$OUT/gpus.txt"
step install 240 bash -c install
step tests 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
step throughput 120 bash -c "bench study_throughput 2"  # 4 models x 5 s, twice
step tta 450 bash -c "bench time_to_accuracy 1"  # 300 s of epochs, plus data, the one-epoch probe sweep and the test pass
step gpu_path 240 bash -c "bench gpu_path 1"  # fp32, bf16, compile, then two 4-trial sweeps
step pipeline 90 bash -c "bench input_pipeline 2"
"$PY" -m benchmarks.run --render >/dev/null 2>&1 && cp BENCHMARKS.md "$OUT/" || true
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu check: failed steps: ${failed[*]}"
    exit 1
fi
echo "gpu check: every step passed"
