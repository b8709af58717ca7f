#!/usr/bin/env bash
# The demo measurement of README.md beside this file: `make demo`'s command per (variant, seed), each from a
# fresh CLIPS_HOME and store, one at a time; appends a row per run to results.csv.
#   VARIANTS="current field" SEEDS="0 1 2" ./run.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
declare -A EXTRA=(
  [current]=""
  [field]="-P batch_size=5 -P patch_size=32,40,32 -P batch_dice=true -P fg_sampling=batch"
)
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
[ -s "$HERE/results.csv" ] || echo "variant,seed,test_dice,test_nsd,wall_s,cpu,commit" > "$HERE/results.csv"
for v in ${VARIANTS:-field}; do
  for s in ${SEEDS:-0 1 2}; do
    work=$(mktemp -d)
    start=$(date +%s.%N)
    (cd "$REPO" && CLIPS_HOME=$work/home MLFLOW_TRACKING_URI=sqlite:///$work/mlflow.db PATH=$REPO/.venv/bin:$PATH \
      mlflow run . --experiment-name clips -P curriculum=none -P profile=demo -P seed=$s ${EXTRA[$v]} \
      --env-manager local > "$work/log" 2>&1)
    rc=$?
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    row=$(MLFLOW_TRACKING_URI=sqlite:///$work/mlflow.db "$REPO/.venv/bin/python" -c "
import mlflow
r = [r for r in mlflow.search_runs(search_all_experiments=True, output_format='list') if 'test_dice_mean' in r.data.metrics]
print(f\"{r[0].data.metrics['test_dice_mean']:.3f},{r[0].data.metrics['test_nsd_mean']:.3f}\" if r else 'nan,nan')")
    echo "$v,$s,$row,$(printf %.0f "$wall"),$cpu,$(git -C "$REPO" rev-parse --short HEAD)" | tee -a "$HERE/results.csv"
    [ $rc = 0 ] || tail -5 "$work/log"
    rm -rf "$work"
  done
done
