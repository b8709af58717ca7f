"""What a finished training prints last: the headline figures, where the pictures are, how to open the UI."""
from __future__ import annotations

import mlflow

from clips.tracking import schema

HEADLINES = (("test_dice_mean", "test Dice"), ("test_nsd_mean", "NSD"),
             ("test_tmtv_abs_rel_error_mean", "relative TMTV error"))


def what_to_look_at(run_id: str) -> list[str]:
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    m = run.data.metrics
    exp = client.get_experiment(run.info.experiment_id)
    out = [f"  experiment {exp.name}, run {run.info.run_name} ({run_id})"]
    shown = [(k, label) for k, label in HEADLINES if k in m]
    if shown:
        out.append("  " + ", ".join(f"{label} {m[k]:.3f}" for k, label in shown)
                   + f" (mean over the test patients; per patient: {schema.TEST_TABLE})")
    figures = [a.path for a in client.list_artifacts(run_id, "figures")]
    if figures:
        out.append("  figures: " + ", ".join(figures))
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        out.append(f"  look at it: make ui, or mlflow ui --backend-store-uri {uri}, then "
                   f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs/{run_id}"
                   "?workflowType=machine_learning")
    else:
        out.append(f"  look at it: {uri.rstrip('/')}/#/experiments/{exp.experiment_id}/runs/{run_id}")
    return out
