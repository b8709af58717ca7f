"""``clips data check``: validate every patient of a cohort, one line per problem."""
from __future__ import annotations

from dataclasses import dataclass

from clips.data.io import AFFINE_TOLERANCE_MM, read_patient
from clips.data.layout import PatientFiles, discover
from clips.errors import DataError


@dataclass
class CheckReport:
    valid: list[PatientFiles]
    problems: list[DataError]

    @property
    def ok(self) -> bool:
        return not self.problems

    def invalid_ids(self) -> set[str]:
        return {p.patient_id for p in self.problems}


def check_cohort(root, affine_tol: float = AFFINE_TOLERANCE_MM, on_patient=None) -> CheckReport:
    """Read every case fully (shapes, affines, values). ``on_patient(files, problems)`` is called per case."""
    valid, problems = [], []
    for files in discover(root):
        _, found = read_patient(files, affine_tol)
        problems += found
        if not found:
            valid.append(files)
        if on_patient:
            on_patient(files, found)
    return CheckReport(valid, problems)
