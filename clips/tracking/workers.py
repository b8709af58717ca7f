"""Worker processes of one parent run (tuning and studies): same tracking store, no inherited run."""
from __future__ import annotations

import os
import subprocess
import sys

import mlflow


def spawn_clips_workers(commands: list[list[str]]) -> list[int]:
    """Run ``python -m clips <args>`` once per argument list, in parallel; returns the exit codes.

    The workers log to the parent's tracking store, and never attach to the parent's run
    (MLFLOW_RUN_ID is removed): each creates its own child runs.
    """
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    env["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    procs = [subprocess.Popen([sys.executable, "-m", "clips", *args], env=env) for args in commands]
    codes = [p.wait() for p in procs]
    if any(codes) and mlflow.active_run() is not None:
        mlflow.set_tag("clips.worker_exit_codes", ",".join(map(str, codes)))
    return codes
