"""Bad input gets the project's own one-line error, never a traceback from deep inside a library."""
import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clips.cli import cli
from clips.errors import ClipsError
from clips.metrics.patient import COLUMNS, evaluate_patient

DTYPES = st.sampled_from([np.uint8, np.int16, np.int32, np.float32, np.float64, np.bool_, np.complex64])


@st.composite
def patient(draw):
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=2, max_size=4)))
    other = shape if draw(st.booleans()) else tuple(draw(st.lists(st.integers(1, 9), min_size=3, max_size=3)))
    values = st.sampled_from([0, 1]) if draw(st.booleans()) else st.sampled_from([0, 1, 2, -1])
    truth = draw(hnp.arrays(np.int16, shape, elements=values)).astype(draw(DTYPES))
    pred = draw(hnp.arrays(np.int16, other, elements=values)).astype(draw(DTYPES))
    suv_dtype = draw(st.sampled_from([np.float32, np.float64, np.int16, np.complex64]))
    suv_el = st.floats(-1, 40, width=32)
    if draw(st.booleans()):
        suv_el = suv_el | st.just(float("nan"))
    suv = draw(hnp.arrays(suv_dtype, shape, elements=suv_el if suv_dtype != np.int16 else st.integers(0, 30)))
    spacing = draw(st.lists(st.floats(-2, 6, allow_nan=False), min_size=3, max_size=3))
    affine = np.diag([*spacing, 1.0])
    if draw(st.booleans()):
        affine = affine[[1, 0, 2, 3]]  # permuted axes
    return truth, pred, suv, affine


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patient())
def test_evaluation_returns_a_row_or_our_own_error(case):
    truth, pred, suv, affine = case
    try:
        row = evaluate_patient("P", truth, pred, suv, affine)
    except ClipsError as exc:
        assert str(exc).startswith("P: ") and "\n" not in str(exc)
        return
    assert list(row) == COLUMNS


def _save(arr, affine, path):
    nib.save(nib.Nifti1Image(arr, affine), path)


@pytest.mark.parametrize("damage,expected", [
    (lambda a, aff: (a.astype(np.float32)[..., None].repeat(2, axis=3), aff), "3-D volume"),  # 4-D label
    (lambda a, aff: (a.astype(np.complex64), aff), "complex"),
])
def test_label_damage_is_named_by_data_check(tiny_cohort, damage, expected):
    path = tiny_cohort / "SYN0002" / "SEG.nii.gz"
    img = nib.load(path)
    arr, aff = damage(np.asarray(img.dataobj), img.affine)
    _save(arr, aff, path)
    res = CliRunner().invoke(cli, ["data", "check", str(tiny_cohort)])
    assert res.exit_code == 1
    line = next(x for x in res.output.splitlines() if x.startswith("SYN0002"))
    assert line.startswith("SYN0002: SEG.nii.gz:") and expected in line


def test_zero_spacing_pet_is_named(tiny_cohort):
    for name in ("SUV", "CTres", "SEG"):
        path = tiny_cohort / "SYN0003" / f"{name}.nii.gz"
        img = nib.load(path)
        bad = nib.Nifti1Image(np.asarray(img.dataobj), np.eye(4))
        bad.set_qform(None, code=0)  # a singular qform cannot be written; a singular sform can
        bad.set_sform(np.diag([0.0, 10.0, 10.0, 1.0]), code=1)
        nib.save(bad, path)
    res = CliRunner().invoke(cli, ["data", "check", str(tiny_cohort)])
    assert res.exit_code == 1 and "SYN0003: SUV.nii.gz: invalid voxel spacing" in res.output


def test_empty_ground_truth_is_a_valid_negative_patient(tiny_cohort):
    path = tiny_cohort / "SYN0004" / "SEG.nii.gz"
    img = nib.load(path)
    _save(np.zeros(img.shape, np.uint8), img.affine, path)
    res = CliRunner().invoke(cli, ["data", "check", str(tiny_cohort)])
    assert res.exit_code == 0, res.output


def test_unwritable_output_is_refused_before_the_work(tiny_cohort, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    res = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tiny_cohort), "--pred-dir", str(tmp_path),
                                   "--out", str(blocker / "out")])
    assert res.exit_code == 2 and "cannot write to" in res.output


def test_too_little_disk_space_is_refused_before_training(tiny_cohort, monkeypatch):
    monkeypatch.setenv("CLIPS_MIN_FREE_MB", str(10**12))
    res = CliRunner().invoke(cli, ["train", "--data-dir", str(tiny_cohort)])
    assert res.exit_code == 2 and "free" in res.output and "MB" in res.output


def test_predict_names_bad_patients_and_segments_the_others(tiny_cohort, tmp_path):
    import mlflow

    from clips.models import SegNet
    from clips.tracking.model import log_segmentation_model

    with mlflow.start_run() as run:  # an untrained network is enough to exercise the input path
        log_segmentation_model(SegNet("tiny"), {"spacing_mm": [10, 10, 10], "patch_size": [32, 32, 32],
                                                "model": "tiny", "sw_overlap": 0.25})
    path = tiny_cohort / "SYN0002" / "SUV.nii.gz"
    img = nib.load(path)
    suv = np.asarray(img.dataobj).copy()
    suv[0, 0, 0] = np.nan
    _save(suv, img.affine, path)
    (tiny_cohort / "SYN0005" / "CTres.nii.gz").unlink()
    res = CliRunner().invoke(cli, ["predict", "--model", f"runs:/{run.info.run_id}/model", "--input", str(tiny_cohort),
                                   "--out", str(tmp_path / "masks")])
    assert res.exit_code == 1
    assert "error: SYN0002: SUV.nii.gz: 1 voxels are NaN or infinite" in res.output
    assert "error: SYN0005: CTres.nii.gz: missing file" in res.output
    assert len(list((tmp_path / "masks").glob("*.nii.gz"))) == 4 and "Traceback" not in res.output


def test_float_labels_are_refused_and_fix_labels_rewrites_them_losslessly(tiny_cohort):
    path = tiny_cohort / "SYN0002" / "SEG.nii.gz"
    img = nib.load(path)
    mask = np.asarray(img.dataobj).copy()
    _save(mask.astype(np.float32), img.affine, path)
    res = CliRunner().invoke(cli, ["data", "check", str(tiny_cohort)])
    assert res.exit_code == 1
    assert "SYN0002: SEG.nii.gz: label stored as float32" in res.output and "clips data fix-labels" in res.output

    dry = CliRunner().invoke(cli, ["data", "fix-labels", "--dry-run", str(tiny_cohort)])
    assert dry.exit_code == 0 and "0 rewritten, 6 unchanged" in dry.output
    assert nib.load(path).get_data_dtype() == np.float32

    res = CliRunner().invoke(cli, ["data", "fix-labels", str(tiny_cohort)])
    assert res.exit_code == 0, res.output
    assert "1 rewritten, 5 unchanged, 0 refused" in res.output and "SYN0002" in res.output
    fixed = nib.load(path)
    assert fixed.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(fixed.dataobj), mask) and np.allclose(fixed.affine, img.affine)
    assert CliRunner().invoke(cli, ["data", "check", str(tiny_cohort)]).exit_code == 0


def test_fix_labels_leaves_a_non_binary_float_label_untouched(tiny_cohort):
    path = tiny_cohort / "SYN0003" / "SEG.nii.gz"
    img = nib.load(path)
    _save(np.asarray(img.dataobj).astype(np.float32) * 0.5, img.affine, path)  # interpolated-looking edges
    before = path.read_bytes()
    res = CliRunner().invoke(cli, ["data", "fix-labels", str(path), str(tiny_cohort / "nope" / "SEG.nii.gz")])
    assert res.exit_code == 1
    assert "SYN0003/SEG.nii.gz: refused (float32 values are not all exactly 0 or 1" in res.output
    assert "nope/SEG.nii.gz: refused (missing file)" in res.output
    assert path.read_bytes() == before


def test_float_prediction_is_named_by_evaluate(tiny_cohort, tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    for pdir in sorted(p for p in tiny_cohort.iterdir() if p.is_dir()):
        seg = nib.load(pdir / "SEG.nii.gz")
        dtype = np.float64 if pdir.name == "SYN0004" else np.uint8
        _save(np.asarray(seg.dataobj).astype(dtype), seg.affine, pred / f"{pdir.name}.nii.gz")
    res = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tiny_cohort), "--pred-dir", str(pred),
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "SYN0004: SYN0004.nii.gz: label stored as float64" in res.output
    assert (tmp_path / "out" / "per_patient.csv").read_text().count("SYN000") == 5

    fixed = CliRunner().invoke(cli, ["data", "fix-labels", str(pred)])  # a folder of predictions
    assert fixed.exit_code == 0 and "1 rewritten, 5 unchanged, 0 refused" in fixed.output
    res = CliRunner().invoke(cli, ["evaluate", "--data-dir", str(tiny_cohort), "--pred-dir", str(pred),
                                   "--out", str(tmp_path / "out2")])
    assert res.exit_code == 0, res.output


def test_two_trainings_starting_together_on_a_fresh_sqlite_store(tmp_path):
    """The race of MLflow's table creation on a new SQLite store ("duplicate column name"): the store is made
    under a file lock by the first command, so both processes get through."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/fresh.db")
    code = ("import os; from clips.tracking.server import require_reachable; "
            "require_reachable(os.environ['MLFLOW_TRACKING_URI'])")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(errors)[-3000:]
    assert (tmp_path / "fresh.db").exists()
