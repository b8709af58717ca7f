import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from clips.cli import cli
from clips.data.check import check_cohort
from clips.data.io import load_patient, save_mask
from clips.data.layout import discover
from clips.errors import DataError


def _rewrite(path, fn, affine=None):
    img = nib.load(path)
    data = fn(np.asarray(img.dataobj))
    nib.save(nib.Nifti1Image(data, img.affine if affine is None else affine), path)


def _problems(root):
    return [str(p) for p in check_cohort(root).problems]


def test_nifti_round_trip(tmp_path):
    mask = (np.random.default_rng(0).random((7, 8, 9)) > 0.7).astype(np.uint8)
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = (-10, 5, 7)
    save_mask(mask, affine, tmp_path / "m.nii.gz")
    img = nib.load(tmp_path / "m.nii.gz")
    assert np.array_equal(np.asarray(img.dataobj), mask)
    assert np.allclose(img.affine, affine)
    assert img.get_data_dtype() == np.uint8


def test_loads_a_valid_patient(tiny_cohort):
    vols = load_patient(discover(tiny_cohort)[0])
    assert vols.ct.shape == vols.pet.shape == vols.seg.shape
    assert vols.seg.dtype == np.uint8 and vols.voxel_ml == pytest.approx(1.0)
    assert check_cohort(tiny_cohort).ok


def test_shape_mismatch_is_named(tiny_cohort):
    _rewrite(tiny_cohort / "SYN0003/SEG.nii.gz", lambda a: a[:-2])
    problems = _problems(tiny_cohort)
    assert len(problems) == 1
    assert problems[0].startswith("SYN0003: SEG.nii.gz: shape")
    res = CliRunner().invoke(cli, ["data", "check", str(tiny_cohort)])
    assert res.exit_code == 1
    assert "SYN0003: SEG.nii.gz: shape" in res.output and "5 valid, 1 invalid" in res.output


def test_affine_mismatch_beyond_tolerance(tiny_cohort):
    aff = nib.load(tiny_cohort / "SYN0001/CTres.nii.gz").affine.copy()
    aff[0, 3] += 1.5
    _rewrite(tiny_cohort / "SYN0001/CTres.nii.gz", lambda a: a, aff)
    (p,) = _problems(tiny_cohort)
    assert p.startswith("SYN0001: CTres.nii.gz: affine differs") and "1.5" in p
    aff[0, 3] -= 1.5 - 1e-4  # within tolerance
    _rewrite(tiny_cohort / "SYN0001/CTres.nii.gz", lambda a: a, aff)
    assert _problems(tiny_cohort) == []


@pytest.mark.parametrize("file,damage,expected", [
    ("SUV.nii.gz", lambda a: np.where(a > 3, np.nan, a).astype(np.float32), "NaN or infinite"),
    ("SEG.nii.gz", lambda a: (a * 2).astype(np.uint8), "not binary"),
    ("SUV.nii.gz", lambda a: (a * 5000).astype(np.float32), "not a plausible SUV"),
    ("SUV.nii.gz", lambda a: np.zeros_like(a), "all zeros"),
    ("CTres.nii.gz", lambda a: (a.astype(np.float32) / 1000).astype(np.float32), "do not look like CT"),
])
def test_bad_values_are_named(tiny_cohort, file, damage, expected):
    _rewrite(tiny_cohort / "SYN0002" / file, damage)
    (p,) = _problems(tiny_cohort)
    assert p.startswith(f"SYN0002: {file}:") and expected in p


def test_missing_and_corrupt_files(tiny_cohort):
    (tiny_cohort / "SYN0004/SUV.nii.gz").unlink()
    raw = (tiny_cohort / "SYN0005/CTres.nii.gz").read_bytes()
    (tiny_cohort / "SYN0005/CTres.nii.gz").write_bytes(raw[: len(raw) // 2])
    problems = _problems(tiny_cohort)
    assert "SYN0004: SUV.nii.gz: missing file" in problems
    assert any(p.startswith("SYN0005: CTres.nii.gz: cannot read NIfTI") for p in problems)
    with pytest.raises(DataError, match="SYN0004: SUV.nii.gz: missing file"):
        load_patient([f for f in discover(tiny_cohort) if f.patient_id == "SYN0004"][0])


def test_nested_autopet_layout(tiny_cohort, tmp_path):
    root = tmp_path / "nested"
    shutil.copytree(tiny_cohort / "SYN0001", root / "PETCT_a" / "study-2005")
    shutil.copytree(tiny_cohort / "SYN0002", root / "PETCT_b" / "study-2006")
    shutil.copytree(tiny_cohort / "SYN0003", root / "PETCT_b" / "study 2007")
    cases = discover(root)
    assert [c.patient_id for c in cases] == ["PETCT_a", "PETCT_b__study-2006", "PETCT_b__study_2007"]
    assert [c.subject for c in cases] == ["PETCT_a", "PETCT_b", "PETCT_b"]
    assert check_cohort(root).ok


def test_nnunet_layout(tiny_cohort, tmp_path):
    root = tmp_path / "nnunet"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, pid in enumerate(["SYN0001", "SYN0002"]):
        case = f"lymph_{i:03d}"
        shutil.copy(tiny_cohort / pid / "CTres.nii.gz", root / "imagesTr" / f"{case}_0000.nii.gz")
        shutil.copy(tiny_cohort / pid / "SUV.nii.gz", root / "imagesTr" / f"{case}_0001.nii.gz")
        shutil.copy(tiny_cohort / pid / "SEG.nii.gz", root / "labelsTr" / f"{case}.nii.gz")
    cases = discover(root)
    assert [c.patient_id for c in cases] == ["lymph_000", "lymph_001"]
    vols = load_patient(cases[1])
    ref = load_patient(discover(tiny_cohort)[1])
    assert np.array_equal(vols.pet, ref.pet) and np.array_equal(vols.seg, ref.seg)


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no patients found"):
        discover(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nope")
    res = CliRunner().invoke(cli, ["data", "check", str(tmp_path / "nope")])
    assert res.exit_code != 0


def test_gzip_file_that_is_not_nifti(tiny_cohort):
    with gzip.open(tiny_cohort / "SYN0006/SEG.nii.gz", "wb") as fh:
        fh.write(b"this is not a nifti header" * 20)
    (p,) = _problems(tiny_cohort)
    assert p.startswith("SYN0006: SEG.nii.gz: cannot read NIfTI")
