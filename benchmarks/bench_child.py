"""Where one study child's time goes: the trainer's own phase timers (clips/training/timing.py) for one child of
a 3-fold cross-validated study of the example cohort, in the study profile.

    python benchmarks/bench_child.py [--quick] [--patients 30] [-P key=value ...] [--json OUT.json]

The cohort is generated and preprocessed first, outside the timing (a study does that once for all its
children); then fold 0, seed 0 of curriculum `none` trains in a temporary MLflow store and its `time/*` metrics
are printed as a split: data, build (difficulty features, teacher scoring), steps, validation, checkpoint,
final evaluation, logging. `--quick` trains 6 epochs instead of 24 (about 1.5 min on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("-P", dest="params", action="append", default=[], help="training parameter KEY=VALUE")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="clips-bench-child-"))
    os.environ.setdefault("CLIPS_HOME", str(home))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/mlflow.db"

    from clips.config import build_config
    from clips.training.cohort import load_data
    from clips.training.timing import PHASES
    from clips.training.trainer import train

    params = {"profile": "study", "folds": "3", "fold": "0", "split_seed": "0", "example.patients": str(a.patients)}
    params |= {"epochs": "6"} if a.quick else {}
    params |= dict(p.split("=", 1) for p in a.params)
    cfg = build_config(params)
    load_data(cfg, log=lambda *_: None)  # generated and preprocessed once, as a study does before its children
    lines = []
    result = train(cfg, log=lines.append)
    import mlflow

    m = mlflow.get_run(result.run_id).data.metrics
    total = m["time/total_s"]
    split = {p: m.get(f"time/{p}_s", 0.0) for p in PHASES}
    print(f"one study child ({cfg.epochs} epochs x {cfg.steps_per_epoch} steps, {cfg.folds}-fold CV of "
          f"{a.patients} patients, fold 0): {total:.1f} s")
    for phase, s in split.items():
        print(f"  {phase:<11} {s:7.1f} s  {s / total:6.1%}")
    other = total - sum(split.values())
    print(f"  {'unaccounted':<11} {other:7.1f} s  {other / total:6.1%}")
    if a.json:
        a.json.write_text(json.dumps({"total_s": total, "split_s": split, "params": params}, indent=1))
    print(f"steps_share={split['steps'] / total:.3f}")


if __name__ == "__main__":
    main()
