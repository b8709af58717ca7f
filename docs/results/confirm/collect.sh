#!/usr/bin/env bash
# Appends the finished children of this machine's chunk to per_patient.csv beside this file (rows of runs already
# in it are left as they are: the file is appended, never rewritten), and records the chunk in design.json.
# Run it after every seed round and before the machine goes; pause the study around it (kill -STOP / -CONT).
# STUDY=confirm_aa STARTED=started_aa.txt ./collect.sh appends the A/A check's extra baseline seed (aa.sh).
set -eu
export STUDY=${STUDY:-confirm} STARTED=${STARTED:-started.txt}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/env.sh"
parent=$($PY - <<'PYEOF'
import os
import mlflow
runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
    filter_string=f"tags.`clips.study_name` = '{os.environ['STUDY']}' and tags.`clips.role` = 'study_parent'")
print(runs[0].info.run_id if runs else "")
PYEOF
)
[ -n "$parent" ] || { echo "no study parent in this store yet"; exit 0; }
echo "$parent" > parent.txt
rm -rf tables && $PY -m clips compare --experiment clips --parent "$parent" --contrasts "" --out tables > /dev/null
$PY - "$HERE" tables/per_patient.csv <<'PYEOF'
import datetime, json, os, pathlib, socket, sys
import pandas as pd
here, new = pathlib.Path(sys.argv[1]), pd.read_csv(sys.argv[2])
table = here / "per_patient.csv"
old = pd.read_csv(table) if table.exists() and table.stat().st_size else None
if old is not None:
    new = new[~new["run_id"].isin(set(old["run_id"]))]
    new = new.reindex(columns=old.columns)
new = new.sort_values(["seed", "curriculum", "fold", "patient_id"])
design = json.loads((here / "design.json").read_text())
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
chunk = {"started": open(os.environ["STARTED"]).read().strip(), "collected": datetime.datetime.now(datetime.timezone.utc)
         .strftime("%Y-%m-%dT%H:%MZ"), "machine": f"{socket.gethostname()} ({cpu}, {os.cpu_count()} cores)",
         "store_parent_run": open("parent.txt").read().strip() if pathlib.Path("parent.txt").exists() else ""}
mine = pd.read_csv(sys.argv[2])  # every finished child of this machine's store
all_rows = pd.concat([old, new]) if old is not None else new
chunk["children"] = int(mine["run_id"].nunique())
chunk["seeds"] = sorted(int(s) for s in mine["seed"].unique())
import mlflow  # the cohort every chunk must share: its digest, as the children logged it
first = mlflow.MlflowClient().get_run(mine["run_id"].iloc[0])
chunk["cohort_digest"] = first.data.tags.get("clips.cohort_digest", "")
known = {c.get("cohort_digest") for c in design.get("chunks", []) if c.get("cohort_digest")}
if known and chunk["cohort_digest"] not in known:
    sys.exit(f"this chunk's cohort digest {chunk['cohort_digest']} is not the earlier chunks' {known}: not appended")
same = [c for c in design.get("chunks", []) if c.get("started") == chunk["started"]]
chunk = {**(same[0] if same else {}), **chunk}  # collected again: the record's other keys (its purpose) stay
chunks = [c for c in design.get("chunks", []) if c.get("started") != chunk["started"]]
design["chunks"] = chunks + [chunk]
new.to_csv(table, mode="a", header=old is None, index=False)
(here / "design.json").write_text(json.dumps(design, indent=2) + "\n")
print(f"{len(new)} rows appended ({new['run_id'].nunique() if len(new) else 0} children); the table has "
      f"{all_rows['run_id'].nunique()} children: " + ", ".join(f"{k} {v}" for k, v in
      all_rows.drop_duplicates("run_id").groupby(["curriculum"])["seed"].apply(lambda s: sorted(int(x) for x in s.unique())).items()))
PYEOF
