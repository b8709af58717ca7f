"""Study and comparison: statistics by hand, a real tiny study, its report, and a restart that reuses children."""
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clips.stats.paired import bootstrap_ci
from clips.study.runner import StudyConfig, run_study

TINY = {"model": "tiny", "epochs": "2", "steps_per_epoch": "2", "patch_size": "32", "spacing_mm": "10"}


def _tests(n_patients=8, seeds=2, shift=0.0, seed=0, folds=3):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        for p in range(n_patients):
            dice = 0.5 + 0.05 * p / n_patients + shift + rng.normal(0, 0.01)
            rows.append({"patient_id": f"p{p}", "fold": p % folds, "seed": s, "dice": dice, "gt_lesions": 2,
                         "a1_tp_lesions": 1})
    return pd.DataFrame(rows)


def test_bootstrap_interval_is_reproducible_and_sensible():
    t = _tests()
    a = bootstrap_ci(t, "dice", n_boot=500, seed=3)
    assert a == bootstrap_ci(t, "dice", n_boot=500, seed=3)  # reproducible with a seed
    assert a != bootstrap_ci(t, "dice", n_boot=500, seed=4)
    est, lo, hi = a
    assert est == pytest.approx(t["dice"].mean()) and lo < est < hi
    assert bootstrap_ci(t, "a1_sensitivity", n_boot=200)[0] == pytest.approx(0.5)  # 16 / 32 lesions
    wide = bootstrap_ci(_tests(n_patients=6), "dice", n_boot=500)
    assert np.isnan(bootstrap_ci(_tests(n_patients=4), "dice", n_boot=500)[1:]).all()  # too few for an interval
    narrow = bootstrap_ci(_tests(n_patients=40), "dice", n_boot=500)
    assert (narrow[2] - narrow[1]) < (wide[2] - wide[1])


def test_the_bootstrap_by_per_patient_sums_is_the_resampling_of_rows():
    """The interval comes from per-patient sums (a matrix product per draw); it must be the percentile bootstrap
    that resamples the patients' rows and recomputes the statistic, draw for draw (NaN Dice, a ratio of lesion
    counts, a per-patient rate)."""
    from clips.stats.paired import _statistic

    t = _tests(n_patients=9, seeds=3)
    t.loc[[1, 5], "dice"] = np.nan
    t["gt_lesions"] = np.arange(len(t)) % 4
    t["a1_fp_preds"] = np.arange(len(t)) % 3
    patients = t["patient_id"].unique()
    groups = t.groupby("patient_id").indices
    for name in ("dice", "a1_sensitivity", "a1_fp_per_patient"):
        rng = np.random.default_rng(0)
        values = np.array([_statistic(t.iloc[np.concatenate([groups[p] for p in rng.choice(patients, len(patients))])],
                                      name) for _ in range(300)])
        values = values[~np.isnan(values)]
        expected = (_statistic(t, name), np.quantile(values, 0.025), np.quantile(values, 0.975))
        assert bootstrap_ci(t, name, n_boot=300) == pytest.approx(expected, rel=1e-12), name


def test_promotions_paired_test_matches_scipy_on_a_known_vector():
    from clips.stats.paired import wilcoxon_greater

    d = np.array([0.1, 0.2, -0.05, 0.3, 0.15, -0.1, 0.25, 0.05])
    base = np.full(8, 0.5)
    assert wilcoxon_greater(base + d, base) == pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue)
    assert wilcoxon_greater(base - d, base) == pytest.approx(stats.wilcoxon(-d, alternative="greater").pvalue)
    assert wilcoxon_greater(base, base) == 1.0  # every pair tied: no evidence either way


def _pictured_report_sections() -> tuple[str, ...]:
    """The report's sections docs/ui.md names and pictures (docs/ui_screenshots.py's REPORT_SECTIONS), each checked
    to be named in docs/ui.md."""
    import importlib.util
    import re

    docs = Path(__file__).resolve().parent.parent / "docs"
    spec = importlib.util.spec_from_file_location("ui_screenshots", docs / "ui_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = re.sub(r"\s+", " ", (docs / "ui.md").read_text())
    assert module.REPORT_SECTIONS and not [s for s in module.REPORT_SECTIONS if f"**{s}**" not in text]
    return module.REPORT_SECTIONS


@pytest.mark.slow
def test_tiny_study_report_and_restart(tiny_cohort, tmp_path):
    scfg = StudyConfig(curricula=["none", "predefined"], seeds=2, study_name="tiny",
                       train={"data_dir": str(tiny_cohort), **TINY})
    logs = []
    result = run_study(scfg, log=logs.append, compare_out=tmp_path / "report")
    children = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="tags.`clips.role` = 'study_child'")
    assert len(children) == 4 and {c.data.params["cfg.split_seed"] for c in children} == {"0"}
    assert {(c.data.params["cfg.curriculum"], c.data.params["cfg.seed"]) for c in children} == {
        ("none", "0"), ("none", "1"), ("predefined", "0"), ("predefined", "1")}
    html = (tmp_path / "report" / "report.html").read_text()
    pictured = _pictured_report_sections()  # what docs/ui.md names and its picture of the report shows
    assert not [s for s in pictured if f"<h2>{s}</h2>" not in html], "docs/ui.md's report sections are gone: " \
        "update the docs and take the pictures again (python docs/ui_screenshots.py)"
    for part in ("dice per variant", "dice heatmap", "tmtv bland altman", "null distribution",
                 "learning curves", "data:image/png;base64,", "predefined"):
        assert part in html, part
    assert "http" not in html.split("<body>")[1]  # self-contained: nothing to fetch
    summary = result["summary"]
    assert list(summary["variant"].unique()) == ["none", "predefined"] and "dice_ci_low" in summary  # baseline first
    for name in ("comparison.csv", "per_patient.csv", "paired.csv"):
        assert (tmp_path / "report" / name).exists(), name
    md = (tmp_path / "report" / "comparison.md").read_text().split("## Contrasts, paired per patient")
    table = [line for line in md[0].splitlines() if line.startswith("| ")]
    assert table[0].startswith("| variant | subset | patients | seeds | wall time vs baseline | dice |")
    assert len(table) == 2 + len(summary)
    ratio = summary.set_index(["variant", "subset"])["wall_time_vs_baseline"]
    assert ratio["none", "all"] == pytest.approx(1.0) and 0.2 < ratio["predefined", "all"] < 5
    assert sum(line.startswith("| none | all |") for line in table) == 1
    assert {line.count("|") for line in table} == {table[0].count("|")}
    assert "| predefined vs none | secondary | all | dice |" in md[1]
    assert "calibration (A/A), the baseline's seeds in halves, 1 against 0" in md[1]
    assert "difficulty against outcome: Spearman" in md[1]
    parent = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string="tags.`clips.role` = 'study_parent'")[0]
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "comparison")}
    assert "comparison/report.html" in arts and "compare.none.dice_mean" in parent.data.metrics

    # Started again: the finished children are reused, not retrained.
    logs.clear()
    run_study(scfg, log=logs.append)
    again = mlflow.search_runs(search_all_experiments=True, output_format="list",
                               filter_string="tags.`clips.role` = 'study_child'")
    assert len(again) == 4 and sum("reused" in line for line in logs) == 4


# ----------------------------------------------------------------------------- cross-validated design
def test_folds_test_every_patient_once_and_are_stratified():
    from clips.data.splits import assign_folds, make_fold_split

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"patient_id": [f"p{i:02d}" for i in range(40)],
                          "subject": [f"s{i // 2:02d}" for i in range(40)], "tmtv_ml": rng.lognormal(3, 1, 40),
                          "hard": [int(i % 4 < 2) for i in range(40)]})
    folds = assign_folds(table, 5, seed=0)
    assert folds.equals(assign_folds(table, 5, seed=0)) and set(folds) == set(range(5))
    assert (table.assign(f=folds).groupby("subject")["f"].nunique() == 1).all()  # a subject stays in one fold
    hard_per_fold = table.assign(f=folds).groupby("f")["hard"].sum()
    assert hard_per_fold.max() - hard_per_fold.min() <= 2  # 10 hard subjects spread over 5 folds
    tested = []
    for k in range(5):
        split = make_fold_split(table, 5, k, seed=0, val_fraction=0.2)
        test = set(split.loc[split["split"] == "test", "patient_id"])
        assert set(split.loc[split["fold"] == k, "patient_id"]) == test
        assert 0 < (split["split"] == "val").sum() and not test & set(split.loc[split["split"] != "test", "patient_id"])
        tested += sorted(test)
    assert sorted(tested) == sorted(table["patient_id"])  # every patient tested exactly once
    no_val = make_fold_split(table, 5, 0, seed=0, val_fraction=0.0)
    assert (no_val["split"] == "val").sum() == 0


def test_every_patient_once_per_curriculum_and_seed_and_a_teacher_per_fold():
    from clips.study.config import Job, StudyConfig
    from clips.study.runner import child_params, teacher_job

    scfg = StudyConfig(curricula=["none", "transfer_teacher", "smoothing"], seeds=2, folds=3)
    jobs = scfg.jobs()
    assert len(jobs) == 3 * 3 * 2 and len(set(jobs)) == len(jobs)
    assert {j for j in jobs[:3]} == {Job("none", f, 0) for f in range(3)}  # the teachers first
    assert [j.seed for j in jobs] == sorted(j.seed for j in jobs)  # then seed by seed: whole seeds first
    assert teacher_job(scfg, Job("transfer_teacher", 2, 1)) == Job("none", 2, 0)
    # a chunk (seeds 4-5) is taught by its own first seed's baseline, which it trains first
    chunk = StudyConfig(curricula=["none", "transfer_teacher"], first_seed=4, seeds=2, folds=3)
    assert teacher_job(chunk, Job("transfer_teacher", 2, 5)) == Job("none", 2, 4)
    assert {j for j in chunk.jobs()[:3]} == {Job("none", f, 4) for f in range(3)}
    assert Job("smoothing", 1, 0).key == "smoothing:1:0"
    params = child_params(scfg, Job("smoothing", 1, 0), {})
    assert params["folds"] == "3" and params["fold"] == "1"
    assert child_params(StudyConfig(selection="last"), Job("none", -1, 0), {})["val_fraction"] == "0"
    # A second baseline seed for the noise floor costs K children, not a second seed of every arm.
    floor = StudyConfig(curricula=["none", "smoothing"], seeds=1, baseline_seeds=2, folds=3).jobs()
    assert sorted(j for j in floor if j.arm == "none") == [Job("none", f, s) for f in range(3) for s in (0, 1)]
    assert {j.seed for j in floor if j.arm == "smoothing"} == {0}


def test_every_job_names_its_arm_and_the_kind_of_arm_that_fills_its_run():
    from clips.study.config import CURRICULUM, PEER, REFERENCE, StudyConfig
    from clips.study.runner import ARM_RUNNERS

    scfg = StudyConfig(curricula=["none"], seeds=2, folds=2, references={"released": "models:/r/1"}, peers=["nnunet"])
    kinds = {(j.arm, j.kind) for j in scfg.jobs()}
    assert kinds == {("none", CURRICULUM), ("released", REFERENCE), ("nnunet", PEER)}
    # a fixed model is evaluated once a fold; a trained arm once a fold and seed
    assert sum(j.arm == "released" for j in scfg.jobs()) == 2 and sum(j.arm == "nnunet" for j in scfg.jobs()) == 4
    assert set(ARM_RUNNERS) == {CURRICULUM, REFERENCE, PEER} and scfg.arms() == {"none", "released", "nnunet"}


def test_holm_against_hand_computed_values():
    from clips.stats.paired import holm

    # p sorted 0.01, 0.02, 0.04, 0.3 of m = 4: 4 x 0.01, max(., 3 x 0.02), max(., 2 x 0.04), max(., 1 x 0.3)
    assert holm([0.04, 0.01, 0.3, 0.02]).tolist() == pytest.approx([0.08, 0.04, 0.3, 0.06])
    assert holm([0.5, 0.4]).tolist() == pytest.approx([0.8, 0.8])  # monotone: the larger never drops below
    out = holm([0.01, float("nan"), 0.02])
    assert np.isnan(out[1]) and out[[0, 2]].tolist() == pytest.approx([0.02, 0.02])


def test_a_design_whose_primary_contrast_cannot_be_tested_is_refused_before_training(tiny_cohort):
    from clips.errors import ConfigError
    from clips.study.runner import check

    scfg = StudyConfig(curricula=["none", "progressive_patch"], seeds=2, folds=3, contrasts=["progressive_patch:none"],
                       train={"data_dir": str(tiny_cohort), **TINY})
    with pytest.raises(ConfigError, match="progressive_patch:none with 2 seed.s. per fold cannot be tested") as err:
        run_study(scfg, log=lambda *_: None)
    assert "\n" not in str(err.value) and "--exploratory" in str(err.value)
    assert not mlflow.search_runs(search_all_experiments=True, output_format="list")  # nothing trained or logged
    check(StudyConfig(curricula=["none", "progressive_patch"], seeds=3, folds=3, contrasts=["progressive_patch:none"],
                      train={"data_dir": str(tiny_cohort), **TINY}))  # three seeds: accepted
    check(StudyConfig(curricula=["none", "progressive_patch"], seeds=1, folds=3, contrasts=[],
                      train={"data_dir": str(tiny_cohort), **TINY}))  # exploratory: accepted


def test_the_inner_split_can_follow_the_seed_while_the_folds_stay():
    from clips.data.splits import make_fold_split
    from clips.study.config import Job
    from clips.study.runner import child_params

    scfg = StudyConfig(curricula=["none"], seeds=3, folds=3, vary_inner_split=True)
    assert [child_params(scfg, Job("none", 0, s), {})["val_split_seed"] for s in range(3)] == ["0", "1", "2"]
    assert "val_split_seed" not in child_params(StudyConfig(curricula=["none"]), Job("none", 0, 1), {})
    table = pd.DataFrame({"patient_id": [f"p{i:02d}" for i in range(30)], "subject": [f"s{i}" for i in range(30)],
                          "tmtv_ml": np.arange(30.0)})
    a, b = (make_fold_split(table, 3, 0, 0, 0.2, val_seed=v) for v in (0, 1))
    assert a["fold"].equals(b["fold"]) and not a["split"].equals(b["split"])
    assert set(a.loc[a["split"] == "test", "patient_id"]) == set(b.loc[b["split"] == "test", "patient_id"])


def test_contrasts_are_declared_and_the_a_a_check_is_the_baseline_against_itself():
    from clips.study.contrasts import declared_contrasts, paired_table

    got = declared_contrasts(["none", "random", "predefined", "smoothing"], ["smoothing:none", "predefined:random",
                                                                             "self_paced:none"])
    assert got == [("smoothing", "none", "primary"), ("predefined", "random", "primary"),
                   ("random", "none", "secondary"), ("predefined", "none", "secondary")]
    rows = []
    for curriculum, shift in (("none", 0.0), ("smoothing", 0.05), ("predefined", 0.0), ("random", 0.0)):
        t = _tests(n_patients=12, seeds=3, shift=shift, seed=len(rows)).assign(curriculum=curriculum)
        rows.append(t.assign(nsd=t["dice"], hd95_mm=1.0, tmtv_abs_rel_error=0.1))
    per_patient = pd.concat(rows, ignore_index=True)
    paired = paired_table(per_patient, {"p0", "p1", "p2"}, ["smoothing:none", "predefined:random"])
    dice = paired[(paired["measure"] == "dice") & (paired["subset"] == "all")].set_index("contrast")
    assert dice.loc["smoothing vs none", "improved"] == 12 and dice.loc["smoothing vs none", "p_holm"] < 0.01
    assert dice.loc["smoothing vs none", "ci_low"] > 0.03 and dice.loc["smoothing vs none", "runs"] == 9
    assert set(dice["family"]) == {"primary", "secondary", "calibration"}
    floor = dice.loc["none vs none (A/A)"]
    assert abs(floor["mean_difference"]) < 0.02 and np.isnan(floor["p_holm"]) and floor["runs"] == 3
    primary = dice[dice["family"] == "primary"]
    assert (primary["p_holm"] >= primary[["p_value", "p_randomisation"]].max(axis=1)).all()
    # The worst-quartile subset (selected on the baseline's own Dice) is described, never tested.
    selected = paired_table(per_patient, {"p0", "p1", "p2"}, ["smoothing:none"], hard_is_flag=False)
    hard = selected[selected["subset"] == "hard"]
    assert hard["p_value"].isna().all() and hard["test"].str.startswith("descriptive only").all()


@pytest.mark.slow
def test_tiny_cross_validated_study(tiny_cohort, tmp_path):
    scfg = StudyConfig(curricula=["none", "random"], seeds=1, folds=3, study_name="cv", contrasts=[],
                       train={"data_dir": str(tiny_cohort), **TINY})  # exploratory: one seed
    result = run_study(scfg, log=lambda *_: None, compare_out=tmp_path / "report")
    per_patient = pd.read_csv(tmp_path / "report" / "per_patient.csv")
    assert list(per_patient.columns[:9]) == ["patient_id", "curriculum", "seed", "fold", "hard", "dice", "nsd",
                                             "hd95_mm", "tmtv_abs_rel_error"]
    counts = per_patient.groupby(["curriculum", "patient_id"]).size()
    assert len(counts) == 2 * 6 and (counts == 1).all()  # every patient tested once per curriculum (1 seed)
    assert set(per_patient["fold"]) == {0, 1, 2}
    paired = pd.read_csv(tmp_path / "report" / "paired.csv")
    assert list(paired.columns[:12]) == ["contrast", "family", "subset", "measure", "patients", "runs",
                                         "mean_difference", "ci_low", "ci_high", "p_value", "p_randomisation", "p_holm"]
    assert (paired.loc[paired["subset"] == "all", "patients"] == 6).all()
    assert paired["p_value"].isna().all() and paired["note"].str.contains("one seed per fold").all()
    children = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="tags.`clips.role` = 'study_child'")
    assert sorted(c.data.tags["clips.study_key"] for c in children) == sorted(
        f"{c}:{f}:0" for c in ("none", "random") for f in range(3))
    assert result["statements"][0].startswith("calibration (A/A): not possible")


def test_wall_time_ratio_is_not_moved_by_one_disturbed_run():
    from clips.study.compare import wall_time_ratio

    # Three baseline runs of about 420 s, one of them slowed to 1,900 s by a test suite beside it.
    tests = pd.DataFrame({"run_id": list("abcdef"), "variant": ["none"] * 3 + ["progressive_patch"] * 3,
                          "wall_s": [420.0, 1900.0, 430.0, 400.0, 410.0, 405.0]})
    assert wall_time_ratio(tests, "progressive_patch") == pytest.approx(405 / 430)
    assert wall_time_ratio(tests, "none") == pytest.approx(1.0)
    assert np.isnan(wall_time_ratio(tests, "smoothing"))


@pytest.mark.slow
def test_an_arm_withdrawn_from_a_running_study(tiny_cohort, tmp_path):
    """The withdrawal that a hand edit of the queue's tables once did, and the running study died of."""
    import os
    import subprocess
    import sys
    import time

    args = ["--curricula", "none,random", "--folds", "2", "--seeds", "1", "--exploratory", "true", "--study-name",
            "w", "-P", f"data_dir={tiny_cohort}"] + [x for k, v in TINY.items() for x in ("-P", f"{k}={v}")]
    log = open(tmp_path / "study.log", "w+")
    study = subprocess.Popen([sys.executable, "-m", "clips", "study", *args], stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ))
    deadline = time.time() + 300
    while "none:0:0 finished" not in (tmp_path / "study.log").read_text():
        assert study.poll() is None and time.time() < deadline, (tmp_path / "study.log").read_text()
        time.sleep(0.5)
    out = subprocess.run([sys.executable, "-m", "clips", "study", "--withdraw", "random", "--study-name", "w"],
                         capture_output=True, text=True, env=dict(os.environ))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "withdrew random" in out.stdout
    assert study.wait(timeout=300) == 0, (tmp_path / "study.log").read_text()
    children = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="tags.`clips.role` = 'study_child'")
    keys = sorted(c.data.tags["clips.study_key"] for c in children)
    assert [k for k in keys if k.startswith("none:")] == ["none:0:0", "none:1:0"]
    assert len([k for k in keys if k.startswith("random:")]) <= 1  # at most one was training when withdrawn
    parent = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string="tags.`clips.role` = 'study_parent'")[0]
    tag = parent.data.tags["clips.withdrawn.random"]
    assert parent.data.tags["clips.withdrawn"] == "random" and "children had finished by then (none:0:0" in tag
    bad = subprocess.run([sys.executable, "-m", "clips", "study", "--withdraw", "smoothing", "--study-name", "w"],
                         capture_output=True, text=True, env=dict(os.environ))
    assert bad.returncode == 2 and "no arm smoothing" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_a_fixed_reference_model_is_an_arm_of_the_study(tiny_cohort, tmp_path):
    """--reference NAME=URI: a fixed model evaluated in every fold (no training), compared with the trained arm
    under every seed by the run-aware test."""
    from clips.config import build_config
    from clips.training.trainer import train

    fixed = train(build_config({"data_dir": str(tiny_cohort), **TINY}), log=lambda *_: None)
    scfg = StudyConfig(curricula=["none"], seeds=2, folds=2, study_name="ref", contrasts=[],
                       references={"frozen": f"runs:/{fixed.run_id}/model"},
                       train={"data_dir": str(tiny_cohort), **TINY})
    run_study(scfg, log=lambda *_: None, compare_out=tmp_path / "report")
    children = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                  filter_string="tags.`clips.role` = 'study_child'")
    refs = [c for c in children if "clips.reference" in c.data.tags]
    assert sorted(c.data.tags["clips.study_key"] for c in refs) == [f"frozen:{f}:0" for f in range(2)]
    assert all(c.info.status == "FINISHED" and "cfg.epochs" not in c.data.params for c in refs)  # not trained
    per_patient = pd.read_csv(tmp_path / "report" / "per_patient.csv")
    frozen = per_patient[per_patient["curriculum"] == "frozen"]
    assert len(frozen) == 6 * 2 and (frozen.groupby("patient_id")["dice"].nunique() == 1).all()  # every seed
    paired = pd.read_csv(tmp_path / "report" / "paired.csv")
    row = paired[(paired["contrast"] == "frozen vs none") & (paired["measure"] == "dice")
                 & (paired["subset"] == "all")].iloc[0]
    assert row["runs"] == 4 and row["patients"] == 6  # 2 folds x 2 seeds
    with pytest.raises(Exception, match="no model there"):
        run_study(StudyConfig(curricula=["none"], seeds=1, folds=3, study_name="bad", contrasts=[],
                              references={"gone": "runs:/0123456789abcdef/model"},
                              train={"data_dir": str(tiny_cohort), **TINY}), log=lambda *_: None)


def test_a_grown_design_is_described_and_unknown_old_keys_are_not_changes():
    from clips.study.runner import design_changes

    before = {"curricula": ["none"], "seeds": 4, "folds": 3, "contrasts": ["progressive_patch:none"]}
    grown = StudyConfig(curricula=["none", "progressive_patch"], seeds=10, folds=3,
                        contrasts=["progressive_patch:none"])
    assert design_changes(before, grown) == "curricula none -> none,progressive_patch, seeds 4 -> 10"
    assert design_changes(None, grown) == ""
