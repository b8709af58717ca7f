#!/usr/bin/env bash
# The confirmatory study of issue #40 (design: README.md and design.json beside this file). One chunk on this
# machine: seeds FIRST-3 of every arm, round by round, looking from 3 seeds on; the committed table of the earlier
# chunks (per_patient.csv, when it exists) is given with --earlier-chunks, so nothing trained before is trained
# again and the looks see every chunk. Pinned code: the worktree ./code (design.json's commit); own home and
# stores under /work/studies/confirm; niced, one heavy job on the machine.
#   FIRST=0 ./run.sh   (the first chunk; later chunks: FIRST=<the first seed round not yet complete>)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/env.sh"
EARLIER=()
[ -s "$HERE/per_patient.csv" ] && EARLIER=(--earlier-chunks "$HERE/per_patient.csv")
[ -s started.txt ] || date -u +%FT%TZ > started.txt  # when this machine's chunk began
echo "=== $(date -u +%FT%TZ) chunk from seed ${FIRST:-0}"
nice $PY -m clips study --study-name confirm --curricula none,progressive_patch,patch_mix \
  --contrasts progressive_patch:none,progressive_patch:patch_mix --folds 3 --seeds "${FIRST:-0}-3" \
  --sequential true --max-seeds 4 --min-seeds 3 --spending obf --effect 0.10 --futility-power 0.2 \
  "${EARLIER[@]}" --out report -P profile=study -P example.patients=45 -P example.seed=2
echo "=== $(date -u +%FT%TZ) chunk ended rc=$?"
