"""Group-sequential studies (clips/stats/sequential.py), tested by simulation on tables with the variance components
measured in docs/results.md (3 folds of 10 patients; per patient and run pair d = effect + patient x arm + run +
residual), and on a hand-made table through `clips compare --per-patient --sequential`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clips.stats.run_aware import tables_test
from clips.stats.sequential import SequentialPlan, analyse, first_stop, stopped_estimate, z_boundaries

RUN_SD, PATIENT_SD, RESIDUAL_SD = 0.10, 0.16, 0.13  # the paired differences' components (docs/results.md)
FOLDS, PATIENTS = 3, 10
PLAN = SequentialPlan(max_seeds=6, min_seeds=3)
REPLICATES = 400


def simulate(effect: float, seeds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One study's per-fold patients x seeds tables of paired differences."""
    return [effect + rng.normal(0, PATIENT_SD, (PATIENTS, 1)) + rng.normal(0, RUN_SD, (1, seeds))
            + rng.normal(0, RESIDUAL_SD, (PATIENTS, seeds)) for _ in range(FOLDS)]


def run_replicates(effect: float, n: int = REPLICATES, seed: int = 0):
    """Per replicate: the sequential decision and its look, the fixed design's test at max_seeds, and the naive
    peeker's first p < alpha."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tables = simulate(effect, PLAN.max_seeds, rng)
        looks = analyse(tables, PLAN)
        stop = first_stop(looks)
        fixed = tables_test(tables, randomisation=False)
        naive = any(tables_test([t[:, :k] for t in tables], randomisation=False).p_value < PLAN.alpha
                    for k in PLAN.looks)
        out.append({"decision": looks[stop].decision, "seeds": looks[stop].seeds, "stop": stop,
                    "estimate": looks[stop].estimate, "se": looks[stop].se,
                    "fixed": fixed.p_value < PLAN.alpha and fixed.estimate > 0, "naive": naive})
    return pd.DataFrame(out)


def band(p: float, n: int, z: float = 3.0) -> tuple[float, float]:
    half = z * np.sqrt(p * (1 - p) / n)
    return p - half, p + half


@pytest.fixture(scope="module")
def null_runs():
    return run_replicates(0.0, seed=1)


@pytest.fixture(scope="module")
def effect_runs():
    return run_replicates(0.15, seed=2)


def test_the_boundaries_are_the_published_ones():
    """Lan-DeMets boundaries at 5 equal looks, two-sided alpha 0.05 (gsDesign / ldbounds)."""
    t = (0.2, 0.4, 0.6, 0.8, 1.0)
    assert np.allclose(z_boundaries(t, 0.05, "obf"), [4.877, 3.357, 2.680, 2.290, 2.031], atol=2e-3)
    assert np.allclose(z_boundaries(t, 0.05, "pocock"), [2.438, 2.427, 2.410, 2.397, 2.386], atol=3e-3)
    # the spending is exact on the canonical process: a Monte Carlo of it crosses at rate alpha
    rng = np.random.default_rng(0)
    w = np.cumsum(rng.standard_normal((200_000, 5)) * np.sqrt(0.2), axis=1) / np.sqrt(t)
    assert np.mean((np.abs(w) >= z_boundaries(t, 0.05, "obf")).any(1)) == pytest.approx(0.05, abs=0.003)


def test_under_a_a_the_sequential_design_holds_alpha_and_naive_peeking_does_not(null_runs):
    rejected = null_runs["decision"].isin(["efficacy", "harm"]).mean()
    lo, hi = band(PLAN.alpha, REPLICATES)
    assert lo <= rejected <= hi, rejected  # within the binomial band of alpha (measured: 0.025)
    naive = null_runs["naive"].mean()
    assert naive > hi, naive  # the fixed test at every look, stopping at the first p < alpha: inflated
    assert null_runs["fixed"].mean() <= hi  # the fixed design at max_seeds alone holds alpha too


def test_under_a_a_most_studies_stop_for_futility_before_the_end(null_runs):
    early_futility = ((null_runs["decision"] == "futility") & (null_runs["seeds"] < PLAN.max_seeds)).mean()
    assert early_futility >= 0.5, early_futility


def test_under_an_effect_the_power_is_the_fixed_designs_at_fewer_seeds(effect_runs):
    power = (effect_runs["decision"] == "efficacy").mean()
    fixed = effect_runs["fixed"].mean()
    assert power >= fixed - 0.05, (power, fixed)
    assert effect_runs["seeds"].mean() <= 0.75 * PLAN.max_seeds, effect_runs["seeds"].mean()


def test_the_corrected_estimate_is_less_biased_than_the_naive_one():
    """A study that may stop early for efficacy overestimates its effect; the median-unbiased estimate corrects it
    (efficacy stopping alone: the futility rule's early low estimates would hide the bias it corrects)."""
    plan = SequentialPlan(max_seeds=6, min_seeds=3, futility_power=0)
    rng = np.random.default_rng(3)
    naive, corrected = [], []
    for _ in range(150):
        looks = analyse(simulate(0.10, plan.max_seeds, rng), plan)
        stop = first_stop(looks)
        at = looks[stop]
        naive.append(at.estimate)
        corrected.append(stopped_estimate(at.estimate / at.se, stop, at.se, plan, paths=4000)[0])
    naive_bias, corrected_bias = np.mean(naive) - 0.10, np.mean(corrected) - 0.10
    assert naive_bias > 0 and abs(corrected_bias) < abs(naive_bias), (naive_bias, corrected_bias)


def test_the_interval_at_stopping_covers_like_an_interval():
    runs = run_replicates(0.10, n=150, seed=4)
    covered = []
    for r in runs.itertuples():
        _, lo, hi = stopped_estimate(r.estimate / r.se, int(r.stop), r.se, PLAN, paths=4000)
        covered.append(lo <= 0.10 <= hi)
    assert np.mean(covered) >= 0.85, np.mean(covered)


def test_at_the_last_look_the_decision_is_never_continue():
    rng = np.random.default_rng(5)
    for _ in range(30):
        looks = analyse(simulate(0.03, PLAN.max_seeds, rng), PLAN)
        assert looks[-1].seeds == PLAN.max_seeds and looks[-1].decision != "continue"


def test_looks_use_the_p_value_scale_of_the_t_test():
    """A look crosses when the t test's p reaches the normal boundary's nominal p, whatever its df."""
    nominal = PLAN.p_boundaries()
    assert nominal[3] < nominal[4] < nominal[5] < nominal[6] < PLAN.alpha
    assert nominal[6] == pytest.approx(2 * stats.norm.sf(PLAN.z_boundaries()[-1]))
    assert PLAN.p_boundaries(contrasts=2)[6] < nominal[6]  # Bonferroni: alpha / 2 each


def test_a_plan_that_cannot_look_is_refused():
    from clips.errors import ConfigError

    with pytest.raises(ConfigError, match="min_seeds .4. <= max_seeds .3."):
        SequentialPlan(max_seeds=3, min_seeds=4)
    with pytest.raises(ConfigError, match="spending 'even'"):
        SequentialPlan(max_seeds=5, spending="even")


# ----------------------------------------------------------------------------- re-analysis from a table
def _table(effect: float, seeds: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for f, t in enumerate(simulate(effect, seeds, rng)):
        base = rng.uniform(0.3, 0.6, PATIENTS)
        for i in range(PATIENTS):
            for s in range(seeds):
                pid = f"P{f}{i}"
                rows += [{"patient_id": pid, "curriculum": "none", "fold": f, "seed": s, "dice": base[i],
                          "hard": int(i < 3)},
                         {"patient_id": pid, "curriculum": "x", "fold": f, "seed": s, "dice": base[i] + t[i, s],
                          "hard": int(i < 3)}]
    return pd.DataFrame(rows)


def test_compare_sequential_on_a_table_gives_the_boundaries_decision(tmp_path):
    from click.testing import CliRunner

    from clips.cli import cli

    _table(0.20, 5).to_csv(tmp_path / "pp.csv", index=False)
    res = CliRunner().invoke(cli, ["compare", "--per-patient", str(tmp_path / "pp.csv"), "--out", str(tmp_path / "r"),
                                   "--contrasts", "x:none", "--sequential", "true", "--max-seeds", "6"])
    assert res.exit_code == 0, res.output
    looks = pd.read_csv(tmp_path / "r" / "looks.csv")
    all_ = looks[looks["subset"] == "all"]
    assert list(all_["look"]) == [3, 4, 5] and set(looks["subset"]) == {"all", "hard"}
    bounds = PLAN.p_boundaries()
    for r in all_.itertuples():  # each look's decision is what its p against its boundary says
        assert r.boundary == pytest.approx(bounds[r.look])
        if r.p_value <= r.boundary:
            assert r.decision == "efficacy"
        else:
            assert r.decision in ("continue", "futility")
    paired = pd.read_csv(tmp_path / "r" / "paired.csv")
    row = paired[(paired["contrast"] == "x vs none") & (paired["subset"] == "all") & (paired["measure"] == "dice")]
    first = all_[all_["decision"] != "continue"].iloc[0]
    assert row["decision"].iloc[0] == first["decision"] == "efficacy" and row["look"].iloc[0] == first["look"]
    lo, est, hi = (row[c].iloc[0] for c in ("ci_low_corrected", "estimate_corrected", "ci_high_corrected"))
    if first["look"] == 3:  # stopped at the first look: the stagewise median-unbiased estimate is the naive one
        assert est == pytest.approx(row["estimate_naive"].iloc[0], abs=0.01)
    assert lo < est < hi
    text = (tmp_path / "r" / "comparison.md").read_text()
    assert "group-sequential: looks after seeds 3-6" in text and "trainings:" in text


def test_a_sequential_re_analysis_needs_its_contrasts_and_its_maximum(tmp_path):
    from click.testing import CliRunner

    from clips.cli import cli

    _table(0.0, 3).to_csv(tmp_path / "pp.csv", index=False)
    base = ["compare", "--per-patient", str(tmp_path / "pp.csv"), "--out", str(tmp_path / "r"), "--sequential", "true"]
    res = CliRunner().invoke(cli, base + ["--contrasts", "x:none"])
    assert res.exit_code == 2 and "--max-seeds" in res.output
    res = CliRunner().invoke(cli, base + ["--max-seeds", "5"])
    assert res.exit_code == 2 and "give --contrasts" in res.output


# ----------------------------------------------------------------------------- a real tiny sequential study
@pytest.mark.slow
def test_a_real_tiny_sequential_study_in_chunks_on_three_stores_stops_and_records_its_looks(
        tiny_cohort, tmp_path, monkeypatch):
    """Two arms, 2 folds, at most 4 seeds, looks from 2, run as chunks on three stores (three machines that never
    share a store): chunk 1 trains seed 0 and cannot look; chunk 2 (seeds 1-3) gets chunk 1's committed table, trains
    seed 1 only, and its first look (2 seeds, both chunks) stops the study for futility (a planned effect of 0.001
    Dice, which the remaining seeds could not show): seeds 2-3 are never queued. Chunk 3 (seeds 2-3) on a third store
    looks at the earlier chunks before training anything, and trains nothing."""
    import mlflow

    from clips.study.runner import StudyConfig, run_study

    def on_store(name: str) -> None:  # a machine of its own: MLflow store and job queue
        uri = f"sqlite:///{tmp_path / name}.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)

    def children() -> list:
        return mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="tags.`clips.role` = 'study_child'")

    plan = SequentialPlan(max_seeds=4, min_seeds=2, effect=0.001)
    design = dict(curricula=["none", "random"], folds=2, study_name="seq", contrasts=["random:none"],
                  sequential=plan.__dict__, train={"data_dir": str(tiny_cohort), "model": "tiny", "epochs": "2",
                                                   "steps_per_epoch": "2", "patch_size": "32", "spacing_mm": "10",
                                                   "val_fraction": "0"})
    on_store("first")
    run_study(StudyConfig(first_seed=0, seeds=1, **design), log=print, compare_out=tmp_path / "chunk1")
    assert sorted({c.data.params["cfg.seed"] for c in children()}) == ["0"] and len(children()) == 4

    on_store("second")
    logs = []
    result = run_study(StudyConfig(first_seed=1, seeds=3, earlier_chunks=[str(tmp_path / "chunk1/per_patient.csv")],
                                   **design), log=logs.append, compare_out=tmp_path / "report")
    assert sorted({c.data.params["cfg.seed"] for c in children()}) == ["1"] and len(children()) == 2 * 2
    decisions = result["decisions"]
    row = decisions[(decisions["contrast"] == "random vs none") & (decisions["subset"] == "all")].iloc[0]
    assert row["decision"] == "futility" and row["look"] == 2
    parent = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string="tags.`clips.role` = 'study_parent'")[0]
    assert parent.data.tags["clips.sequential"] == "random vs none: futility at 2 seeds"
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "looks/after_seed_1")}
    assert arts == {"looks/after_seed_1/looks.csv"}
    assert any("every primary contrast has its decision after 2 seeds" in line for line in logs)
    assert any("4 children of earlier chunks" in line for line in logs)
    assert (tmp_path / "report" / "looks.csv").exists()
    assert "group-sequential" in parent.data.params["study.sequential"]
    union = pd.read_csv(tmp_path / "report" / "per_patient.csv")
    assert sorted(union["seed"].unique()) == [0, 1]  # the report is the chunks' union

    on_store("third")
    logs = []
    run_study(StudyConfig(first_seed=2, seeds=2, earlier_chunks=[str(tmp_path / "report/per_patient.csv")], **design),
              log=logs.append)
    assert children() == []
    assert any("every primary contrast has its decision after 2 seeds" in line for line in logs)


def test_an_earlier_chunk_of_another_study_is_refused(tmp_path):
    from clips.errors import ClipsError
    from clips.study.runner import StudyConfig, chunk_keys, earlier_chunks

    _table(0.0, 2).to_csv(tmp_path / "pp.csv", index=False)
    ours = StudyConfig(curricula=["none", "x"], folds=3, earlier_chunks=[str(tmp_path / "pp.csv")])
    assert chunk_keys(earlier_chunks(ours)) == {f"{a}:{f}:{s}" for a in ("none", "x") for f in range(3) for s in (0, 1)}
    with pytest.raises(ClipsError, match=r"pp.csv: arm\(s\) x of the earlier chunks are not arms of study"):
        earlier_chunks(StudyConfig(curricula=["none", "random"], folds=3, earlier_chunks=[str(tmp_path / "pp.csv")]))


def test_a_study_grown_without_a_plan_is_exploratory():
    from clips.study.runner import StudyConfig, unplanned_growth

    grown = unplanned_growth(4, StudyConfig(curricula=["none"], seeds=6))
    assert "grew from its declared 4 to 6 seeds per fold without a sequential plan" in grown
    assert unplanned_growth(4, StudyConfig(curricula=["none"], seeds=4)) == ""
    assert unplanned_growth(4, StudyConfig(curricula=["none"], first_seed=4, seeds=2)) != ""  # a chunk beyond it
    sequential = StudyConfig(curricula=["none"], seeds=6, sequential=SequentialPlan(max_seeds=8).__dict__)
    assert unplanned_growth(4, sequential) == ""
