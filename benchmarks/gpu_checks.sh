#!/usr/bin/env bash
# Every GPU check of the decode step and the training paths, in one run of about 8 minutes on an
# H100 or H200: the CUDA tests, imagination at 256 tokens per frame with 256 rows on s2M (target
# <= 0.2 s per step), and training MFU at 27M and 110M for 256 and 540 tokens per frame beside
# transformers' GPT-2 (target >= 45% MFU, >= 1.0x GPT-2's tokens/s). Needs `pip install -e .[bench]`.
# Usage: bash benchmarks/gpu_checks.sh [python]   (output also goes to runs/gpu_checks.txt)
set -euo pipefail
PY=${1:-.venv/bin/python}
mkdir -p runs
{
  echo "== CUDA tests"
  "$PY" -m pytest -q -p no:cacheprovider tests/worldmodels/test_decode_step.py \
      tests/worldmodels/test_gpu_paths.py -k "cuda"
  echo "== imagination: s2M, 256 tokens/frame, 256 rows (cached = CUDA graph, fp32 then bf16 cache)"
  "$PY" benchmarks/bench_imagination.py --device cuda --size s2M --tokens-per-frame 256 \
      --batch-sizes 256 --cached-steps 4 --recompute-steps 1 --rounds 2 --no-rows
  "$PY" benchmarks/bench_imagination.py --device cuda --size s2M --tokens-per-frame 256 \
      --batch-sizes 256 --cached-steps 4 --recompute-steps 0 --rounds 2 --no-rows \
      --cache-dtype bfloat16
  echo "== training: MFU at the paper sizes, ours compiled vs GPT-2 (SDPA), bf16 autocast"
  "$PY" benchmarks/bench_train.py --sizes s2M --batch 256 --gpu-batch 8 --rounds 3 --steps 5
} 2>&1 | tee runs/gpu_checks.txt
