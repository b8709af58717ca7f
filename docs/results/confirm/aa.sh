#!/usr/bin/env bash
# The declared A/A check's fourth baseline seed (design.json: "the baseline's seeds split in halves (2 against 2 at
# 4 seeds)"). The study stopped at its first look, with 3 seeds a fold, where halves are 1 against 1 and no
# run-aware test exists; this trains seed 3 of `none` in every fold, for the A/A only: the contrasts pair runs by
# fold and seed, so no contrast and no look uses it (clips/study/config.py, baseline_seeds). Same pinned snapshot,
# home, cohort and recipe as run.sh; its own study name, so the study's own parent is left as it ended.
#   ./aa.sh   then   STUDY=confirm_aa STARTED=started_aa.txt ./collect.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/env.sh"
date -u +%FT%TZ > started_aa.txt
echo "=== $(date -u +%FT%TZ) A/A seed 3 of none"
nice $PY -m clips study --study-name confirm_aa --curricula none --contrasts "" --folds 3 \
  --seeds 3-3 --out report_aa -P profile=study -P example.patients=45 -P example.seed=2
echo "=== $(date -u +%FT%TZ) A/A ended rc=$?"
