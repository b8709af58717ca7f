"""Study and comparison: statistics by hand, a real tiny study, its report, and a restart that reuses children."""
import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clips.study.runner import StudyConfig, run_study
from clips.study.stats import bootstrap_ci, paired_against_baseline

TINY = {"model": "tiny", "epochs": "2", "steps_per_epoch": "2", "patch_size": "32", "spacing_mm": "10"}


def _tests(n_patients=8, seeds=2, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(seeds):
        for p in range(n_patients):
            dice = 0.5 + 0.05 * p / n_patients + shift + rng.normal(0, 0.01)
            rows.append({"patient_id": f"p{p}", "seed": s, "dice": dice, "gt_lesions": 2, "a1_tp_lesions": 1})
    return pd.DataFrame(rows)


def test_bootstrap_interval_is_reproducible_and_sensible():
    t = _tests()
    a = bootstrap_ci(t, "dice", n_boot=500, seed=3)
    assert a == bootstrap_ci(t, "dice", n_boot=500, seed=3)  # reproducible with a seed
    assert a != bootstrap_ci(t, "dice", n_boot=500, seed=4)
    est, lo, hi = a
    assert est == pytest.approx(t["dice"].mean()) and lo < est < hi
    assert bootstrap_ci(t, "a1_sensitivity", n_boot=200)[0] == pytest.approx(0.5)  # 16 / 32 lesions
    wide = bootstrap_ci(_tests(n_patients=4), "dice", n_boot=500)
    narrow = bootstrap_ci(_tests(n_patients=40), "dice", n_boot=500)
    assert (narrow[2] - narrow[1]) < (wide[2] - wide[1])


def test_paired_test_matches_scipy_on_a_known_vector():
    base = pd.DataFrame({"patient_id": list("abcdefgh"), "dice": [0.5] * 8})
    d = np.array([0.1, 0.2, -0.05, 0.3, 0.15, -0.1, 0.25, 0.05])
    var = pd.DataFrame({"patient_id": list("abcdefgh"), "dice": 0.5 + d})
    out = paired_against_baseline(var, base)
    assert out["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
    assert out["improved"] == 6 and out["worsened"] == 2 and out["mean_difference"] == pytest.approx(d.mean())
    # For an error, smaller is better: the same differences count the other way round.
    err = paired_against_baseline(var.rename(columns={"dice": "tmtv_abs_rel_error"}),
                                  base.rename(columns={"dice": "tmtv_abs_rel_error"}), "tmtv_abs_rel_error")
    assert err["improved"] == 2 and err["worsened"] == 6 and err["p_wilcoxon"] == out["p_wilcoxon"]


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
    for part in ("Figures of merit", "Against the baseline", "dice per variant", "dice heatmap", "tmtv bland altman",
                 "learning curves", "data:image/png;base64,", "predefined"):
        assert part in html, part
    assert "http" not in html.split("<body>")[1]  # self-contained: nothing to fetch
    summary = result["summary"]
    assert list(summary["variant"].unique()) == ["none", "predefined"] and "dice_ci_low" in summary  # baseline first
    assert (tmp_path / "report" / "comparison.csv").exists() and (tmp_path / "report" / "paired_vs_none.csv").exists()
    md = (tmp_path / "report" / "comparison.md").read_text().split("## Against the baseline")
    table = [line for line in md[0].splitlines() if line.startswith("| ")]
    assert table[0].startswith("| variant | subset | patients | seeds | wall time vs baseline | dice |")
    assert len(table) == 2 + len(summary)
    ratio = summary.set_index(["variant", "subset"])["wall_time_vs_baseline"]
    assert ratio["none", "all"] == pytest.approx(1.0) and 0.2 < ratio["predefined", "all"] < 5
    assert sum(line.startswith("| none | all |") for line in table) == 1
    assert {line.count("|") for line in table} == {table[0].count("|")}
    assert "| predefined | all | dice |" in md[1]
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
