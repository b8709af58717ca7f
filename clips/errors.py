"""The project's own error types: one line, naming the patient and the file."""
from __future__ import annotations


class ClipsError(Exception):
    """Base class: anything CLIPS reports to a user on purpose."""


class ConfigError(ClipsError):
    """A parameter, profile or YAML config that cannot be used."""


class Preempted(ClipsError):
    """A worker told to leave (SIGTERM, SIGUSR1: clips/scaling/preemption.py): its run stays resumable."""


class NotResumable(ClipsError):
    """A run that cannot be continued (no usable checkpoint, another recipe): start it afresh."""


class DataError(ClipsError):
    """A patient's data cannot be used; ``str()`` is the one-line message shown to the user."""

    def __init__(self, patient_id: str, file: str | None, problem: str):
        self.patient_id, self.file, self.problem = patient_id, file, problem
        where = f"{patient_id}: {file}" if file else patient_id
        super().__init__(f"{where}: {problem}")
