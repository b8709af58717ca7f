"""Fault injection for the reliability tests (tests/test_resume.py, docs/reliability.md): the training kills
itself with SIGKILL, as a pre-emption or the kernel's OOM killer would, at a point named by the environment
variable ``CLIPS_KILL_AT``, so that a test can stop a real training exactly there and resume it.

Points: ``epoch:E`` (epoch E finished: checkpoint written, metrics logged) and ``step:E:S`` (inside epoch E, after
its optimisation step S, 0-based: the epoch's work since the last checkpoint is lost, as in a real kill).
``CLIPS_KILL_SIGNAL`` sends another signal instead (SIGUSR1: what Slurm sends before a time limit).
Unset (always, outside the tests) it costs one string comparison per step."""
from __future__ import annotations

import os
import signal

ENV = "CLIPS_KILL_AT"
SIGNAL_ENV = "CLIPS_KILL_SIGNAL"


def reached(*where: int | str) -> None:
    """Kill this process now if ``where`` (e.g. ``("epoch", 2)``) is the point ``CLIPS_KILL_AT`` names."""
    point = os.environ.get(ENV)
    if point and point == ":".join(str(w) for w in where):
        os.kill(os.getpid(), getattr(signal, os.environ.get(SIGNAL_ENV, "SIGKILL")))
