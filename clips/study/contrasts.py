"""The study's answers: declared contrasts, paired per patient, corrected for multiplicity, with power.

The patient is the unit: each arm's value per patient is its mean over seeds; a contrast is
the per-patient difference (variant minus reference) over every patient both arms tested.
Contrasts come in families: ``primary`` (declared before the results, StudyConfig.contrasts),
``secondary`` (every other variant against the baseline), and the ``noise floor`` (the
baseline against itself with another seed: what "no effect" looks like). Holm's adjustment
runs within each family, subset and measure.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clips.curricula import BASELINE
from clips.study.stats import (
    holm,
    min_detectable_difference,
    paired_against_baseline,
    paired_bootstrap_ci,
    paired_differences,
    spearman_ci,
)

PAIRED_MEASURES = ("dice", "nsd", "hd95_mm", "tmtv_abs_rel_error")
PAIRED_COLUMNS = ["contrast", "family", "subset", "measure", "patients", "mean_difference", "ci_low", "ci_high",
                  "improved", "worsened", "p_wilcoxon", "p_holm"]


def declared_contrasts(variants: list[str], primary: list[str]) -> list[tuple[str, str, str]]:
    """(variant, reference, family) for every contrast whose two arms the study has."""
    have = set(variants)
    out = [(v, r, "primary") for v, r in (c.split(":") for c in primary) if v in have and r in have]
    named = {(v, r) for v, r, _ in out}
    out += [(v, BASELINE, "secondary") for v in variants if v != BASELINE and (v, BASELINE) not in named]
    return out


def _row(name, family, subset, measure, variant: pd.DataFrame, reference: pd.DataFrame) -> dict:
    low, high = paired_bootstrap_ci(variant, reference, measure)
    return ({"contrast": name, "family": family, "subset": subset, "measure": measure}
            | paired_against_baseline(variant, reference, measure) | {"ci_low": low, "ci_high": high})


def paired_table(per_patient: pd.DataFrame, hard: set[str], primary: list[str]) -> pd.DataFrame:
    """One row per contrast x subset x measure (PAIRED_COLUMNS)."""
    arms = {c: t for c, t in per_patient.groupby("curriculum", sort=False)}
    subsets = [("all", None)] + ([("hard", hard)] if hard else [])
    rows = []
    pairs = [(f"{v} vs {r}", arms[v], arms[r], fam) for v, r, fam in declared_contrasts(list(arms), primary)]
    base = arms.get(BASELINE)
    if base is not None and base["seed"].nunique() > 1:  # the baseline against itself, another seed
        s0, s1 = sorted(base["seed"].unique())[:2]
        pairs.append((f"{BASELINE} seed {s1} vs {BASELINE} seed {s0}", base[base["seed"] == s1],
                      base[base["seed"] == s0], "noise floor"))
    for name, a, b, family in pairs:
        for subset, ids in subsets:
            sa, sb = (a, b) if ids is None else (a[a["patient_id"].isin(ids)], b[b["patient_id"].isin(ids)])
            rows += [_row(name, family, subset, m, sa, sb) for m in PAIRED_MEASURES if m in per_patient]
    table = pd.DataFrame(rows).reindex(columns=PAIRED_COLUMNS)
    for (family, _, _), idx in table.groupby(["family", "subset", "measure"]).groups.items():
        if family != "noise floor":
            table.loc[idx, "p_holm"] = holm(table.loc[idx, "p_wilcoxon"])
    return table


def power_statement(per_patient: pd.DataFrame, paired: pd.DataFrame, hard: set[str], primary: list[str]) -> list[str]:
    """For each subset: the smallest paired Dice difference the study detects with 80 % power at
    alpha = 0.05 after Holm's correction over the primary contrasts, from the observed spread."""
    lines = []
    arms = {c: t for c, t in per_patient.groupby("curriculum", sort=False)}
    named = [(v, r) for v, r, fam in declared_contrasts(list(arms), primary) if fam == "primary"]
    for subset, ids in [("all", None)] + ([("hard", hard)] if hard else []):
        sds, n = [], 0
        for v, r in named:
            a, b = arms[v], arms[r]
            if ids is not None:
                a, b = a[a["patient_id"].isin(ids)], b[b["patient_id"].isin(ids)]
            d = paired_differences(a, b, "dice")["difference"]
            if len(d) > 1:
                sds.append(float(d.var(ddof=1)))
                n = max(n, len(d))
        if not sds:
            continue
        sd = float(np.sqrt(np.mean(sds)))
        mdd = min_detectable_difference(sd, n, tests=len(named))
        lines.append(f"{subset} patients (n = {n}): with the observed spread of paired Dice differences "
                     f"(SD {sd:.3f}, pooled over {len(named)} primary contrasts), the smallest mean paired Dice "
                     f"difference detectable with 80 % power at alpha = 0.05 after Holm's correction over "
                     f"{len(named)} contrasts is {mdd:.3f}.")
    return lines or ["no primary contrast has both arms in this study: no power statement."]


def noise_floor_statement(paired: pd.DataFrame) -> str:
    rows = paired[(paired["family"] == "noise floor") & (paired["subset"] == "all") & (paired["measure"] == "dice")]
    if rows.empty:
        return "noise floor: needs at least two seeds of the baseline."
    r = rows.iloc[0]
    return (f"noise floor: {r['contrast']}, mean paired Dice difference {r['mean_difference']:+.3f} "
            f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] over {r['patients']} patients: differences between arms "
            "of this size are what retraining alone produces.")


def difficulty_statement(per_patient: pd.DataFrame, difficulty: pd.DataFrame | None) -> tuple[str, dict]:
    """Spearman correlation between each patient's cohort difficulty score and the baseline's error (1 - Dice)."""
    base = per_patient[per_patient["curriculum"] == BASELINE]
    if difficulty is None or base.empty:
        return "difficulty against outcome: needs the baseline and the runs' cohort difficulty table.", {}
    err = 1 - base.groupby("patient_id")["dice"].mean()
    joined = difficulty.set_index("patient_id")["score_cohort"].to_frame().join(err.rename("error"), how="inner")
    rho, lo, hi, n = spearman_ci(joined["score_cohort"], joined["error"])
    result = {"spearman_rho": rho, "ci_low": lo, "ci_high": hi, "patients": n}
    return (f"difficulty against outcome: Spearman rho between the cohort difficulty score and the baseline's "
            f"per-patient error (1 - Dice) = {rho:.2f} [{lo:.2f}, {hi:.2f}], {n} patients. A curriculum orders "
            "patients by this score; a rho near 0 means the ordering does not follow where the network fails."), result
