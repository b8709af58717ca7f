#!/usr/bin/env bash
# The GPU check (benchmarks/device_check.py): one run on a GPU machine, under 8 minutes, offline.
#   bash benchmarks/device_check.sh [--tiny] [--out DIR]
# Environment: the project's venv if there is one (.venv), else the machine's python3. On a machine without
# CLIPS's dependencies (a lent GPU machine has no MLflow and no internet), carry wheels of the missing packages
# in ./wheels/, one per package the machine lacks (made here with `pip download --no-deps --only-binary=:all:
# --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64
# --platform any -d wheels NAME==VERSION`; the list used on 2026-12-04: docs/results.md, "The GPU check"): they
# are unpacked into a folder on PYTHONPATH without an index and without resolving, so the machine's own torch
# and numpy stay as they are.
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
exec timeout 480 "$PY" benchmarks/device_check.py "$@"
