#!/usr/bin/env bash
# The first-GPU check, one call of a few minutes on a machine with one (or two) CUDA GPUs:
#   bash benchmarks/gpu.sh [OUT_DIR]        # default gpu-results/
# 1. the 124M preset with bf16 + torch.compile for 300 steps (batch 32 x 1024 tokens, the embedded
#    corpus, no network): tokens/s and MFU against the GPU's dense bf16 peak (H100/H200: 989
#    TFLOP/s, FLOPs by the "6N+attn" convention), and the first 50 steps' loss finite and falling;
# 2. with two or more GPUs: a 2-rank torchrun DDP smoke test of the same loop (60 steps).
# Figures go to OUT_DIR/gpu_check.json (and ddp_check.json) and OUT_DIR/summary.txt; exit 1 when a
# check fails. Run from the repository root with the project's environment (.venv) set up.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-results}"
py="${PYTHON:-.venv/bin/python}"
mkdir -p "$out"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} | tee "$out/summary.txt"

status=0
"$py" benchmarks/gpu_check.py --out "$out" | tee -a "$out/summary.txt" || status=1

gpus=$("$py" -c 'import torch; print(torch.cuda.device_count())')
if [[ "$gpus" -ge 2 ]]; then
  "$py" -m torch.distributed.run --standalone --nproc_per_node 2 benchmarks/gpu_check.py \
    --ddp --steps 60 --out "$out" | tee -a "$out/summary.txt" || status=1
else
  echo "ddp smoke test skipped: $gpus GPU(s)" | tee -a "$out/summary.txt"
fi
exit "$status"
