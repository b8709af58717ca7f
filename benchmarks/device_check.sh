#!/usr/bin/env bash
# The GPU check (benchmarks/device_check.py): one run on a GPU machine, under 8 minutes, offline.
#   bash benchmarks/device_check.sh [--tiny] [--out DIR]
# Environment: the project's venv if there is one (.venv), else the machine's python3. On a machine without
# CLIPS's dependencies (a lent GPU machine has no MLflow and no internet), carry wheels in ./wheels/ (made
# here with `pip download -d wheels mlflow==... monai==... ...`): they are installed from there, no index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! "$PY" -c "import mlflow, monai, nibabel, optuna" 2>/dev/null; then
  if [ -d wheels ]; then
    "$PY" -m pip install --quiet --no-index --find-links wheels -e . --no-deps
    "$PY" -m pip install --quiet --no-index --find-links wheels mlflow monai nibabel optuna pandas click pyyaml \
      matplotlib pyarrow surface-distance psycopg pydicom highdicom
  else
    echo "device_check: CLIPS's dependencies are missing and no ./wheels folder was carried" >&2
    exit 2
  fi
fi
exec timeout 480 "$PY" benchmarks/device_check.py "$@"
