#!/usr/bin/env bash
# The GPU check (benchmarks/device_check.py): one run on a GPU machine, under 8 minutes, offline.
#   bash benchmarks/device_check.sh [--tiny] [--out DIR]
# Environment: the project's venv if there is one (.venv), else the machine's python3. On a machine without
# CLIPS's dependencies (a lent GPU machine has no MLflow and no internet), carry ./wheels/, made here by
# `make device-wheels` (benchmarks/device_wheels.txt): they are unpacked into a folder on PYTHONPATH without an
# index and without resolving, so the machine's own torch and numpy stay as they are. The device tool's run line:
# benchmarks/device_check.py's header.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! "$PY" -c "import mlflow, monai, nibabel, optuna" 2>/dev/null; then
  if [ -d wheels ]; then
    site=$(mktemp -d)
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" wheels/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "device_check: CLIPS's dependencies are missing and no ./wheels folder was carried" >&2
    exit 2
  fi
fi
exec timeout 470 "$PY" benchmarks/device_check.py "$@"
