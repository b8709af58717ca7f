"""The study's answers: declared contrasts tested with the training run as a random factor (inference.py).

A contrast pairs the runs of two arms with the same fold and seed; per patient and run pair the difference
variant minus reference. The estimate is the mean over patients and seeds; the interval and the primary
p-value come from the crossed random-effects model (patient x training run), the companion p-value from the
sign-flip randomisation over run pairs; Holm's adjustment runs on the larger of the two, within each family,
subset and measure. Families: ``primary`` (declared before the results, StudyConfig.contrasts),
``secondary`` (every other variant against the baseline) and ``calibration``: the baseline against itself
(A/A), declared in advance to come out non-significant. If it does not, the instrument failed calibration and
the report calls every contrast exploratory.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clips.curricula import BASELINE
from clips.stats.paired import LOWER_IS_BETTER, holm
from clips.stats.run_aware import (
    Components,
    Design,
    aa_sides,
    arm_components,
    min_detectable,
    pair_runs,
    run_aware_test,
    seeds_needed,
)

PAIRED_MEASURES = ("dice", "nsd", "hd95_mm", "tmtv_abs_rel_error")
CALIBRATION = "calibration"
ALPHA = 0.05
TEST_NAME = "crossed random effects (patient x training run), Satterthwaite t"
DESCRIPTIVE = "descriptive only: the subset was selected on the baseline's own Dice, so a test would be biased"
PAIRED_COLUMNS = ["contrast", "family", "subset", "measure", "patients", "runs", "mean_difference", "ci_low",
                  "ci_high", "p_value", "p_randomisation", "p_holm", "test", "improved", "worsened", "se", "df",
                  "run_sd", "patient_sd", "residual_sd", "df_run", "df_patient", "df_residual", "note"]


def declared_contrasts(variants: list[str], primary: list[str], baseline: str = BASELINE
                       ) -> list[tuple[str, str, str]]:
    """(variant, reference, family) for every contrast whose two arms the study has."""
    have = set(variants)
    out = [(v, r, "primary") for v, r in (c.split(":") for c in primary) if v in have and r in have]
    named = {(v, r) for v, r, _ in out}
    if baseline in have:
        out += [(v, baseline, "secondary") for v in variants if v != baseline and (v, baseline) not in named]
    return out


def _row(name, family, subset, measure, a: pd.DataFrame, b: pd.DataFrame, tested: bool) -> dict:
    d = pair_runs(a, b, measure)
    per_patient = d.groupby("patient_id")["d"].mean()
    better = per_patient < 0 if measure in LOWER_IS_BETTER else per_patient > 0
    row = {"contrast": name, "family": family, "subset": subset, "measure": measure,
           "patients": int(d["patient_id"].nunique()), "runs": int(d.groupby(["fold", "seed"]).ngroups),
           "improved": int(better.sum()), "worsened": int((~better & (per_patient != 0)).sum())}
    r = run_aware_test(d)
    row |= {"mean_difference": r.estimate, "note": r.note}
    if not tested:
        return row | {"test": DESCRIPTIVE, "note": ""}
    row |= {"ci_low": r.ci_low, "ci_high": r.ci_high, "p_value": r.p_value, "p_randomisation": r.p_randomisation,
            "se": r.se, "df": r.df, "test": TEST_NAME if r.testable else "not testable"}
    if r.components is not None:
        row |= r.components.as_row()
    return row


VS = " vs "  # a contrast's name in every table: "variant vs reference"


def contrast_name(variant: str, reference: str) -> str:
    return f"{variant}{VS}{reference}"


def contrast_arms(name: str) -> tuple[str, ...]:
    """The arms of a declared contrast's name (variant, reference), read back by the looks."""
    return tuple(name.split(VS))


def contrast_pairs(per_patient: pd.DataFrame, primary: list[str], baseline: str = BASELINE):
    """(name, variant rows, reference rows, family, how): the declared contrasts and the A/A check."""
    arms = {c: t for c, t in per_patient.groupby("curriculum", sort=False)}
    pairs = [(contrast_name(v, r), arms[v], arms[r], fam, "")
             for v, r, fam in declared_contrasts(list(arms), primary, baseline)]
    if baseline in arms:
        others = [t["seed"].nunique() for c, t in arms.items() if c != baseline]
        sides = aa_sides(arms[baseline], max(others) if others else arms[baseline]["seed"].nunique() // 2)
        if sides is not None:
            a, b, how = sides
            pairs.append((contrast_name(baseline, baseline) + " (A/A)", a, b, CALIBRATION, how))
    return pairs


def paired_table(per_patient: pd.DataFrame, hard: set[str], primary: list[str], baseline: str = BASELINE,
                 hard_is_flag: bool = True) -> pd.DataFrame:
    """One row per contrast x subset x measure (PAIRED_COLUMNS). The hard subset is tested only when it is the
    cohort's own flag (``hard_is_flag``), never when it was selected on the baseline's results."""
    subsets = [("all", None)] + ([("hard", hard)] if hard else [])
    rows = []
    for name, a, b, family, _ in contrast_pairs(per_patient, primary, baseline):
        for subset, ids in subsets:
            sa, sb = (a, b) if ids is None else (a[a["patient_id"].isin(ids)], b[b["patient_id"].isin(ids)])
            tested = ids is None or hard_is_flag
            rows += [_row(name, family, subset, m, sa, sb, tested) for m in PAIRED_MEASURES if m in per_patient]
    table = pd.DataFrame(rows).reindex(columns=PAIRED_COLUMNS)
    # Holm on the larger of the two p-values: where the model-based and the exact test disagree, the larger wins.
    worst = table[["p_value", "p_randomisation"]].max(axis=1, skipna=False)
    for (family, _, _), idx in table.groupby(["family", "subset", "measure"]).groups.items():
        if family != CALIBRATION:
            table.loc[idx, "p_holm"] = holm(worst.loc[idx])
    return table


# ----------------------------------------------------------------------------- statements
def calibration(paired: pd.DataFrame) -> dict:
    """The A/A check on Dice, all patients: passed (True), failed (False) or not possible (None)."""
    rows = paired[(paired["family"] == CALIBRATION) & (paired["subset"] == "all") & (paired["measure"] == "dice")]
    if rows.empty or not np.isfinite(rows.iloc[0]["p_value"]):
        return {"passed": None, "row": rows.iloc[0] if len(rows) else None}
    r = rows.iloc[0]
    return {"passed": bool(max(r["p_value"], r["p_randomisation"]) >= ALPHA), "row": r}


def calibration_statement(per_patient: pd.DataFrame, paired: pd.DataFrame, primary: list[str],
                          baseline: str = BASELINE) -> str:
    how = next((h for _, _, _, fam, h in contrast_pairs(per_patient, primary, baseline) if fam == CALIBRATION), "")
    check = calibration(paired)
    if check["row"] is None:
        return (f"calibration (A/A): not possible: it needs at least 2 seeds of the baseline {baseline} "
                "(better: twice the arms' seeds, --baseline-seeds).")
    r = check["row"]
    if check["passed"] is None:
        return f"calibration (A/A), {how}: not testable ({r['note']})."
    verdict = ("passed: retraining alone is not called significant" if check["passed"] else
               "FAILED: the test calls retraining noise significant on this study, so every contrast below is "
               "exploratory, not evidence")
    return (f"calibration (A/A), {how}: Dice {r['mean_difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], "
            f"p = {r['p_value']:.3g} (randomisation p = {r['p_randomisation']:.3g}): {verdict}.")


def _pooled(rows: pd.DataFrame) -> Components:
    var = {k: float(np.mean(rows[f"{k}_sd"] ** 2)) for k in ("run", "patient", "residual")}
    return Components(*(float(np.sqrt(var[k])) for k in ("run", "patient", "residual")))


def power_statement(per_patient: pd.DataFrame, paired: pd.DataFrame, hard: set[str], primary: list[str],
                    baseline: str = BASELINE) -> list[str]:
    """The variance components of the primary Dice contrasts (or of the A/A when there are none), the smallest
    difference the design as run detects with 80 % power at alpha = 0.05 after Holm over the primary contrasts,
    and the seeds per fold it would take for +0.05 and +0.10 Dice."""
    lines = []
    m = max(1, int(((paired["family"] == "primary") & (paired["subset"] == "all")
                    & (paired["measure"] == "dice")).sum()))
    for subset in ["all"] + (["hard"] if hard else []):
        rows = paired[(paired["subset"] == subset) & (paired["measure"] == "dice") & paired["run_sd"].notna()]
        source = rows[rows["family"] == "primary"]
        source = source if len(source) else rows[rows["family"] == CALIBRATION]
        if source.empty:
            continue
        comps = _pooled(source)
        d = per_patient if subset == "all" else per_patient[per_patient["patient_id"].isin(hard)]
        folds = d.groupby("fold")["patient_id"].nunique()
        seeds = max(2, int(round(source.iloc[0]["runs"] / len(folds))))  # per side, as the contrast was run
        design = Design(tuple(int(n) for n in folds), (seeds,) * len(folds))
        mdd = min_detectable(design, comps, ALPHA / m)
        need = {delta: seeds_needed(delta, design.patients, comps, ALPHA / m) for delta in (0.05, 0.10)}
        said = {k: (f"{v} seeds per fold ({2 * v * len(folds)} trainings for one contrast)" if v else
                    "not reachable by more seeds: it needs more patients") for k, v in need.items()}
        lines.append(
            f"{subset} patients: variance components of the paired Dice differences ({', '.join(source['contrast'])}"
            f"): run SD {comps.run_sd:.3f}, patient x arm SD {comps.patient_sd:.3f}, residual SD "
            f"{comps.residual_sd:.3f} (df {int(source['df_run'].iloc[0])}, {int(source['df_patient'].iloc[0])}, "
            f"{int(source['df_residual'].iloc[0])}). For the design as run ({design.describe()}), the smallest "
            f"mean Dice difference detectable with 80 % power at alpha = 0.05 after Holm over {m} primary "
            f"contrast(s) is {mdd:.3f}; +0.05 needs {said[0.05]}, +0.10 needs {said[0.10]}.")
    arm_lines = []
    for curriculum, t in per_patient.groupby("curriculum", sort=False):
        c = arm_components(t, "dice")
        if c is not None:
            arm_lines.append(f"{curriculum} {c.run_sd:.3f} (df {c.df['run']})")
    if arm_lines:
        lines.append("run SD of each arm's own test Dice (how far one training's luck moves all patients of its "
                     "fold together): " + ", ".join(arm_lines) + ".")
    return lines or ["no primary contrast and no A/A check is testable in this study: no power statement."]


def difficulty_statement(per_patient: pd.DataFrame, difficulty: pd.DataFrame | None,
                         baseline: str = BASELINE) -> tuple[str, dict]:
    """Spearman correlation between each patient's cohort difficulty score and the baseline's error (1 - Dice)."""
    from clips.stats.paired import spearman_ci

    base = per_patient[per_patient["curriculum"] == baseline]
    if difficulty is None or base.empty:
        return "difficulty against outcome: needs the baseline and the runs' cohort difficulty table.", {}
    err = 1 - base.groupby("patient_id")["dice"].mean()
    joined = difficulty.set_index("patient_id")["score_cohort"].to_frame().join(err.rename("error"), how="inner")
    rho, lo, hi, n = spearman_ci(joined["score_cohort"], joined["error"])
    result = {"spearman_rho": rho, "ci_low": lo, "ci_high": hi, "patients": n}
    return (f"difficulty against outcome: Spearman rho between the cohort difficulty score and the baseline's "
            f"per-patient error (1 - Dice) = {rho:.2f} [{lo:.2f}, {hi:.2f}], {n} patients. A curriculum orders "
            "patients by this score; a rho near 0 means the ordering does not follow where the network fails."), result


# ----------------------------------------------------------------------------- sequential looks
LOOK_COLUMNS = ["contrast", "subset", "measure", "look", "estimate", "se", "p_value", "boundary",
                "conditional_power", "decision"]
SEQUENTIAL_COLUMNS = ["decision", "look", "boundary", "estimate_naive", "estimate_corrected", "ci_low_corrected",
                      "ci_high_corrected"]


def sequential_tables(per_patient: pd.DataFrame, hard: set[str], primary: list[str], plan,
                      baseline: str = BASELINE, hard_is_flag: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(looks, decisions) of a sequential study's primary Dice contrasts (clips/stats/sequential.py): every look
    from ``plan.min_seeds`` to the seeds present (the table's seeds in order: look l is its first l seeds), for
    all patients and for the flagged hard ones; and per contrast and subset the decision at the first look that
    is not ``continue`` (the last look when none), with the naive and the corrected estimate and the interval
    that accounts for the looks (SEQUENTIAL_COLUMNS)."""
    from clips.stats.run_aware import balanced_core
    from clips.stats.sequential import analyse, first_stop, stopped_estimate

    pairs = [p for p in contrast_pairs(per_patient, primary, baseline) if p[3] == "primary"]
    m = max(1, len(pairs))
    subsets = [("all", None)] + ([("hard", hard)] if hard and hard_is_flag else [])
    looks, decisions = [], []
    for name, a, b, _, _ in pairs:
        for subset, ids in subsets:
            sa, sb = (a, b) if ids is None else (a[a["patient_id"].isin(ids)], b[b["patient_id"].isin(ids)])
            tables, _ = balanced_core(pair_runs(sa, sb, "dice"))
            seq = analyse(tables, plan, m)
            looks += [{"contrast": name, "subset": subset, "measure": "dice", "look": x.seeds, "estimate": x.estimate,
                       "se": x.se, "p_value": x.p_value, "boundary": x.boundary,
                       "conditional_power": x.conditional_power, "decision": x.decision} for x in seq]
            if not seq:
                continue
            stop = first_stop(seq)
            at = seq[stop] if stop is not None else seq[-1]
            row = {"contrast": name, "subset": subset, "measure": "dice", "decision": at.decision, "look": at.seeds,
                   "boundary": at.boundary, "estimate_naive": at.estimate}
            if stop is not None and at.se > 0:
                row["estimate_corrected"], row["ci_low_corrected"], row["ci_high_corrected"] = stopped_estimate(
                    at.estimate / at.se, stop, at.se, plan, m)
            decisions.append(row)
    return (pd.DataFrame(looks, columns=LOOK_COLUMNS),
            pd.DataFrame(decisions).reindex(columns=["contrast", "subset", "measure"] + SEQUENTIAL_COLUMNS))


def sequential_statement(decisions: pd.DataFrame, plan, arms: list[str], folds: int, primary_count: int) -> list[str]:
    """The plan, each contrast's decision, and the trainings the design used against the fixed design's (an arm
    trains until the last of its contrasts on all patients stops)."""
    lines = [plan.describe(primary_count) + "."]
    for _, r in decisions.iterrows():
        corrected = (f", corrected (median-unbiased, stagewise ordering) {r['estimate_corrected']:+.3f} "
                     f"[{r['ci_low_corrected']:+.3f}, {r['ci_high_corrected']:+.3f}]"
                     if np.isfinite(r.get("estimate_corrected", np.nan)) else "")
        lines.append(f"{r['contrast']} ({r['subset']} patients): {r['decision']} at {int(r['look'])} seeds "
                     f"(nominal p boundary {r['boundary']:.4f}); naive Dice difference {r['estimate_naive']:+.3f}"
                     f"{corrected}.")
    rows = decisions[decisions["subset"] == "all"]
    fixed = len(arms) * folds * plan.max_seeds
    if rows.empty or (rows["decision"] == "continue").any():
        return lines + [f"trainings: no decision on every contrast yet (the fixed design: {fixed})."]
    seeds = dict.fromkeys(arms, plan.max_seeds)  # an arm in no primary contrast trains to the end
    in_contrast: dict[str, int] = {}
    for _, r in rows.iterrows():
        for arm in contrast_arms(r["contrast"]):
            in_contrast[arm] = max(in_contrast.get(arm, 0), int(r["look"]))
    seeds |= {a: k for a, k in in_contrast.items() if a in seeds}
    used = folds * sum(seeds.values())
    return lines + [f"trainings: {used} with this sequential design against {fixed} for the fixed design at "
                    f"{plan.max_seeds} seeds ({used / fixed:.0%})."]
