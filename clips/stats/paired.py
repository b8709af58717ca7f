"""Statistics of a comparison: per-arm bootstrap intervals, Holm, Spearman; a fixed model's per-patient Wilcoxon."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from clips.metrics.summary import MIN_PATIENTS

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


def _per_patient_sums(table: pd.DataFrame, name: str, order) -> tuple[np.ndarray, np.ndarray]:
    """(numerator, denominator) of the statistic summed per patient in ``order``: the statistic of any multiset of
    patients is the ratio of their weighted sums, which makes the bootstrap a matrix product."""
    if name in MEASURES:
        v = pd.Series(MEASURES[name](table).to_numpy(float), index=table.index)
        num, den = v.fillna(0.0), v.notna().astype(float)
    else:
        col, total = DETECTION[name]
        num = table[col].astype(float)
        den = table[total].astype(float) if total is not None else pd.Series(1.0, index=table.index)
    by = table["patient_id"]
    return (num.groupby(by).sum().reindex(order).to_numpy(float),
            den.groupby(by).sum().reindex(order).to_numpy(float))


def bootstrap_ci(table: pd.DataFrame, name: str, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """(estimate, low, high): the statistic over patients and seeds, and a percentile bootstrap interval that
    resamples patients (all seeds of a drawn patient come along: seeds of one patient are not independent)."""
    estimate = _statistic(table, name)
    patients = table["patient_id"].unique()
    if len(patients) < MIN_PATIENTS:  # an interval from a handful of patients is not one
        return estimate, float("nan"), float("nan")
    num, den = _per_patient_sums(table, name, patients)
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.choice(len(patients), size=len(patients), replace=True),
                                   minlength=len(patients)) for _ in range(n_boot)]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (counts @ num) / (counts @ den)
    values = values[np.isfinite(values)]
    if not len(values):
        return estimate, float("nan"), float("nan")
    a = (1 - level) / 2
    return estimate, float(np.quantile(values, a)), float(np.quantile(values, 1 - a))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def wilcoxon_greater(x: np.ndarray, y: np.ndarray) -> float:
    """p-value that x is greater than y, paired by position, one-sided Wilcoxon signed-rank; 1.0 when every pair
    is tied. Right for two *fixed* models on the same independent patients (promotion, clips/registry/promote.py);
    wrong for two training procedures in cross-validation, where one trained network scores a whole fold (the
    per-patient Wilcoxon is the negative control of tests/test_inference.py there): studies use run_aware."""
    d = np.round(np.asarray(x, float) - np.asarray(y, float), 12)  # equal differences are ties, not float noise
    d = d[~np.isnan(d)]
    if not len(d) or np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, alternative="greater", zero_method="wilcox").pvalue)


def spearman_ci(x, y, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float, int]:
    """(rho, low, high, n): Spearman's correlation with a bootstrap interval over pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return float("nan"), float("nan"), float("nan"), len(x)
    rho = float(stats.spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(x), len(x)) for _ in range(n_boot)]
    values = np.array([stats.spearmanr(x[d], y[d]).statistic for d in draws], float)
    values = values[~np.isnan(values)]
    a = (1 - level) / 2
    return rho, float(np.quantile(values, a)), float(np.quantile(values, 1 - a)), len(x)
