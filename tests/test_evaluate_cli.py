"""clips evaluate on a folder of real NIfTI predictions: outputs, names of broken inputs, statistics."""
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import ndimage, stats

from clips.cli import cli
from clips.metrics.patient import COLUMNS
from clips.metrics.summary import summarize


def _predictions(cohort, out, names="{pid}.nii.gz"):
    """Imperfect predictions: the truth dilated once, for every patient."""
    out.mkdir()
    for pdir in sorted(p for p in cohort.iterdir() if p.is_dir()):
        seg = nib.load(pdir / "SEG.nii.gz")
        pred = ndimage.binary_dilation(np.asarray(seg.dataobj)).astype(np.uint8)
        nib.save(nib.Nifti1Image(pred, seg.affine), out / names.format(pid=pdir.name))
    return out


def test_outputs_and_reports(tiny_cohort, tmp_path):
    pred = _predictions(tiny_cohort, tmp_path / "pred", "{pid}_SEG.nii.gz")  # TMTV-Net's output name
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tiny_cohort), "--pred-dir", str(pred),
                                   "--out", str(out), "--workers", "2"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "per_patient.csv")
    assert list(table.columns) == COLUMNS and len(table) == 6
    assert pd.read_parquet(out / "per_patient.parquet").equals(table)
    assert (table["recall"] > 0.5).all() and (table["tmtv_error_ml"] >= 0).all()  # dilation over-segments
    assert (table["tmtv_pred_raw_ml"] > table["tmtv_true_ml"]).all()
    report = (out / "reports" / "SYN0001.txt").read_text()
    assert "tolerance_mm=5.0" in report and "suv_threshold=4.0" in report and "connectivity=6" in report
    assert f"{table.loc[0, 'dice']:.4f}" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["patients"] == 6 and summary["columns"]["dice"]["count"] == 6
    assert summary["errors"] == []


def test_missing_and_misshaped_predictions_are_named(tiny_cohort, tmp_path):
    pred = _predictions(tiny_cohort, tmp_path / "pred")
    (pred / "SYN0002.nii.gz").unlink()
    img = nib.load(pred / "SYN0004.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :-3], img.affine), pred / "SYN0004.nii.gz")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tiny_cohort), "--pred-dir", str(pred),
                                   "--out", str(out), "--suv-threshold", "none"])
    assert res.exit_code == 1
    assert "SYN0002: no prediction found" in res.output
    assert "SYN0004: SYN0004.nii.gz: prediction shape" in res.output
    assert len(pd.read_csv(out / "per_patient.csv")) == 4  # the others are still evaluated
    assert len(json.loads((out / "summary.json").read_text())["errors"]) == 2


def test_bad_options_are_clear(tiny_cohort, tmp_path):
    res = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tiny_cohort), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "exactly one of --pred-dir and --model-uri" in res.output
    res = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tiny_cohort), "--pred-dir", str(tmp_path),
                                   "--out", str(tmp_path), "--suv-threshold", "high"])
    assert res.exit_code != 0 and "--suv-threshold" in res.output


def test_cohort_statistics_by_hand():
    rng = np.random.default_rng(0)
    t = rng.uniform(10, 500, 12)
    p = t * 1.1 + rng.normal(0, 20, 12)
    table = pd.DataFrame({c: np.zeros(12) for c in COLUMNS[1:]})
    table["patient_id"] = [f"p{i}" for i in range(12)]
    table["tmtv_true_ml"], table["tmtv_pred_ml"] = t, p
    table["tmtv_abs_rel_error"] = np.abs(p - t) / t
    table["gt_lesions"], table["a1_tp_lesions"], table["a1_fp_preds"] = 3, 2, 1
    s = summarize(table)
    r, _ = stats.pearsonr(t, p)
    fit = stats.linregress(t, p)
    d = p - t
    assert s["tmtv"]["pearson_r"] == pytest.approx(r) and s["tmtv"]["r2"] == pytest.approx(r * r)
    assert s["tmtv"]["slope"] == pytest.approx(fit.slope) and s["tmtv"]["intercept_ml"] == pytest.approx(fit.intercept)
    assert s["tmtv"]["bland_altman_bias_ml"] == pytest.approx(d.mean())
    assert s["tmtv"]["bland_altman_loa_high_ml"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    assert s["tmtv"]["abs_error_ml_mean"] == pytest.approx(np.abs(d).mean())
    assert s["lesions"]["a1"]["sensitivity"] == pytest.approx(24 / 36)
    assert s["lesions"]["a1"]["fp_per_patient"] == pytest.approx(1.0)
    assert s["columns"]["tmtv_true_ml"]["median"] == pytest.approx(np.median(t))
