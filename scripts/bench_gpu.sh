#!/usr/bin/env bash
# The GPU benchmark runbook: every measurement behind the GPU targets of docs/benchmarks.md, in stages
# that each fit one call of a time-limited GPU machine. Runs from a plain checkout (no pip install:
# `python3 -m gdkvm` with the checkout on PYTHONPATH), so the machine's own CUDA torch and Triton are used.
#
#   scripts/bench_gpu.sh                 # all stages: env kernels fps graphs compile scaling
#   scripts/bench_gpu.sh kernels fps     # some stages
#
# CSVs go to $OUT (default results/bench), named by GPU, precision and commit; commit them.
# Settings (environment): PY (python3), DEVICE (cuda), PRESET (paper), SIZE (256), FRAMES (200),
# WARMUP (20), BATCHES (1,16,64), KERNEL_SHAPES (the bench's defaults), SCALING_FRAMES (10,100,1000),
# SCALING_PRESET (paper). With DEVICE=cpu and tiny settings it runs anywhere (the test suite does that).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-python3}"
OUT="${OUT:-results/bench}"
DEVICE="${DEVICE:-cuda}"
PRESET="${PRESET:-paper}"
SIZE="${SIZE:-256}"
FRAMES="${FRAMES:-200}"
WARMUP="${WARMUP:-20}"
BATCHES="${BATCHES:-1,16,64}"
SCALING_FRAMES="${SCALING_FRAMES:-10,100,1000}"
SCALING_PRESET="${SCALING_PRESET:-paper}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

gdkvm() { "$PY" -m gdkvm "$@"; }
stage() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
fps_common=(--preset "$PRESET" --size "$SIZE" --frames "$FRAMES" --warmup "$WARMUP" --device "$DEVICE"
  --out "$OUT")

run_stage() {
  case "$1" in
    env)
      stage "environment"
      gdkvm doctor --no-check-triton
      command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total \
        --format=csv || true
      ;;
    kernels)
      stage "per-frame memory step: Triton vs torch (and fla where installed)"
      kernel_shapes=()
      [ -n "${KERNEL_SHAPES:-}" ] && kernel_shapes=(--shapes "$KERNEL_SHAPES")
      gdkvm bench kernels --device "$DEVICE" "${kernel_shapes[@]}" --out "$OUT"
      ;;
    fps)
      stage "streaming FPS, eager: fp32 + bf16, batches $BATCHES, with the released-style reference"
      gdkvm bench fps "${fps_common[@]}" --batch-sizes "$BATCHES" --dtype fp32,bf16
      ;;
    graphs)
      stage "streaming FPS, bf16, each step replayed as a CUDA graph"
      gdkvm bench fps "${fps_common[@]}" --batch-sizes "$BATCHES" --dtype bf16 --cuda-graphs --no-reference
      ;;
    compile)
      stage "streaming FPS, bf16, torch.compile (compiled during the warm-up)"
      gdkvm bench fps "${fps_common[@]}" --batch-sizes "$BATCHES" --dtype bf16 --compile --no-reference
      ;;
    scaling)
      stage "memory and time per frame against video length, every memory rule"
      gdkvm bench scaling --frames "$SCALING_FRAMES" --preset "$SCALING_PRESET" --size "$SIZE" \
        --device "$DEVICE" --out "$OUT"
      ;;
    *)
      echo "error: unknown stage '$1' (expected env, kernels, fps, graphs, compile, scaling)" >&2
      exit 2
      ;;
  esac
}

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(env kernels fps graphs compile scaling)
for s in "${stages[@]}"; do
  case "$s" in env | kernels | fps | graphs | compile | scaling) ;; *)
    echo "error: unknown stage '$s' (expected env, kernels, fps, graphs, compile, scaling)" >&2
    exit 2
    ;;
  esac
done
for s in "${stages[@]}"; do run_stage "$s"; done
