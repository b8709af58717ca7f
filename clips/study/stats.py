"""Statistics of a comparison: patient-level bootstrap intervals and paired tests against the baseline."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

# Figure of merit -> how it is computed from a per-patient test table (one row per patient and seed).
MEASURES = {
    "dice": lambda t: t["dice"],
    "nsd": lambda t: t["nsd"],
    "hd95_mm": lambda t: t["hd95_mm"],
    "tmtv_abs_error_ml": lambda t: t["tmtv_error_ml"].abs(),
    "tmtv_abs_rel_error": lambda t: t["tmtv_abs_rel_error"],
}
# Where a smaller value is the better one ("improved" means a negative difference).
LOWER_IS_BETTER = {"hd95_mm", "tmtv_abs_error_ml", "tmtv_abs_rel_error", "a1_fp_per_patient", "a2_fp_per_patient"}
DETECTION = {"a1_sensitivity": ("a1_tp_lesions", "gt_lesions"), "a2_sensitivity": ("a2_tp_lesions", "gt_lesions"),
             "a1_fp_per_patient": ("a1_fp_preds", None), "a2_fp_per_patient": ("a2_fp_preds", None)}


def _statistic(rows: pd.DataFrame, name: str) -> float:
    if name in MEASURES:
        v = MEASURES[name](rows).to_numpy(float)
        v = v[~np.isnan(v)]
        return float(v.mean()) if len(v) else float("nan")
    num, den = DETECTION[name]
    total = rows[num].sum()
    if den is None:
        return float(total / len(rows)) if len(rows) else float("nan")
    d = rows[den].sum()
    return float(total / d) if d else float("nan")


def bootstrap_ci(table: pd.DataFrame, name: str, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """(estimate, low, high): the statistic over patients and seeds, and a percentile bootstrap interval that
    resamples patients (all seeds of a drawn patient come along: seeds of one patient are not independent)."""
    estimate = _statistic(table, name)
    patients = table["patient_id"].unique()
    if len(patients) < 2:
        return estimate, float("nan"), float("nan")
    groups = {p: idx for p, idx in table.groupby("patient_id").indices.items()}
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        draw = rng.choice(patients, size=len(patients), replace=True)
        rows = table.iloc[np.concatenate([groups[p] for p in draw])]
        values[b] = _statistic(rows, name)
    values = values[~np.isnan(values)]
    if not len(values):
        return estimate, float("nan"), float("nan")
    a = (1 - level) / 2
    return estimate, float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


def paired_against_baseline(variant: pd.DataFrame, baseline: pd.DataFrame, column: str = "dice") -> dict:
    """Per-patient differences (mean over seeds, variant minus baseline) and a two-sided Wilcoxon test.

    ``improved`` / ``worsened`` count patients by the measure's direction (see LOWER_IS_BETTER);
    ``mean_difference`` keeps its sign."""
    a = variant.groupby("patient_id")[column].mean()
    b = baseline.groupby("patient_id")[column].mean()
    both = pd.concat([a, b], axis=1, keys=["v", "b"]).dropna()
    # Rounded so that equal differences are ties, as they are, not float noise apart.
    d = np.round((both["v"] - both["b"]).to_numpy(float), 12)
    better = d < 0 if column in LOWER_IS_BETTER else d > 0
    out = {"patients": len(d), "mean_difference": float(d.mean()) if len(d) else float("nan"),
           "improved": int(np.sum(better)), "worsened": int(np.sum(~better & (d != 0))), "p_wilcoxon": float("nan")}
    if len(d) and np.any(d != 0):
        out["p_wilcoxon"] = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return out
