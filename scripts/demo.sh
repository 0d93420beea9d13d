#!/usr/bin/env bash
# The whole pipeline on the embedded synthetic phantom, CPU only, sized to finish in minutes on 2 cores:
# phantom -> prepare (both formats) -> train `full` + two Table-4 ablation rows (tiny preset)
# -> evaluate -> CPU benchmarks -> predict on whole phantom videos (shipped weights) -> report.
set -euo pipefail
OUT="${1:-results/demo}"
GDKVM="${GDKVM:-.venv/bin/gdkvm}"
PATIENTS="${DEMO_PATIENTS:-40}"
ITERS="${DEMO_ITERATIONS:-300}"
SIZE="${DEMO_SIZE:-128}"
start=$(date +%s)
step() { printf '\n\033[1m== %s (%ss)\033[0m\n' "$1" "$(( $(date +%s) - start ))"; }

step "phantom: $PATIENTS patients in the CAMUS and EchoNet-Dynamic formats"
"$GDKVM" prepare synthetic --out "$OUT/synthetic" --patients "$PATIENTS" --seed 0 --workers 2

step "prepare both datasets"
"$GDKVM" prepare camus --root "$OUT/synthetic/CAMUS_public" --out "$OUT/prepared" --size "$SIZE"
"$GDKVM" prepare echonet --root "$OUT/synthetic/EchoNet-Dynamic" --out "$OUT/prepared"

# The paper's recipe is lr 1e-4, batch 10, 1500 iterations on a GPU; the demo shortens it for 2 CPU cores
# (lr 1e-3, batch 4, $ITERS iterations) so the tiny models learn something in minutes.
for variant in full wo-alpha linear; do
  run="$OUT/runs/camus-$variant-tiny"
  resume=(); [ -d "$run" ] && resume=(--resume)
  if [ ! -f "$run/train_done.json" ]; then
    step "train $variant (tiny preset, $ITERS iterations, CAMUS-format phantom at ${SIZE}px)"
    "$GDKVM" train --data "$OUT/prepared/camus" --variant "$variant" --preset tiny --lr 1e-3 \
      --iterations "$ITERS" --batch-size 4 --val-every 100 --ckpt-every 100 --device cpu \
      --out "$OUT/runs" --name "camus-$variant-tiny" "${resume[@]}"
  fi
  step "evaluate $variant"
  "$GDKVM" evaluate --run "$run" --split test --device cpu
done

step "benchmarks on this CPU"
for variant in full wo-alpha linear; do  # every trained variant, so the report's Fig. 5 shows all three
  "$GDKVM" bench fps --variant "$variant" --preset tiny --size "$SIZE" --frames 20 --batch-sizes 1,4 --dtype fp32 \
    --device cpu --out "$OUT/bench"
done
"$GDKVM" bench scaling --frames 10,100,1000 --preset tiny --size 64 --device cpu --out "$OUT/bench"

step "predict: whole phantom EchoNet videos (several beats each) -> ED/ES and EF per beat, shipped weights"
videos=$(ls "$OUT"/synthetic/EchoNet-Dynamic/Videos/*.avi | head -n 4)
# no --run: the weights shipped in the package (gdkvm/weights/MODEL_CARD.md), trained on another phantom seed
# shellcheck disable=SC2086
"$GDKVM" predict $videos --out "$OUT/predict" --device cpu || echo "(some inputs failed, see above)"

step "report"
"$GDKVM" report --runs "$OUT/runs" --bench "$OUT/bench" --out "$OUT/report"

step "done in $(( $(date +%s) - start )) s"
echo "report: $OUT/report/index.html (and report.md)"
