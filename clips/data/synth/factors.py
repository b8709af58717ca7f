"""The hard factors, each a rule measured on what was drawn, so that "hard" is a property anyone can check.

``HARD_FACTORS`` maps each factor to its rule in words; :func:`measure` evaluates the rules. The presentation
planned for a patient aims at a factor; the column in ``cohort.csv`` is what the rule finds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from clips.data.synth.anatomy import ORGANS
from clips.data.synth.disease import HIGH_UPTAKE_SUV
from clips.data.synth.mimics import CODES, DISEASE_LIKE, MANY
from clips.data.synth.phantom import Grid

NEAR_MM, NEAR_SHARE = 10.0, 0.4
LOW_COUNTS_COV = 0.15

HARD_FACTORS = {
    "small_faint": "median lesion volume < 2 ml and median lesion SUVmax < 5",
    "near_high_uptake": f"≥ {NEAR_SHARE:.0%} of the lesion volume within {NEAR_MM:g} mm of physiological "
                        f"uptake ≥ SUV {HIGH_UPTAKE_SUV:g}",
    "diffuse_organ": "≥ 80 % of the spleen labelled, or ≥ 6 lesions in the marrow",
    "disseminated": "≥ 12 lesions",
    "many_mimics": f"≥ {MANY} kinds of disease-like unlabelled uptake ({', '.join(DISEASE_LIKE)})",
    "low_counts": f"liver coefficient of variation ≥ {LOW_COUNTS_COV}",
}


@dataclass
class Drawn:
    """Everything drawn for one patient: the written images and the maps that stay in memory."""

    ct: np.ndarray
    pet: np.ndarray
    seg: np.ndarray
    physio: np.ndarray  # true uptake before the lesions: normal biodistribution and mimics
    organs: np.ndarray
    mimics: np.ndarray
    grid: Grid
    liver_center_mm: tuple[float, float, float]


def lesion_table(seg: np.ndarray, pet: np.ndarray, voxel_ml: float):
    """(labels, volumes in ml, SUVmax) of each connected lesion (only lesion voxels are visited: fast)."""
    labels, n = ndimage.label(seg)
    inside = labels > 0
    lab = labels[inside]
    volumes = np.bincount(lab, minlength=n + 1)[1:] * voxel_ml
    suvmax = np.full(n + 1, -np.inf)
    np.maximum.at(suvmax, lab, pet[inside])
    return labels, volumes, suvmax[1:]


def liver_cov(pet: np.ndarray, grid: Grid, center_mm, radius_mm: float = 30.0) -> float:
    """Coefficient of variation of the PET in a sphere in the liver (the EARL noise measure)."""
    x, y, z = (grid.axis_mm(a) - c for a, c in enumerate(center_mm))
    mask = x[:, None, None] ** 2 + y[None, :, None] ** 2 + z[None, None, :] ** 2 <= radius_mm**2
    vals = pet[mask]
    return float(vals.std() / vals.mean())


def near_share(seg: np.ndarray, physio: np.ndarray, grid: Grid) -> float:
    """Share of lesion voxels within NEAR_MM of physiological uptake ≥ HIGH_UPTAKE_SUV (measured in a crop
    around the lesions: distances up to NEAR_MM only depend on voxels that close)."""
    if not seg.any():
        return 0.0
    pad = [int(np.ceil(NEAR_MM / s)) + 1 for s in grid.spacing]
    lo = [max(int(i.min()) - p, 0) for i, p in zip(np.nonzero(seg), pad)]
    hi = [min(int(i.max()) + p + 1, n) for i, p, n in zip(np.nonzero(seg), pad, seg.shape)]
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    high = (physio[crop] >= HIGH_UPTAKE_SUV) & (seg[crop] == 0)
    if not high.any():
        return 0.0
    dist = ndimage.distance_transform_edt(~high, sampling=grid.spacing)
    return float((dist[seg[crop] > 0] <= NEAR_MM).mean())


def measure(d: Drawn) -> tuple[dict, dict]:
    """(factors 0/1, the measurements behind them, lesion volumes in ml)."""
    labels, volumes, suvmax = lesion_table(d.seg, d.pet, d.grid.voxel_ml)
    n = len(volumes)
    inside = labels > 0
    bone_voxels = np.bincount(labels[inside], weights=d.organs[inside] == ORGANS["bone"], minlength=n + 1)[1:]
    in_bone = int((bone_voxels > 0.5 * volumes / d.grid.voxel_ml).sum())
    spleen = d.organs == ORGANS["spleen"]
    kinds = {k for k in DISEASE_LIKE if (d.mimics == CODES[k]).any()}
    m = {
        "median_lesion_ml": float(np.median(volumes)) if n else 0.0,
        "median_lesion_suvmax": float(np.median(suvmax)) if n else 0.0,
        "near_high_uptake_share": near_share(d.seg, d.physio, d.grid),
        "spleen_labelled_share": float(d.seg[spleen].mean()) if spleen.any() else 0.0,
        "marrow_lesions": in_bone,
        "n_mimic_kinds": len(kinds),
        "mimic_kinds": ";".join(sorted(kinds)),
        "liver_cov": liver_cov(d.pet, d.grid, d.liver_center_mm),
    }
    f = {
        "small_faint": n > 0 and m["median_lesion_ml"] < 2 and m["median_lesion_suvmax"] < 5,
        "near_high_uptake": m["near_high_uptake_share"] >= NEAR_SHARE,
        "diffuse_organ": m["spleen_labelled_share"] >= 0.8 or in_bone >= 6,
        "disseminated": n >= 12,
        "many_mimics": len(kinds) >= MANY,
        "low_counts": m["liver_cov"] >= LOW_COUNTS_COV,
    }
    return {k: int(bool(v)) for k, v in f.items()}, m, volumes
