"""The tuning objective: a column of the per-patient validation table, averaged, always maximised.

Syntax: ``[-]<column>[@hard]``. ``dice`` (default) is the mean validation Dice;
``dice@hard`` the mean over the hard patients (the cohort's ``hard`` column);
``-tmtv_abs_rel_error`` minus the mean absolute relative TMTV error (a leading ``-``
turns an error into something to maximise). NaN values (empty cases) are left out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clips.errors import ConfigError
from clips.metrics.patient import COLUMNS


@dataclass(frozen=True)
class Objective:
    column: str = "dice"
    sign: float = 1.0
    hard_only: bool = False

    @classmethod
    def parse(cls, spec: str) -> "Objective":
        s = spec.strip()
        sign = -1.0 if s.startswith("-") else 1.0
        s = s.lstrip("-")
        hard = s.endswith("@hard")
        column = s.removesuffix("@hard")
        if column not in COLUMNS[1:]:
            raise ConfigError(f"objective {spec!r}: {column!r} is not a column of the per-patient table "
                              f"({', '.join(COLUMNS[1:])})")
        return cls(column, sign, hard)

    def __str__(self):
        return f"{'-' if self.sign < 0 else ''}{self.column}{'@hard' if self.hard_only else ''}"

    def value(self, table: pd.DataFrame, hard_ids: set[str] | None = None) -> float:
        rows = table
        if self.hard_only:
            if hard_ids is None:
                raise ConfigError(f"objective {self}: the cohort has no 'hard' column in cohort.csv")
            rows = table[table["patient_id"].isin(hard_ids)]
        vals = rows[self.column].to_numpy(float)
        vals = vals[~np.isnan(vals)]
        if not len(vals):
            return float("nan")
        v = self.sign * float(vals.mean())
        return v if math.isfinite(v) else float("nan")
