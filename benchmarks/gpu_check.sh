#!/usr/bin/env bash
# The prepared GPU check (issue 12, item 8): from a fresh copy of the tree on a GPU machine, in
# about 8 minutes: install, run the tests marked `gpu` (CUDA device choice and bf16, DDP over NCCL,
# four CNN trials sharing one GPU), then the GPU benchmarks, written where
# `python -m benchmarks.run --render` picks them up (benchmarks/results.json, `_cuda` figures).
#   bash benchmarks/gpu_check.sh [OUT]      # OUT: a folder for the logs (default ./gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-$PWD/gpu-check}}"
mkdir -p "$OUT"
export RAYSWEEP_DATA_DIR="${RAYSWEEP_DATA_DIR:-$PWD/../shared/data}"
nvidia-smi -L | tee "$OUT/gpus.txt"

python3 -m venv .venv-gpu
. .venv-gpu/bin/activate
pip install -q --upgrade pip
pip install -q -e '.[test]' 2>&1 | tail -2
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; print(torch.__version__)"

timeout 240 python -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.txt"
timeout 240 python -m benchmarks.run --device cuda --only gpu_path study_throughput --repeats 3 \
    2>&1 | tee "$OUT/gpu_benchmarks.txt"
python -m benchmarks.run --render
cp benchmarks/results.json BENCHMARKS.md "$OUT/"
