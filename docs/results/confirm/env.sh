# Sourced by run.sh, aa.sh and collect.sh (after they set HERE to this folder): the study's own folder, home and
# stores on this machine, and the pinned code (design.json's snapshot, a git worktree in ./code), refused if not.
cd /work/studies/confirm
export CLIPS_HOME=$PWD/home MLFLOW_TRACKING_URI=sqlite:///$PWD/mlflow.db PYTHONPATH=$PWD/code
PY=/work/main/.venv/bin/python
want=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['snapshot'])" "$HERE/design.json")
[ "$(git -C code rev-parse HEAD)" = "$want" ] || { echo "code/ is not the pinned snapshot $want"; exit 2; }
