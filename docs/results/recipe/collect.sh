#!/usr/bin/env bash
# Builds docs/results/recipe/per_patient.csv from the pilot's stores: every finished child's test table, of the
# network it delivered (recipe = its name) and of its last epoch (recipe = <name>_last), with a recipe column.
set -eu
cd /work/studies/recipe
export CLIPS_HOME=$PWD/home MLFLOW_TRACKING_URI=sqlite:///$PWD/mlflow.db PYTHONPATH=$PWD/code
PY=/work/main/.venv/bin/python
OUT=${1:-/work/main/docs/results/recipe}
mkdir -p tables "$OUT"
for r in ${RECIPES:-current field}; do
  parent=$($PY - "$r" <<'PYEOF'
import sys, mlflow
runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
    filter_string=f"tags.`clips.study_name` = 'recipe-{sys.argv[1]}' and tags.`clips.role` = 'study_parent'")
print(runs[0].info.run_id if runs else "")
PYEOF
)
  [ -n "$parent" ] || continue
  for ck in delivered last; do
    nice $PY -m clips compare --experiment clips --parent "$parent" --checkpoint $ck --contrasts "" \
      --out tables/$r-$ck > /dev/null
  done
done
# The collapse rule was corrected after the pinned snapshot tagged a slow start (no lesion found at the first three
# validations, found later) as a collapse: the collapsed column is recomputed from each run's validation history by
# the rule of the current code (clips/training/collapse.py), and a last-epoch row's selected epoch is its last.
PYTHONPATH=/work/main $PY - "$OUT" <<'PYEOF'
import sys, pandas as pd, pathlib, mlflow
from clips.training.collapse import collapse_epoch
client = mlflow.MlflowClient()
parts = []
for d in sorted(pathlib.Path("tables").iterdir()):
    r, ck = d.name.rsplit("-", 1)
    t = pd.read_csv(d / "per_patient.csv")
    for run_id in t["run_id"].unique():
        run = client.get_run(run_id)
        history = [(m.step, m.value > 0) for m in sorted(client.get_metric_history(run_id, "val_dice_lesion"),
                                                         key=lambda m: m.step)]
        t.loc[t["run_id"] == run_id, "collapsed"] = int(collapse_epoch(history, 3, finished=True) >= 0)
        if ck == "last":
            t.loc[t["run_id"] == run_id, "best_epoch"] = int(run.data.params["cfg.epochs"]) - 1
    parts.append(t.assign(recipe=r if ck == "delivered" else f"{r}_last"))
t = pd.concat(parts, ignore_index=True)
first = ["patient_id", "curriculum", "fold", "seed", "dice", "recipe"]
t = t[first + [c for c in t.columns if c not in first and c not in ("run_id", "wall_s")] + ["wall_s"]]
t.sort_values(["recipe", "seed", "fold", "patient_id"]).to_csv(pathlib.Path(sys.argv[1]) / "per_patient.csv", index=False)
print(t.groupby("recipe").agg(seeds=("seed", "nunique"), rows=("dice", "size"), dice=("dice", "mean"),
                              collapsed=("collapsed", "sum")))
PYEOF
