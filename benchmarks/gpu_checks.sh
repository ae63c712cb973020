#!/usr/bin/env bash
# Every GPU check of the decode step and the training paths, in one run of at most 8 minutes on
# an H100 or H200: imagination at 256 tokens per frame with 256 rows on s2M with a bf16 cache
# (target <= 0.2 s per step): the compiled step over 4 cache widths and attending with the
# split-K Triton kernel (worldmodels/decode_attention.py) at the fastest of its launches, timed
# alone against the step's reductions, SDPA and a copy (bench_decode_attention.py); training MFU at
# 27M and 110M for 256 and 540 tokens per frame beside transformers' GPT-2 (targets >= 45% MFU,
# >= 1.0x GPT-2's tokens/s); and the CUDA tests. Each part has its own time limit (a cold
# compilation of the decode step takes up to about 40 s) and a failing part does not stop the
# others. The imagination timings cover 3 steps from a burn-in of 4 frames (the window does not
# slide).
# Needs torch with CUDA, transformers, pytest and gymnasium (`pip install -e .[bench]`).
# Usage: bash benchmarks/gpu_checks.sh [python]
# The log goes to $OUT/gpu_checks.txt when OUT is set, else to runs/gpu_checks.txt.
set -uo pipefail
PY=${1:-.venv/bin/python}
LOG=${OUT:-runs}/gpu_checks.txt
mkdir -p "$(dirname "$LOG")"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
part() {  # part TITLE SECONDS COMMAND...: run COMMAND under a time limit, say how it ended
  local title=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $title (limit ${limit} s)"
  timeout "$limit" "$@"
  echo "-- $title: exit $?, $((SECONDS - start)) s"
}
imagine() {
  "$PY" benchmarks/bench_imagination.py --device cuda --size s2M --tokens-per-frame 256 \
    --batch-sizes 256 --cached-steps 3 --recompute-steps 0 --rounds 2 --no-rows \
    --cache-dtype bfloat16 "$@"
}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  part "imagination: s2M, 256 tokens/frame, 256 rows, bf16 cache, CUDA graphs at 4 widths" 75 \
    imagine
  part "decode attention: the Triton kernel's launches vs reductions, SDPA, a copy" 50 \
    "$PY" benchmarks/bench_decode_attention.py
  # the imagination with the kernel takes the fastest launch the part above found (if any)
  best=$(sed -n 's/^fastest launch: triton b\([0-9]*\) w\([0-9]*\) s\([0-9]*\).*/\1,\2,\3/p' \
    "$LOG" | tail -n 1)
  part "imagination: attention by the split-K Triton kernel, launch ${best:-default}" 60 \
    imagine --attention triton ${best:+--kernel "$best"}
  part "training: MFU at 27M and 110M, ours compiled vs GPT-2 (SDPA), bf16 autocast" 200 \
    "$PY" benchmarks/bench_train.py --sizes --gpu-batch 16 --rounds 3 --steps 5
  part "CUDA tests" 90 \
    "$PY" -m pytest -q -p no:cacheprovider tests/worldmodels/test_decode_step.py \
      tests/worldmodels/test_decode_attention.py tests/worldmodels/test_gpu_paths.py \
      tests/worldmodels/test_trainer.py -k cuda
} 2>&1 | tee "$LOG"
