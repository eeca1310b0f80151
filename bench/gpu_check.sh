#!/usr/bin/env bash
# The GPU check of issue 27, for a machine with one NVIDIA GPU whose python3 has CUDA torch,
# psutil, rich, nvidia-ml-py and pytest (as the lent GPU machines have them; no network
# needed). Runs the tests marked gpu, then bench/gpu_packing.py, and prints each figure.
# About 5 minutes. Run from the checkout: bash bench/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, pynvml; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
echo "== the tests marked gpu"
timeout 360 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py tests/test_gpu_placement.py
echo "== bench/gpu_packing.py"
timeout 240 python3 bench/gpu_packing.py
