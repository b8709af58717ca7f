"""A straightforward, independent implementation of the metric suite of docs/metrics.md.

Dense NumPy/SciPy and DeepMind's surface-distance functions, called once per metric,
as a hand-written script would do it. It is the reference that the tests compare
clips.metrics against (to 1e-6, counts exactly) and the baseline of
benchmarks/bench_metrics.py. It is deliberately not fast.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

# surface-distance 0.1 (the PyPI release) still uses the aliases NumPy 2 removed.
np.Inf = np.inf  # type: ignore[attr-defined]
np.NaN = np.nan  # type: ignore[attr-defined]
import surface_distance as sd  # noqa: E402

NAN = float("nan")
STRUCTURES = {6: ndimage.generate_binary_structure(3, 1), 18: ndimage.generate_binary_structure(3, 2),
              26: ndimage.generate_binary_structure(3, 3)}


def _dice(a, b):
    s = a.sum() + b.sum()
    return NAN if s == 0 else 2.0 * (a & b).sum() / s


def reference_patient(patient_id, truth, pred, suv, affine, tolerance_mm=5.0, suv_threshold=4.0,
                      connectivity=6, lesion_threshold=0.5):
    spacing = tuple(np.linalg.norm(affine[:3, :3], axis=0))
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    truth, pred = truth.astype(bool), pred.astype(bool)
    g_lab, _ = ndimage.label(truth, STRUCTURES[connectivity])
    p_lab, _ = ndimage.label(pred, STRUCTURES[connectivity])
    if suv_threshold is not None:
        g_lab = np.where(suv > suv_threshold, g_lab, 0)
        p_lab = np.where(suv > suv_threshold, p_lab, 0)
    G, P = g_lab > 0, p_lab > 0
    row = {"patient_id": patient_id, "suv_max": float(suv.max()), "suv_max_gt": float(suv[G].max()) if G.any() else NAN,
           "dice": _dice(G, P)}

    # Surface metrics: one DeepMind call per metric, as a per-metric script would.
    if not G.any() and not P.any():
        row |= dict.fromkeys(["mean_distance_mm", "assd_mm", "hd_mm", "hd95_mm", "nsd", "bji"], NAN)
    elif not G.any() or not P.any():
        row |= {"mean_distance_mm": NAN, "assd_mm": NAN, "hd_mm": NAN, "hd95_mm": NAN, "nsd": 0.0, "bji": 0.0}
    else:
        row["mean_distance_mm"] = sd.compute_average_surface_distance(sd.compute_surface_distances(G, P, spacing))[0]
        s = sd.compute_surface_distances(G, P, spacing)
        row["assd_mm"] = ((s["distances_gt_to_pred"] * s["surfel_areas_gt"]).sum()
                          + (s["distances_pred_to_gt"] * s["surfel_areas_pred"]).sum()) / (
                              s["surfel_areas_gt"].sum() + s["surfel_areas_pred"].sum())
        row["hd_mm"] = sd.compute_robust_hausdorff(sd.compute_surface_distances(G, P, spacing), 100)
        row["hd95_mm"] = sd.compute_robust_hausdorff(sd.compute_surface_distances(G, P, spacing), 95)
        row["nsd"] = sd.compute_surface_dice_at_tolerance(sd.compute_surface_distances(G, P, spacing), tolerance_mm)
        s = sd.compute_surface_distances(G, P, spacing)
        num = 0.0
        for d, a in ((s["distances_gt_to_pred"], s["surfel_areas_gt"]),
                     (s["distances_pred_to_gt"], s["surfel_areas_pred"])):
            ok = d <= tolerance_mm
            num += (a[ok] * (1 - (d[ok] / tolerance_mm) ** 2)).sum()
        row["bji"] = num / (s["surfel_areas_gt"].sum() + s["surfel_areas_pred"].sum())

    tp, fp, fn = (G & P).sum(), (P & ~G).sum(), (G & ~P).sum()
    row["tmtv_pred_raw_ml"] = pred.sum() * voxel_ml
    row["tmtv_pred_ml"] = P.sum() * voxel_ml
    row["tmtv_true_ml"] = G.sum() * voxel_ml
    row["tmtv_error_ml"] = row["tmtv_pred_ml"] - row["tmtv_true_ml"]
    row["tmtv_abs_rel_error"] = abs(row["tmtv_error_ml"]) / row["tmtv_true_ml"] if G.any() else NAN
    row["fp_raw_ml"] = (pred & ~G).sum() * voxel_ml
    row["fp_ml"], row["fn_ml"], row["tp_ml"] = fp * voxel_ml, fn * voxel_ml, tp * voxel_ml
    row["precision"] = tp / (tp + fp) if tp + fp else NAN
    row["recall"] = tp / (tp + fn) if tp + fn else NAN

    # Lesion-wise detection, one lesion at a time.
    g_ids = [i for i in np.unique(g_lab) if i]
    p_ids = [j for j in np.unique(p_lab) if j]
    row["gt_lesions"], row["pred_lesions"] = len(g_ids), len(p_ids)
    a1_tp = a2_tp = 0
    for i in g_ids:
        gi = g_lab == i
        touching = [j for j in np.unique(p_lab[gi]) if j]
        if any(_dice(gi, p_lab == j) >= lesion_threshold for j in touching):
            a1_tp += 1
        if touching and _dice(gi, np.isin(p_lab, touching)) >= lesion_threshold:
            a2_tp += 1
    a1_fp = a2_fp = 0
    for j in p_ids:
        pj = p_lab == j
        touching = [i for i in np.unique(g_lab[pj]) if i]
        if not any(_dice(g_lab == i, pj) >= lesion_threshold for i in touching):
            a1_fp += 1
        if not touching or _dice(np.isin(g_lab, touching), pj) < lesion_threshold:
            a2_fp += 1
    row |= {"a1_tp_lesions": a1_tp, "a1_fn_lesions": len(g_ids) - a1_tp, "a1_fp_preds": a1_fp,
            "a2_tp_lesions": a2_tp, "a2_fn_lesions": len(g_ids) - a2_tp, "a2_fp_preds": a2_fp}

    # autoPET challenge volumes, after the challenge's own script: raw masks, 18-connectivity.
    g18, ng = ndimage.label(truth, STRUCTURES[18])
    p18, npred = ndimage.label(pred, STRUCTURES[18])
    fpv = sum((p18 == j).sum() for j in range(1, npred + 1) if not (truth & (p18 == j)).any())
    fnv = sum((g18 == i).sum() for i in range(1, ng + 1) if not (pred & (g18 == i)).any())
    row["autopet_fpv_ml"] = fpv * voxel_ml
    row["autopet_fnv_ml"] = fnv * voxel_ml if ng else NAN
    return {k: float(v) if not isinstance(v, str) else v for k, v in row.items()}
