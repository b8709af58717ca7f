"""The run-aware test of a contrast: calibrated on A/A comparisons where the per-patient Wilcoxon is not,
the power it promises, equal to a REML fit, the sign-flip test exact, and the re-analysis from a table."""
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from clips.stats.run_aware import (
    Components,
    Design,
    balanced_core,
    components_of,
    pair_runs,
    power,
    run_aware_test,
    seeds_needed,
    sign_flip,
)

# Matched to the cv30 study (issue #24): 30 patients in 3 folds, patient SD 0.25 Dice, a training run's effect
# of SD 0.095 shared by every test patient of its fold, patient x run residual 0.08.
PATIENT_SD, RUN_SD, RESIDUAL_SD = 0.25, 0.095, 0.08


def _arm(rng, patient_effect, folds, seeds, shift=0.0, name="a"):
    rows = []
    for f, ids in enumerate(folds):
        for s in range(seeds):
            run = rng.normal(0, RUN_SD)
            for i in ids:
                rows.append({"patient_id": f"p{i:02d}", "fold": f, "seed": s, "curriculum": name,
                             "dice": 0.5 + patient_effect[i] + run + shift + rng.normal(0, RESIDUAL_SD)})
    return pd.DataFrame(rows)


def _aa(rng, n=30, k=3, seeds=3, shift=0.0):
    patient = rng.normal(0, PATIENT_SD, n)
    folds = np.array_split(np.arange(n), k)
    return _arm(rng, patient, folds, seeds, shift, "a"), _arm(rng, patient, folds, seeds, 0.0, "b")


def _wilcoxon_per_patient(a, b):
    d = a.groupby("patient_id")["dice"].mean() - b.groupby("patient_id")["dice"].mean()
    return stats.wilcoxon(d).pvalue


def test_a_a_comparisons_are_calibrated_and_the_per_patient_wilcoxon_is_not():
    rng = np.random.default_rng(24)
    reps, alpha = 300, 0.05
    p_run, p_flip, p_wilcoxon = [], [], []
    for _ in range(reps):
        a, b = _aa(rng)
        r = run_aware_test(pair_runs(a, b, "dice"))
        p_run.append(r.p_value)
        p_flip.append(r.p_randomisation)
        p_wilcoxon.append(_wilcoxon_per_patient(a, b))
    band = 3 * np.sqrt(alpha * (1 - alpha) / reps)  # binomial band around alpha
    assert abs(np.mean(np.array(p_run) < alpha) - alpha) < band
    assert np.mean(np.array(p_flip) < alpha) < alpha + band  # exact: at most alpha (discrete, 512 patterns)
    # The negative control: the per-patient test of today's report calls retraining noise an effect.
    assert np.mean(np.array(p_wilcoxon) < alpha) > 0.3


def test_a_true_effect_is_detected_with_the_power_the_formula_predicts():
    rng = np.random.default_rng(7)
    delta, reps = 0.15, 200
    hits = [run_aware_test(pair_runs(*_aa(rng, shift=delta), "dice")).p_value < 0.05 for _ in range(reps)]
    # The difference of two arms: run effects of both, residuals of both; the patient effect cancels.
    comps = Components(run_sd=np.sqrt(2) * RUN_SD, patient_sd=0.0, residual_sd=np.sqrt(2) * RESIDUAL_SD)
    predicted = power(delta, Design((10, 10, 10), (3, 3, 3)), comps)
    assert 0.5 < predicted < 0.95  # a check that can fail both ways
    assert abs(np.mean(hits) - predicted) < 3 * np.sqrt(predicted * (1 - predicted) / reps) + 0.03
    # More seeds, more power; the planner finds the seeds for a target.
    assert power(delta, Design((10, 10, 10), (6, 6, 6)), comps) > predicted
    s = seeds_needed(0.10, (10, 10, 10), comps)
    assert power(0.10, Design((10,) * 3, (s,) * 3), comps) >= 0.8 > power(0.10, Design((10,) * 3, (s - 1,) * 3), comps)


def _reml(y, fold, patient, run):
    """REML fit of y ~ fold + (1 | patient) + (1 | run): variance components (patient, run, residual)."""
    X = pd.get_dummies(pd.Series(fold)).to_numpy(float)
    Zp = pd.get_dummies(pd.Series(patient)).to_numpy(float)
    Zr = pd.get_dummies(pd.Series(run)).to_numpy(float)
    Gp, Gr = Zp @ Zp.T, Zr @ Zr.T

    def nll(theta):
        v = np.exp(theta)
        V = v[0] * Gp + v[1] * Gr + v[2] * np.eye(len(y))
        Vi = np.linalg.inv(V)
        XtViX = X.T @ Vi @ X
        beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
        r = y - X @ beta
        return 0.5 * (np.linalg.slogdet(V)[1] + np.linalg.slogdet(XtViX)[1] + r @ Vi @ r)

    best = optimize.minimize(nll, np.log([0.01, 0.01, 0.01]), method="Nelder-Mead",
                             options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    return np.exp(best.x)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_closed_form_equals_a_reml_fit_on_balanced_tables(seed):
    rng = np.random.default_rng(seed)
    # differences with a patient x arm component so that every component is positive
    rows = []
    for f in range(3):
        patients = rng.normal(0, 0.1, 6)
        for s in range(3):
            run = rng.normal(0, 0.08)
            rows += [{"patient_id": f"f{f}p{i}", "fold": f, "seed": s, "d": 0.02 + patients[i] + run
                      + rng.normal(0, 0.05)} for i in range(6)]
    d = pd.DataFrame(rows)
    tables, note = balanced_core(d)
    assert note == "" and [t.shape for t in tables] == [(6, 3)] * 3
    design = Design((6, 6, 6), (3, 3, 3))
    comps, variance, dof = components_of(tables, design)
    ms = comps.ms
    assert variance == pytest.approx((ms["patient"] + ms["run"] - ms["residual"]) / (18 * 3))  # the closed form
    runs = d["fold"].astype(str) + ":" + d["seed"].astype(str)
    vp, vr, ve = _reml(d["d"].to_numpy(), d["fold"], d["patient_id"], runs)
    if min(comps.patient_sd, comps.run_sd) > 0:  # ANOVA = REML for balanced data when no component is truncated
        assert comps.patient_sd ** 2 == pytest.approx(vp, rel=2e-3)
        assert comps.run_sd ** 2 == pytest.approx(vr, rel=2e-3)
        assert comps.residual_sd ** 2 == pytest.approx(ve, rel=2e-3)
        assert variance == pytest.approx(vp / 18 + vr / 9 + ve / 54, rel=2e-3)


def test_sign_flip_is_exact_on_an_enumerable_case():
    # two folds, two seeds: four run pairs, 16 sign patterns
    tables = [np.array([[0.3, 0.1], [0.2, 0.0]]), np.array([[0.1, -0.2], [0.3, 0.0], [0.2, 0.1]])]
    sums = [0.5, 0.1, 0.6, -0.1]
    observed = abs(sum(sums)) / 10
    by_hand = sum(abs(np.dot(signs, sums)) / 10 >= observed - 1e-12
                  for signs in itertools.product((1, -1), repeat=4)) / 16
    p, null = sign_flip(tables)
    assert p == pytest.approx(by_hand) and len(null) == 16 and by_hand == pytest.approx(6 / 16)


def test_unbalanced_data_drop_to_the_balanced_core_and_say_so():
    rng = np.random.default_rng(3)
    a, b = _aa(rng, n=12, k=3, seeds=3)
    a = a[~((a["fold"] == 1) & (a["seed"] == 2))]  # a failed run
    a = a[~((a["patient_id"] == "p00") & (a["seed"] == 0))]  # a patient missing from one run
    r = run_aware_test(pair_runs(a, b, "dice"))
    assert r.design.seeds == (3, 2, 3) and r.design.patients == (3, 4, 4)
    assert "fold 1 seed 2" in r.note and "p00" in r.note and np.isfinite(r.p_value)
    one_seed = run_aware_test(pair_runs(*_aa(rng, seeds=1), "dice"))
    assert np.isnan(one_seed.p_value) and "one seed per fold" in one_seed.note


def test_compare_per_patient_table_gives_the_hand_computed_numbers(tmp_path):
    from click.testing import CliRunner

    from clips.cli import cli

    # 2 folds x 2 patients x 2 seeds; d = variant - none per patient and run:
    d = {("p1", 0): 0.10, ("p1", 1): 0.30, ("p2", 0): 0.00, ("p2", 1): 0.40,  # fold 0
         ("p3", 0): 0.20, ("p3", 1): 0.20, ("p4", 0): -0.10, ("p4", 1): 0.10}  # fold 1
    rows = []
    for (p, s), diff in d.items():
        fold = 0 if p in ("p1", "p2") else 1
        rows += [{"patient_id": p, "curriculum": "none", "fold": fold, "seed": s, "dice": 0.5},
                 {"patient_id": p, "curriculum": "grow", "fold": fold, "seed": s, "dice": 0.5 + diff}]
    path = tmp_path / "per_patient.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    out = CliRunner().invoke(cli, ["compare", "--per-patient", str(path), "--out", str(tmp_path / "r"),
                                   "--contrasts", "grow:none", "--baseline", "none"])
    assert out.exit_code == 0, out.output
    paired = pd.read_csv(tmp_path / "r" / "paired.csv")
    row = paired[(paired["contrast"] == "grow vs none") & (paired["measure"] == "dice")].iloc[0]
    # By hand. Fold 0: table [[.1,.3],[0,.4]], mean .2; rows .2,.2; cols .05,.35.
    #   SS_P = 2*(0+0) = 0; SS_S = 2*(.15^2+.15^2) = .09; SS_E = sum((d - row - col + m)^2) = 4 * .05^2 = .01
    # Fold 1: [[.2,.2],[-.1,.1]], mean .1; rows .2,0; cols .05,.15.
    #   SS_P = 2*(.1^2+.1^2) = .04; SS_S = 2*(.05^2+.05^2) = .01; SS_E = 4 * .05^2 = .01
    # Pooled: MS_P = .04/2 = .02, MS_S = .10/2 = .05, MS_E = .02/2 = .01; N = 4, S = 2.
    # SE^2 = (.02 + .05 - .01) / 8 = .0075; df = .0075^2 / ((.02/8)^2/2 + (.05/8)^2/2 + (.01/8)^2/2)
    se = np.sqrt(0.0075)
    df = 0.0075 ** 2 / (((0.02 / 8) ** 2 + (0.05 / 8) ** 2 + (0.01 / 8) ** 2) / 2)
    assert row["mean_difference"] == pytest.approx(0.15)
    assert row["se"] == pytest.approx(se) and row["df"] == pytest.approx(df)
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(0.15 / se, df))
    assert row["ci_low"] == pytest.approx(0.15 - stats.t.ppf(0.975, df) * se)
    # sign flips of 4 run pairs with sums .1, .7, .1, .3 (total 1.2 over 8): |sum| >= 1.2 in 2 of 16 patterns
    assert row["p_randomisation"] == pytest.approx(2 / 16)
    assert row["runs"] == 4 and row["patients"] == 4 and row["test"].startswith("crossed random effects")
    assert row["run_sd"] == pytest.approx(np.sqrt((0.05 - 0.01) / 2))
    assert (tmp_path / "r" / "null_distribution.png").exists() and (tmp_path / "r" / "report.html").exists()


def test_compare_per_patient_refuses_a_bad_table_in_one_line(tmp_path):
    from click.testing import CliRunner

    from clips.cli import cli

    path = tmp_path / "t.csv"
    pd.DataFrame({"patient_id": ["a"], "curriculum": ["none"], "dice": [0.5]}).to_csv(path, index=False)
    out = CliRunner().invoke(cli, ["compare", "--per-patient", str(path), "--out", str(tmp_path / "r")])
    assert out.exit_code != 0 and "fold, seed missing" in out.output and "Traceback" not in out.output
