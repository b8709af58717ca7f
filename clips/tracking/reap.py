"""Find runs left RUNNING by a process that died, and mark them FAILED.

A CLIPS training writes the tag ``clips.heartbeat`` (a UTC timestamp a person can read,
``2026-11-27T15:30:00Z``) after every epoch; a run's last sign of life is that tag, else its start time.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from clips.tracking import schema


def heartbeat_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_sign_of_life(run) -> float:
    """Epoch seconds of the run's last heartbeat (older runs wrote epoch seconds themselves)."""
    beat = run.data.tags.get(schema.HEARTBEAT)
    if not beat:
        return run.info.start_time / 1000.0
    try:
        return float(beat)
    except ValueError:
        return datetime.strptime(beat, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def reap(older_than_hours: float, experiment: str | None = None, dry_run: bool = False):
    client = MlflowClient()
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        ids = [exp.experiment_id] if exp else []
    else:
        ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    now = time.time()
    out = []
    if not ids:
        return out
    for run in client.search_runs(ids, filter_string="attributes.status = 'RUNNING'", max_results=5000):
        age_h = (now - last_sign_of_life(run)) / 3600.0
        if age_h >= older_than_hours:
            if not dry_run:
                schema.mark_failed(client, run.info.run_id, f"reaped: no sign of life for {age_h:.1f} h")
            out.append((run, age_h))
    return out
