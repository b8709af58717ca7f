#!/usr/bin/env bash
# The recipe pilot of issue #39 (docs/results.md, "The recipe pilot"): the candidates interleaved seed by seed,
# so that a stop leaves balanced comparisons. Pinned code: the worktree ./code; own home and stores; niced.
set -u
cd /work/studies/recipe
export CLIPS_HOME=$PWD/home MLFLOW_TRACKING_URI=sqlite:///$PWD/mlflow.db PYTHONPATH=$PWD/code
git -C code rev-parse HEAD > commit.txt
PY=/work/main/.venv/bin/python
declare -A EXTRA=(
  [current]=""
  [field]="-P batch_size=5 -P patch_size=32,40,32 -P batch_dice=true -P fg_sampling=batch -P augmentation=physical"
)
for seed in ${SEEDS:-0 1 2 3}; do
  for r in ${RECIPES:-current field}; do
    echo "=== $(date -u +%FT%TZ) recipe $r seed $seed"
    nice $PY -m clips study --study-name recipe-$r --curricula none --folds 3 --seeds $seed-$seed --exploratory true \
      --out out-$r-seed$seed -P profile=study -P example.patients=30 -P example.seed=1 ${EXTRA[$r]}
    echo "=== $(date -u +%FT%TZ) done $r seed $seed rc=$?"
  done
done
