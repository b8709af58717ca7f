"""Cohort statistics of a per-patient table (summary.json)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from clips.metrics.patient import COLUMNS

# Below this many patients a regression line, an r² or a bootstrap interval is noise dressed as a result
# (two patients give r² = 1): figures and tables say "too few patients" instead. One place for the rule.
MIN_PATIENTS = 5
TOO_FEW = f"too few patients (< {MIN_PATIENTS}) for a fit or an interval"


def _finite(x) -> float | None:
    """The value as a float, or None (JSON's null) when it is NaN or infinite."""
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


def tmtv_agreement(table: pd.DataFrame) -> dict:
    """Agreement of predicted with true TMTV over patients: correlation, fit, Bland-Altman, errors."""
    t = table["tmtv_true_ml"].to_numpy(float)
    p = table["tmtv_pred_ml"].to_numpy(float)
    n = len(t)
    out: dict = {"n": n}
    if n >= MIN_PATIENTS and np.std(t) > 0 and np.std(p) > 0:
        r = float(np.corrcoef(t, p)[0, 1])
        slope, intercept = np.polyfit(t, p, 1)
        out |= {"pearson_r": r, "r2": r * r, "slope": float(slope), "intercept_ml": float(intercept)}
    else:
        out |= {"pearson_r": None, "r2": None, "slope": None, "intercept_ml": None}
    diff = p - t
    sd = float(np.std(diff, ddof=1)) if n >= 2 else float("nan")
    bias = float(np.mean(diff)) if n else float("nan")
    enough = n >= MIN_PATIENTS
    out |= {"bland_altman_bias_ml": _finite(bias),
            "bland_altman_loa_low_ml": _finite(bias - 1.96 * sd) if enough else None,
            "bland_altman_loa_high_ml": _finite(bias + 1.96 * sd) if enough else None}
    abs_err = np.abs(diff)
    rel = table["tmtv_abs_rel_error"].to_numpy(float)
    rel = rel[~np.isnan(rel)]
    out |= {"abs_error_ml_mean": _finite(abs_err.mean()) if n else None,
            "abs_error_ml_sd": _finite(abs_err.std(ddof=1)) if n >= 2 else None,
            "abs_rel_error_mean": _finite(rel.mean()) if len(rel) else None,
            "abs_rel_error_sd": _finite(rel.std(ddof=1)) if len(rel) >= 2 else None}
    return out


def lesion_totals(table: pd.DataFrame) -> dict:
    n, gt = len(table), int(table["gt_lesions"].sum())
    out = {"gt_lesions": gt, "patients": n}
    for a in ("a1", "a2"):
        tp, fp = int(table[f"{a}_tp_lesions"].sum()), int(table[f"{a}_fp_preds"].sum())
        out[a] = {"tp_lesions": tp, "fn_lesions": int(table[f"{a}_fn_lesions"].sum()), "fp_preds": fp,
                  "sensitivity": tp / gt if gt else None, "fp_per_patient": fp / n if n else None}
    return out


def summarize(table: pd.DataFrame, settings: dict | None = None) -> dict:
    stats = {}
    for c in COLUMNS[1:]:
        col = table[c].astype(float)
        stats[c] = {"count": int(col.notna().sum()), "mean": _finite(col.mean()), "median": _finite(col.median()),
                    "std": _finite(col.std())}
    return {"patients": len(table), "settings": settings or {}, "columns": stats,
            "tmtv": tmtv_agreement(table), "lesions": lesion_totals(table)}


def headline_metrics(summary: dict, prefix: str) -> dict[str, float]:
    """The cohort figures worth a metric in MLflow (``<prefix>_dice_mean`` ...)."""
    out = {}
    for c in ("dice", "nsd", "hd95_mm", "assd_mm", "tmtv_abs_rel_error", "precision", "recall"):
        for stat in ("mean", "median"):
            v = summary["columns"][c][stat]
            if v is not None:
                out[f"{prefix}_{c}_{stat}"] = v
    for k in ("pearson_r", "r2", "slope", "bland_altman_bias_ml", "abs_error_ml_mean", "abs_rel_error_mean"):
        v = summary["tmtv"].get(k)
        if v is not None:
            out[f"{prefix}_tmtv_{k}"] = v
    for a in ("a1", "a2"):
        for k in ("sensitivity", "fp_per_patient"):
            v = summary["lesions"][a][k]
            if v is not None:
                out[f"{prefix}_lesion_{a}_{k}"] = v
    return out
