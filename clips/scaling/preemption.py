"""Leaving before being killed: a study worker told by SIGTERM or SIGUSR1 (what Slurm sends with
``--signal=B:USR1@300`` before a time limit, and what a scheduler sends on pre-emption) stops after the current
optimisation step, hands its job back to the queue as waiting (no heartbeat grace to wait out), and exits 0.
The job's next attempt continues the child's run from its last epoch's checkpoint, which resumes exactly (a
checkpoint in the middle of an epoch would not: the loader plans steps ahead of the one being taken), so at most
the current epoch's steps are done again.

A worker with a **deadline** (``--deadline``, or the Slurm job's end time) does not claim a job it cannot finish
by then, judged by the wall time of the study's finished children.

:func:`install` is called once by a worker process; :func:`check` by the training after every step."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime, timezone

from clips.errors import ConfigError, Preempted

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_received: list[str] = []

def _on_signal(signum, frame) -> None:
    _received.append(signal.Signals(signum).name)


def install() -> None:
    """From now on SIGTERM and SIGUSR1 ask this process to leave at the next step (instead of dying at once)."""
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)


def requested() -> str:
    """The signal that asked this process to leave ("" if none)."""
    return _received[0] if _received else ""


def check(where: str) -> None:
    """Raise :class:`Preempted` if a signal asked this process to leave; ``where`` says at which point."""
    if _received:
        raise Preempted(f"{_received[0]} received; left {where}")


def forward(procs: list[subprocess.Popen]) -> None:
    """In a process that spawned workers: pass SIGTERM and SIGUSR1 on to them (each leaves as above)."""
    def on_signal(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for sig in SIGNALS:
        signal.signal(sig, on_signal)


# ----------------------------------------------------------------------------- deadlines
def parse_deadline(text: str) -> float | None:
    """A deadline as a POSIX time: an ISO date-time (UTC unless it says otherwise), ``+MINUTES`` from now, or
    ``slurm`` (the Slurm job's end time: $SLURM_JOB_END_TIME, else `squeue`); "" for none."""
    text = (text or "").strip()
    if not text:
        return None
    if text.startswith("+"):
        try:
            return time.time() + float(text[1:]) * 60
        except ValueError:
            raise ConfigError(f"deadline {text!r}: +MINUTES, an ISO date-time, or slurm") from None
    if text == "slurm":
        return slurm_end_time()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"deadline {text!r}: +MINUTES, an ISO date-time, or slurm") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def slurm_end_time() -> float | None:
    """When this Slurm job reaches its time limit (None outside Slurm or without one)."""
    if os.environ.get("SLURM_JOB_END_TIME", "").isdigit():
        return float(os.environ["SLURM_JOB_END_TIME"])
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=30)
        end = out.stdout.strip().splitlines()[0]
        return datetime.fromisoformat(end).astimezone().timestamp()  # squeue prints the cluster's local time
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None
