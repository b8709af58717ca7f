"""DICOM in, DICOM SEG out: series written by the tests with pydicom from generated NIfTI patients."""
import csv
import json
import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset

from clips.cli import cli
from clips.data.dicom import import_dicom, write_dicom_seg
from clips.data.dicom.seg import SOURCE_FILE
from clips.data.dicom.suv import SUVError, suv_factor
from clips.data.layout import discover
from tests.dicom_series import F18_HALF_LIFE, suv_to_bqml_factor, write_patient


def _case(tiny_cohort_master, n=0):
    return sorted(p for p in tiny_cohort_master.iterdir() if p.is_dir())[n]


def _report(out):
    with open(out / "import_report.csv") as fh:
        return list(csv.DictReader(fh))


def test_round_trip_nifti_dicom_nifti(tiny_cohort_master, tmp_path):
    """SUV within the storage's rounding, the same affine, CT from a finer grid back on the PET grid, the labels
    from a DICOM SEG, the localiser ignored, file names shuffled in nested folders."""
    case = _case(tiny_cohort_master)
    uids = write_patient(case, tmp_path / "dicom" / "p1", "PAT-1", seed=1)
    result = import_dicom(tmp_path / "dicom", tmp_path / "out", log=lambda *_: None)
    assert result.converted == ["PAT-1"] and result.failed == []
    got = {n: nib.load(tmp_path / "out/PAT-1" / f"{n}.nii.gz") for n in ("SUV", "CTres", "SEG")}
    ref = {n: nib.load(case / f"{n}.nii.gz") for n in ("SUV", "CTres", "SEG")}
    for n in got:
        assert got[n].shape == ref[n].shape
        assert np.allclose(got[n].affine, ref[n].affine, atol=1e-3), n
    suv, suv_ref = got["SUV"].get_fdata(), ref["SUV"].get_fdata()
    assert np.abs(suv - suv_ref).max() <= suv_ref.max() / 65000 * 1.01 + 1e-6  # one step of the 16-bit storage
    assert np.abs(got["CTres"].get_fdata() - ref["CTres"].get_fdata()).max() <= 2  # HU rounding, both ways
    assert np.array_equal(np.asarray(got["SEG"].dataobj), np.asarray(ref["SEG"].dataobj) > 0)
    rows = _report(tmp_path / "out")
    why = {r["description"]: (r["used"], r["why"]) for r in rows}
    assert why["Topogram"] == ("no", "localiser (ImageType LOCALIZER)")
    assert why["PET AC"][0] == "yes" and why["CT 2mm"][0] == "yes" and why[""][0] == "yes"  # the SEG
    source = json.loads((tmp_path / "out/PAT-1" / SOURCE_FILE).read_text())
    assert source["pet_series_uid"] == uids["pet_series"] and len(source["pet_files"]) == suv.shape[2]
    assert [f.patient_id for f in discover(tmp_path / "out")] == ["PAT-1"]  # ready for training and prediction


def _pet_header(**kw):
    ds = Dataset()
    ds.Units, ds.DecayCorrection, ds.PatientWeight = kw.get("units", "BQML"), kw.get("correction", "START"), 80.0
    ds.SeriesDate, ds.SeriesTime = "20261101", "111500"
    info = Dataset()
    info.RadionuclideTotalDose, info.RadionuclideHalfLife = 4.0e8, F18_HALF_LIFE
    if kw.get("datetime", True):
        info.RadiopharmaceuticalStartDateTime = "20261101100000.000000"
    else:
        info.RadiopharmaceuticalStartTime = "100000"
    ds.RadiopharmaceuticalInformationSequence = [info]
    return ds


def test_decay_correction_against_a_hand_computation():
    elapsed = 75 * 60  # injection 10:00, series start 11:15
    hand_start = 80.0 * 1000 / (4.0e8 * 0.5 ** (elapsed / F18_HALF_LIFE))
    assert suv_factor(_pet_header()) == pytest.approx(hand_start, rel=1e-9)
    assert suv_factor(_pet_header(datetime=False)) == pytest.approx(hand_start, rel=1e-9)  # time only: same day
    assert suv_factor(_pet_header(correction="ADMIN")) == pytest.approx(80.0 * 1000 / 4.0e8, rel=1e-9)
    assert hand_start == pytest.approx(suv_to_bqml_factor(80.0, 4.0e8, elapsed), rel=1e-12)
    for header, message in ((_pet_header(units="CNTS"), "7053,1000"), (_pet_header(units="GML"), "Units GML"),
                            (_pet_header(correction="NONE"), "DecayCorrection NONE")):
        with pytest.raises(SUVError, match=message):
            suv_factor(header)
    no_weight = _pet_header()
    del no_weight.PatientWeight
    with pytest.raises(SUVError, match="no patient weight"):
        suv_factor(no_weight)


def test_patients_that_cannot_give_a_correct_suv_are_refused_and_the_others_convert(tiny_cohort_master, tmp_path):
    src = tmp_path / "dicom"
    write_patient(_case(tiny_cohort_master, 0), src / "a", "GOOD", seed=1, with_seg=False, localizer=False)
    write_patient(_case(tiny_cohort_master, 1), src / "b", "NOWEIGHT", seed=2, weight=None, with_seg=False,
                  localizer=False)
    write_patient(_case(tiny_cohort_master, 2), src / "c", "COUNTS", seed=3, units="CNTS", with_seg=False,
                  localizer=False)
    write_patient(_case(tiny_cohort_master, 3), src / "d", "PHILIPS", seed=4, units="CNTS", philips_scale=0.0025,
                  correction="START", with_seg=False, localizer=False)
    res = CliRunner().invoke(cli, ["data", "import-dicom", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1, res.output
    assert "error: NOWEIGHT: PET series" in res.output and "no patient weight" in res.output
    assert "error: COUNTS: PET series" in res.output and "(7053,1000)" in res.output
    assert "Traceback" not in res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["GOOD", "PHILIPS"]
    ref = nib.load(_case(tiny_cohort_master, 3) / "SUV.nii.gz").get_fdata()
    got = nib.load(tmp_path / "out/PHILIPS/SUV.nii.gz").get_fdata()
    assert np.abs(got - ref).max() <= ref.max() / 65000 * 1.01 + 1e-6
    assert not (tmp_path / "out/GOOD/SEG.nii.gz").exists()  # no labels in the export: none invented


def test_two_studies_of_one_patient_become_two_cases(tiny_cohort_master, tmp_path):
    write_patient(_case(tiny_cohort_master, 0), tmp_path / "d" / "s1", "P7", seed=1, study_date="20260101",
                  with_seg=False, localizer=False)
    write_patient(_case(tiny_cohort_master, 1), tmp_path / "d" / "s2", "P7", seed=2, study_date="20260601",
                  with_seg=False, localizer=False)
    result = import_dicom(tmp_path / "d", tmp_path / "out", log=lambda *_: None)
    assert sorted(result.converted) == ["P7_20260101", "P7_20260601"]


def test_exported_dicom_seg_reads_back_and_references_the_pet(tiny_cohort_master, tmp_path):
    case = _case(tiny_cohort_master)
    uids = write_patient(case, tmp_path / "dicom" / "p", "PAT-9", seed=5, with_seg=False, localizer=False)
    import_dicom(tmp_path / "dicom", tmp_path / "out", log=lambda *_: None)
    mask = np.asarray(nib.load(case / "SEG.nii.gz").dataobj) > 0
    path = write_dicom_seg(mask, tmp_path / "out/PAT-9", tmp_path / "pred/PAT-9_seg.dcm", 12.5, "runs:/x/model")
    seg = hd.seg.segread(path)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["pet_series"]
    assert "TMTV 12.5 ml" in seg.SeriesDescription
    pet_uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                for p in json.loads((tmp_path / "out/PAT-9" / SOURCE_FILE).read_text())["pet_files"]]
    back = seg.get_pixels_by_source_instance(pet_uids, combine_segments=True, assert_missing_frames_are_empty=True)
    assert np.array_equal(back.transpose(2, 1, 0) > 0, mask)
    shutil.rmtree(tmp_path / "dicom")  # the source PET is gone: a clear error, not a traceback
    with pytest.raises(FileNotFoundError, match="source PET file"):
        write_dicom_seg(mask, tmp_path / "out/PAT-9", tmp_path / "pred/again.dcm", 1.0, "m")


def test_predict_writes_a_dicom_seg_over_the_imported_pet(tiny_cohort_master, tmp_path):
    import mlflow

    from clips.models import SegNet
    from clips.tracking.model import log_segmentation_model

    with mlflow.start_run() as run:  # an untrained network is enough for the export path
        log_segmentation_model(SegNet("tiny"), {"spacing_mm": [10, 10, 10], "patch_size": [32, 32, 32],
                                                "model": "tiny", "sw_overlap": 0.25})
    uids = write_patient(_case(tiny_cohort_master), tmp_path / "dicom" / "p", "PAT-3", seed=6, with_seg=False)
    import_dicom(tmp_path / "dicom", tmp_path / "cohort", log=lambda *_: None)
    shutil.copytree(_case(tiny_cohort_master, 1), tmp_path / "cohort" / "NIFTI-ONLY")  # never imported from DICOM
    res = CliRunner().invoke(cli, ["predict", "--model-uri", f"runs:/{run.info.run_id}/model", "--input",
                                   str(tmp_path / "cohort"), "--out", str(tmp_path / "pred"), "--dicom-seg"])
    assert res.exit_code == 1, res.output
    assert "error: NIFTI-ONLY: DICOM SEG not written" in res.output and "import-dicom" in res.output
    seg = hd.seg.segread(tmp_path / "pred" / "PAT-3_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["pet_series"]
    mask = np.asarray(nib.load(tmp_path / "pred" / "PAT-3.nii.gz").dataobj) > 0
    tmtv = mask.sum() * abs(np.linalg.det(nib.load(tmp_path / "pred" / "PAT-3.nii.gz").affine[:3, :3])) / 1000
    assert f"TMTV {tmtv:.1f} ml" in seg.SeriesDescription
    if mask.any():
        files = json.loads((tmp_path / "cohort/PAT-3" / SOURCE_FILE).read_text())["pet_files"]
        pet_uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
        back = seg.get_pixels_by_source_instance(pet_uids, combine_segments=True,
                                                 assert_missing_frames_are_empty=True)
        assert np.array_equal(back.transpose(2, 1, 0) > 0, mask)


def test_rtstruct_contours_become_labels_with_their_holes(tiny_cohort_master, tmp_path):
    from tests.dicom_series import write_rtstruct_box

    case = _case(tiny_cohort_master)
    src = tmp_path / "dicom" / "p"
    write_patient(case, src, "RT-1", seed=7, with_seg=False, localizer=False)
    write_rtstruct_box(case, src, box=(10, 20, 5, 12, 30, 40), hole=(14, 16, 8, 9, 33, 35))
    result = import_dicom(tmp_path / "dicom", tmp_path / "out", log=lambda *_: None)
    assert result.converted == ["RT-1"]
    seg = np.asarray(nib.load(tmp_path / "out/RT-1/SEG.nii.gz").dataobj)
    expected = np.zeros_like(seg)
    expected[10:21, 5:13, 30:41] = 1
    expected[14:17, 8:10, 33:36] = 0
    assert np.array_equal(seg, expected)
    assert any(r["modality"] == "RTSTRUCT" and r["used"] == "yes" for r in _report(tmp_path / "out"))
