"""The per-patient metric suite (definitions: docs/metrics.md).

One call computes every column for one patient from the ground-truth mask, the
predicted mask, the SUV volume and the affine. Everything after the SUV maximum runs
on the foreground voxels only (:mod:`clips.metrics.sparse`), which is what makes a
whole-body patient take tens of milliseconds.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from clips.errors import DataError
from clips.metrics.settings import EvalSettings  # noqa: F401 - evaluate_patient's settings, imported from here
from clips.metrics.sparse import label_components, linear_index, surface_corners

COLUMNS = [
    "patient_id", "suv_max", "suv_max_gt", "dice",
    "mean_distance_mm", "assd_mm", "hd_mm", "hd95_mm", "nsd", "bji",
    "tmtv_pred_raw_ml", "tmtv_pred_ml", "tmtv_true_ml", "tmtv_error_ml", "tmtv_abs_rel_error",
    "fp_raw_ml", "fp_ml", "fn_ml", "tp_ml", "precision", "recall",
    "gt_lesions", "pred_lesions",
    "a1_tp_lesions", "a1_fn_lesions", "a1_fp_preds", "a2_tp_lesions", "a2_fn_lesions", "a2_fp_preds",
    "autopet_fpv_ml", "autopet_fnv_ml",
]
COUNT_COLUMNS = ["gt_lesions", "pred_lesions", "a1_tp_lesions", "a1_fn_lesions", "a1_fp_preds",
                 "a2_tp_lesions", "a2_fn_lesions", "a2_fp_preds"]
NAN = float("nan")




def _ratio(num, den) -> float:
    return float(num) / float(den) if den else NAN


def surfel_area_table(spacing) -> np.ndarray:
    """Area (mm^2) of the surface element of each of the 256 neighbour codes (Nikolov et al. 2021)."""
    # The marching-cubes normals per code are DeepMind's published table; using it
    # keeps our surface areas identical to theirs by construction.
    from surface_distance import lookup_tables

    return lookup_tables.create_table_neighbour_code_to_surface_area(tuple(float(s) for s in spacing))


def weighted_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    """Area-weighted percentile, as DeepMind's compute_robust_hausdorff: sort by (distance, area), first
    cumulative share >= p."""
    order = np.lexsort((areas, distances))
    d, a = distances[order], areas[order]
    cum = np.cumsum(a) / np.sum(a)
    idx = int(np.searchsorted(cum, percent / 100.0))
    return float(d[min(idx, len(d) - 1)])


def surface_metrics(g_coords, p_coords, shape, spacing, tolerance_mm: float) -> dict:
    """mean_distance_mm, assd_mm, hd_mm, hd95_mm, nsd, bji between two masks given by voxel coordinates."""
    if len(g_coords) == 0 and len(p_coords) == 0:
        return dict.fromkeys(("mean_distance_mm", "assd_mm", "hd_mm", "hd95_mm", "nsd", "bji"), NAN)
    if len(g_coords) == 0 or len(p_coords) == 0:
        return {"mean_distance_mm": NAN, "assd_mm": NAN, "hd_mm": NAN, "hd95_mm": NAN, "nsd": 0.0, "bji": 0.0}
    table = surfel_area_table(spacing)
    sp = np.asarray(spacing, float)
    g_pts, g_codes = surface_corners(g_coords, shape)
    p_pts, p_codes = surface_corners(p_coords, shape)
    a_g, a_p = table[g_codes], table[p_codes]
    d_gp = cKDTree(p_pts * sp).query(g_pts * sp, workers=1)[0]
    d_pg = cKDTree(g_pts * sp).query(p_pts * sp, workers=1)[0]
    total = a_g.sum() + a_p.sum()
    tol = tolerance_mm

    def within(d, a, weighted):
        ok = d <= tol
        w = 1.0 - (d[ok] / tol) ** 2 if weighted else 1.0
        return float(np.sum(a[ok] * w))

    return {
        "mean_distance_mm": float(np.sum(d_gp * a_g) / a_g.sum()),
        "assd_mm": float((np.sum(d_gp * a_g) + np.sum(d_pg * a_p)) / total),
        "hd_mm": max(weighted_percentile(d_gp, a_g, 100), weighted_percentile(d_pg, a_p, 100)),
        "hd95_mm": max(weighted_percentile(d_gp, a_g, 95), weighted_percentile(d_pg, a_p, 95)),
        "nsd": (within(d_gp, a_g, False) + within(d_pg, a_p, False)) / total,
        "bji": (within(d_gp, a_g, True) + within(d_pg, a_p, True)) / total,
    }


def lesion_detection(g_lab, p_lab, g_lin, p_lin, t: float) -> dict:
    """Both lesion-wise detection approaches; labels index lesions, lin are the voxels' linear indices."""
    g_ids, g_size = np.unique(g_lab, return_counts=True)
    p_ids, p_size = np.unique(p_lab, return_counts=True)
    out = {"gt_lesions": len(g_ids), "pred_lesions": len(p_ids)}
    _, ig, ip = np.intersect1d(g_lin, p_lin, assume_unique=True, return_indices=True)
    pairs, inter = (np.unique(np.stack([g_lab[ig], p_lab[ip]], 1), axis=0, return_counts=True)
                    if len(ig) else (np.zeros((0, 2), np.int64), np.zeros(0, np.int64)))
    gi = np.searchsorted(g_ids, pairs[:, 0])  # row of each pair's lesions in the size arrays
    pj = np.searchsorted(p_ids, pairs[:, 1])
    pair_dice = 2.0 * inter / (g_size[gi] + p_size[pj])
    # Approach 1: pairwise Dice.
    best_g = np.zeros(len(g_ids))
    best_p = np.zeros(len(p_ids))
    np.maximum.at(best_g, gi, pair_dice)
    np.maximum.at(best_p, pj, pair_dice)
    out["a1_tp_lesions"] = int(np.sum(best_g >= t))
    out["a1_fn_lesions"] = len(g_ids) - out["a1_tp_lesions"]
    out["a1_fp_preds"] = int(np.sum(best_p < t))  # overlaps nothing (0) or nothing well enough
    # Approach 2: Dice with the union of everything a lesion overlaps (components are disjoint, so sizes add).
    inter_g = np.bincount(gi, weights=inter, minlength=len(g_ids))
    union_p = np.bincount(gi, weights=p_size[pj], minlength=len(g_ids))
    dice_g = 2.0 * inter_g / (g_size + union_p)
    inter_p = np.bincount(pj, weights=inter, minlength=len(p_ids))
    union_g = np.bincount(pj, weights=g_size[gi], minlength=len(p_ids))
    dice_p = 2.0 * inter_p / (p_size + union_g)
    out["a2_tp_lesions"] = int(np.sum(dice_g >= t))
    out["a2_fn_lesions"] = len(g_ids) - out["a2_tp_lesions"]
    out["a2_fp_preds"] = int(np.sum(dice_p < t))
    return out


def autopet_volumes(g_coords, p_coords, shape, voxel_ml: float) -> dict:
    """autoPET challenge false-positive and false-negative volumes (raw masks, 18-connectivity)."""
    g_lin, p_lin = linear_index(g_coords, shape), linear_index(p_coords, shape)
    g_lab, ng = label_components(g_coords, shape, 18)
    p_lab, npred = label_components(p_coords, shape, 18)
    _, ig, ip = np.intersect1d(g_lin, p_lin, assume_unique=True, return_indices=True)
    p_hit = np.isin(p_lab, np.unique(p_lab[ip]))
    g_hit = np.isin(g_lab, np.unique(g_lab[ig]))
    return {
        "autopet_fpv_ml": float(np.count_nonzero(~p_hit)) * voxel_ml,
        "autopet_fnv_ml": float(np.count_nonzero(~g_hit)) * voxel_ml if ng else NAN,
    }


def check_inputs(patient_id: str, truth, pred, suv, affine) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arrays as the suite needs them, or a DataError that says what is wrong (never a NumPy traceback)."""
    def fail(problem):
        raise DataError(patient_id, None, problem)

    arrays = {"ground truth": truth, "prediction": pred, "SUV": suv}
    for name, a in arrays.items():
        a = np.asarray(a)
        if a.ndim != 3:
            fail(f"{name} is not a 3-D volume (shape {a.shape})")
        if np.iscomplexobj(a) or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            fail(f"{name} has data type {a.dtype}, not a real number type")
        if a.size == 0:
            fail(f"{name} is empty (shape {a.shape})")
    shapes = {name: np.asarray(a).shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        fail("shapes differ: " + ", ".join(f"{k} {v}" for k, v in shapes.items()))
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        fail("the affine is not a finite 4x4 matrix")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing <= 0) or abs(np.linalg.det(affine[:3, :3])) <= 0:
        fail(f"invalid voxel spacing {spacing.round(4).tolist()}")
    suv = np.asarray(suv, dtype=np.float32)
    if not np.all(np.isfinite(suv)):
        fail("SUV has NaN or infinite voxels")
    masks = []
    for name, a in (("ground truth", truth), ("prediction", pred)):
        a = np.asarray(a)
        values = np.unique(a)
        if not np.all(np.isin(values, (0, 1))):
            fail(f"{name} is not a binary 0/1 mask (values {values[:5].tolist()})")
        masks.append(a.astype(bool))
    return masks[0], masks[1], suv, affine


def evaluate_patient(patient_id: str, truth: np.ndarray, pred: np.ndarray, suv: np.ndarray,
                     affine: np.ndarray, settings: EvalSettings | None = None) -> dict:
    """Every column of :data:`COLUMNS` for one patient (all arrays on the patient's grid).

    Bad input (shapes, dtypes, NaN, non-binary masks, a degenerate affine) raises
    :class:`DataError` naming the patient.
    """
    settings = settings or EvalSettings()
    truth, pred, suv, affine = check_inputs(patient_id, truth, pred, suv, affine)
    shape = truth.shape
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
    g_raw = np.argwhere(truth)  # row-major order, so linear indices are sorted
    p_raw = np.argwhere(pred)
    g_lab_raw, _ = label_components(g_raw, shape, settings.connectivity)
    p_lab_raw, _ = label_components(p_raw, shape, settings.connectivity)
    g_lin_raw, p_lin_raw = linear_index(g_raw, shape), linear_index(p_raw, shape)
    flat_suv = suv.reshape(-1)
    if settings.suv_threshold is None:
        g_keep = np.ones(len(g_raw), bool)
        p_keep = np.ones(len(p_raw), bool)
    else:
        g_keep = flat_suv[g_lin_raw] > settings.suv_threshold
        p_keep = flat_suv[p_lin_raw] > settings.suv_threshold
    g, p = g_raw[g_keep], p_raw[p_keep]
    g_lin, p_lin = g_lin_raw[g_keep], p_lin_raw[p_keep]
    n_g, n_p = len(g), len(p)
    n_tp = len(np.intersect1d(g_lin, p_lin, assume_unique=True))
    n_fp, n_fn = n_p - n_tp, n_g - n_tp
    n_fp_raw = len(p_raw) - len(np.intersect1d(g_lin, p_lin_raw, assume_unique=True))

    row = {"patient_id": patient_id, "suv_max": float(np.max(suv)),
           "suv_max_gt": float(flat_suv[g_lin].max()) if n_g else NAN}
    row["dice"] = NAN if n_g + n_p == 0 else 2.0 * n_tp / (n_g + n_p)
    row |= surface_metrics(g, p, shape, spacing, settings.tolerance_mm)
    tmtv_true, tmtv_pred = n_g * voxel_ml, n_p * voxel_ml
    row |= {
        "tmtv_pred_raw_ml": len(p_raw) * voxel_ml, "tmtv_pred_ml": tmtv_pred, "tmtv_true_ml": tmtv_true,
        "tmtv_error_ml": tmtv_pred - tmtv_true,
        "tmtv_abs_rel_error": abs(tmtv_pred - tmtv_true) / tmtv_true if n_g else NAN,
        "fp_raw_ml": n_fp_raw * voxel_ml, "fp_ml": n_fp * voxel_ml, "fn_ml": n_fn * voxel_ml, "tp_ml": n_tp * voxel_ml,
        "precision": _ratio(n_tp, n_tp + n_fp), "recall": _ratio(n_tp, n_tp + n_fn),
    }
    row |= lesion_detection(g_lab_raw[g_keep], p_lab_raw[p_keep], g_lin, p_lin, settings.lesion_threshold)
    row |= autopet_volumes(g_raw, p_raw, shape, voxel_ml)
    return {c: row[c] for c in COLUMNS}
