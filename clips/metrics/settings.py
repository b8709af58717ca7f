"""The evaluation's settings: a leaf (no NumPy), so the command line reads its defaults without the metric code."""
from __future__ import annotations

from dataclasses import asdict, dataclass

CONNECTIVITIES = (6, 18, 26)  # the neighbourhoods that make two voxels one lesion (metrics/sparse.py)


@dataclass(frozen=True)
class EvalSettings:
    tolerance_mm: float = 5.0
    suv_threshold: float | None = 4.0  # None: no thresholding
    connectivity: int = 6
    lesion_threshold: float = 0.5

    def describe(self) -> dict:
        return asdict(self)
