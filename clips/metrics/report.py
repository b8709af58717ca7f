"""The readable per-patient report (reports/<patient_id>.txt)."""
from __future__ import annotations

import math

from clips.metrics.patient import COLUMNS, COUNT_COLUMNS

UNITS = {"_mm": "mm", "_ml": "ml"}


def _fmt(col: str, v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if col in COUNT_COLUMNS:
        return str(int(v))
    unit = next((u for suffix, u in UNITS.items() if col.endswith(suffix)), "")
    return f"{v:.4f} {unit}".rstrip()


def patient_report(row: dict, settings: dict) -> str:
    lines = [f"CLIPS evaluation report: patient {row['patient_id']}", ""]
    lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    lines.append("")
    width = max(len(c) for c in COLUMNS)
    lines += [f"{c:<{width}}  {_fmt(c, row[c])}" for c in COLUMNS[1:]]
    return "\n".join(lines) + "\n"
