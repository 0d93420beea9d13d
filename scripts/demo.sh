#!/usr/bin/env bash
# The whole pipeline on the embedded synthetic phantom, CPU only, sized to finish in minutes on 2 cores:
# phantom -> prepare (both formats) -> train `full` + two Table-4 ablation rows (tiny preset)
# -> evaluate -> CPU benchmarks -> predict on whole phantom videos (shipped weights) -> report.
set -euo pipefail
OUT="${1:-results/demo}"
GDKVM="${GDKVM:-.venv/bin/gdkvm}"
PATIENTS="${DEMO_PATIENTS:-40}"
ITERS="${DEMO_ITERATIONS:-250}"
SIZE="${DEMO_SIZE:-128}"
BENCH_FRAMES="${DEMO_BENCH_FRAMES:-20}"
SCALING_FRAMES="${DEMO_SCALING_FRAMES:-10,100,1000}"
start=$(date +%s)
step() { printf '\n\033[1m== %s (%ss)\033[0m\n' "$1" "$(( $(date +%s) - start ))"; }

step "phantom: $PATIENTS patients in the CAMUS and EchoNet-Dynamic formats"
"$GDKVM" prepare synthetic --out "$OUT/synthetic" --patients "$PATIENTS" --seed 0 --workers 2

step "prepare both datasets"
"$GDKVM" prepare camus --root "$OUT/synthetic/CAMUS_public" --out "$OUT/prepared" --size "$SIZE"
"$GDKVM" prepare echonet --root "$OUT/synthetic/EchoNet-Dynamic" --out "$OUT/prepared"

# The paper's recipe is lr 1e-4, batch 10, 1500 iterations on a GPU; the demo shortens it for 2 CPU cores
# (lr 1e-3, batch 4, $ITERS iterations) so the tiny models learn something in minutes. The three runs train
# side by side with one torch thread each: a tiny model is too small to keep two threads busy, so this is
# about 1.5x faster than one run after another. Each run's log is in $OUT/logs/.
VARIANTS=(full wo-alpha linear)
mkdir -p "$OUT/logs"
pids=(); names=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for variant in "${VARIANTS[@]}"; do
  run="$OUT/runs/camus-$variant-tiny"
  [ -f "$run/train_done.json" ] && continue
  resume=(); [ -d "$run" ] && resume=(--resume)
  "$GDKVM" train --data "$OUT/prepared/camus" --variant "$variant" --preset tiny --lr 1e-3 \
    --iterations "$ITERS" --batch-size 4 --val-every 100 --ckpt-every 100 --device cpu --threads 1 \
    --out "$OUT/runs" --name "camus-$variant-tiny" "${resume[@]}" > "$OUT/logs/train-$variant.log" 2>&1 &
  pids+=("$!"); names+=("$variant")
done
if [ "${#pids[@]}" -gt 0 ]; then
  step "train ${names[*]} side by side (tiny preset, $ITERS iterations, CAMUS-format phantom at ${SIZE}px)"
  running() { local pid; for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
  tick=0
  while running; do  # a progress line per run every 30 s
    sleep 2; tick=$((tick + 1))
    [ $((tick % 15)) -eq 0 ] || continue
    for variant in "${names[@]}"; do
      printf '  %-9s %s\n' "$variant" "$(grep -E '^(train|iteration) ' "$OUT/logs/train-$variant.log" | tail -n 1)"
    done
  done
  failed=()
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${names[$i]}")
  done
  pids=()
  for variant in "${failed[@]}"; do
    echo "train $variant failed; the end of $OUT/logs/train-$variant.log:" >&2
    tail -n 15 "$OUT/logs/train-$variant.log" >&2
  done
  [ "${#failed[@]}" -eq 0 ] || exit 1
fi
for variant in "${VARIANTS[@]}"; do
  step "evaluate $variant"
  "$GDKVM" evaluate --run "$OUT/runs/camus-$variant-tiny" --split test --device cpu
done

step "benchmarks on this CPU"
for variant in "${VARIANTS[@]}"; do  # every trained variant, so the report's Fig. 5 shows all three
  "$GDKVM" bench fps --variant "$variant" --preset tiny --size "$SIZE" --frames "$BENCH_FRAMES" --batch-sizes 1,4 --dtype fp32 \
    --device cpu --out "$OUT/bench"
done
"$GDKVM" bench scaling --frames "$SCALING_FRAMES" --preset tiny --size 64 --device cpu --out "$OUT/bench"

step "predict: whole phantom EchoNet videos (several beats each) -> ED/ES and EF per beat, shipped weights"
videos=$(ls "$OUT"/synthetic/EchoNet-Dynamic/Videos/*.avi | head -n 4)
# no --run: the weights shipped in the package (gdkvm/weights/MODEL_CARD.md), trained on another phantom seed
# shellcheck disable=SC2086
"$GDKVM" predict $videos --out "$OUT/predict" --device cpu || echo "(some inputs failed, see above)"

step "report"
"$GDKVM" report --runs "$OUT/runs" --bench "$OUT/bench" --out "$OUT/report"

step "done in $(( $(date +%s) - start )) s"
echo "report: $OUT/report/index.html (and report.md)"
