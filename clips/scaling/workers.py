"""Local worker processes (tuning and studies): same tracking store, no inherited run, each on its slot."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import mlflow

from clips.errors import ConfigError
from clips.scaling import preemption
from clips.scaling.devices import Slot
from clips.scaling.machine import MACHINE_KEYS
from clips.tracking import schema


def machine_overrides(machine: dict | None) -> dict:
    """``machine`` (a joining worker's -P values) when it only sets machine keys; else a one-line error."""
    machine = machine or {}
    wrong = sorted(set(machine) - set(MACHINE_KEYS))
    if wrong:
        raise ConfigError(f"a joining worker takes the study's recipe; only {', '.join(MACHINE_KEYS)} may be set "
                          f"for this machine, not {', '.join(wrong)}")
    return machine


def worker_name() -> str:
    """How a worker is named in queues and tags: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def spawn_clips_workers(commands: list[list[str]], slots: list[Slot] | None = None) -> list[int]:
    """Run ``python -m clips <args>`` once per argument list, in parallel; returns the exit codes.

    The workers log to the parent's tracking store and never attach to the parent's run (MLFLOW_RUN_ID is
    removed): each creates its own child runs. With ``slots``, worker i sees only its GPU and gets its
    threads (``-P threads=N``).
    """
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_RUN_ID"}
    base["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    procs = []
    for i, args in enumerate(commands):
        env, extra = dict(base), []
        if slots:
            env |= slots[i].env
            extra = ["-P", f"threads={slots[i].threads}"]
        procs.append(subprocess.Popen([sys.executable, "-m", "clips", *args, *extra], env=env))
    preemption.forward(procs)  # a signal to leave reaches every worker, each hands its job back
    codes = [p.wait() for p in procs]
    if any(codes) and mlflow.active_run() is not None:
        mlflow.set_tag(schema.WORKER_EXIT_CODES, ",".join(map(str, codes)))
    return codes
