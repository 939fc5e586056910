#!/usr/bin/env bash
# Everything posekit can only check on a CUDA machine, in one go (issue 22):
#   1. the machine report (`posekit system`: card, CUDA, cuDNN, bf16),
#   2. the tests of the CUDA code paths (they skip on machines without a GPU):
#      fp32/fp16/bf16 outputs against the CPU, torch.compile, onnxruntime's CUDA
#      provider, pinned buffers, the batch from free GPU memory, training on the GPU
#      (cuDNN benchmark, pinned batches, mixed precision) and DDP on two GPUs,
#      plus the CPU tests of the same modules (the CPU reference the GPU is compared to),
#   3. the speed tables on the GPU: network-only (eager, optimized, fp16, compile),
#      end-to-end prediction on the shared videos and training throughput,
#   4. the 4K bottom-up memory check: batch chosen and peak GPU memory.
# Every part's output goes to $OUT (default: gpu_check_<date>/): paste the tables and
# the card's name into the README. About 5-8 minutes on an H100.
#
# Usage: bash benchmarks/gpu_check.sh [OUT]   (from the repository root, venv active)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_$(date +%Y%m%d_%H%M)}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
status=0
step() { echo "== $1"; }

step "machine"
$PY -m posekit.cli system | tee "$OUT/system.txt"
$PY -m posekit.cli system --json > "$OUT/system.json"
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA GPU here: the GPU tests would only skip" >&2
  exit 2
fi

step "GPU tests"
$PY -m pytest -q -rs tests/inference/test_gpu_inference.py tests/training/test_gpu_training.py \
  tests/inference/test_peaks.py tests/inference/test_runtime.py tests/inference/test_memory.py \
  2>&1 | tee "$OUT/tests.txt" || status=1

step "network speed (eager, optimized, fp16, compile)"
$PY benchmarks/inference_network.py --device cuda --batch-size 8 --compile \
  --json "$OUT/inference_network.json" 2>&1 | tee "$OUT/inference_network.txt" || status=1

step "end-to-end prediction speed"
$PY benchmarks/inference_fps.py --device cuda --batch-size 8 --frames 200 \
  --variants torch:fp32,torch:fp16,torch:bf16,compile:fp16 2>&1 | tee "$OUT/inference_fps.txt" \
  || status=1

step "training throughput"
$PY benchmarks/train_throughput.py --device cuda --sizes 256,512 --steps 30 \
  --precisions 32-true,bf16-mixed,16-mixed 2>&1 | tee "$OUT/train_throughput.txt" || status=1

step "4K bottom-up: batch from free GPU memory, peak"
$PY - <<'PY' 2>&1 | tee "$OUT/memory_4k.txt" || status=1
import time
import numpy as np
import torch
from posekit.config.model import (BackboneConfig, HeadsConfig, ModelConfig, MultiInstanceConfig,
    MultiInstanceConfmapsHeadConfig, PartAffinityFieldsHeadConfig, UNetConfig)
from posekit.inference.memory import format_bytes, peak_memory
from posekit.inference.predictors.bottomup import BottomUpPredictor
from posekit.model.network import Model

config = ModelConfig(
    backbone=BackboneConfig(unet=UNetConfig(filters=16, max_stride=16, output_stride=4)),
    heads=HeadsConfig(multi_instance=MultiInstanceConfig(
        confmaps=MultiInstanceConfmapsHeadConfig(part_names=["a", "b", "c"], output_stride=4),
        pafs=PartAffinityFieldsHeadConfig(edges=[("a", "b"), ("b", "c")], output_stride=8))),
)
frames = np.zeros((16, 2160, 3840, 3), np.uint8)
for budget in (None, "2G"):
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    pred = BottomUpPredictor(Model.from_config(config, in_channels=3).eval(), device="cuda",
                             progress=False, max_memory=budget)
    t = time.perf_counter()
    pred.predict(frames)
    seconds = time.perf_counter() - t
    plan = next(iter(pred.batch_plans.values()))
    peak, what = peak_memory("cuda")
    print(f"--max-memory {budget or 'default'}: {plan.describe()}; peak {what} "
          f"{format_bytes(peak)}; {len(frames) / seconds:.1f} frames/s")
PY

echo "results in $OUT/ (exit $status)"
exit $status
