"""Dice and volumes of binary masks. (The full per-patient suite lives beside it.)"""
from __future__ import annotations

import numpy as np


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """2|G and P| / (|G| + |P|); NaN when both are empty, 0 when exactly one is."""
    g, p = truth.astype(bool), pred.astype(bool)
    denom = int(g.sum()) + int(p.sum())
    if denom == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(g & p)) / denom


def volume_ml(mask: np.ndarray, voxel_ml: float) -> float:
    return float(np.count_nonzero(mask)) * voxel_ml
