import nibabel as nib
import numpy as np
import pandas as pd
from click.testing import CliRunner
from scipy import ndimage

from clips.cli import cli
from clips.data.synth import (
    NODAL_STATIONS,
    SynthConfig,
    generate_patient,
    hard_assignment,
    write_cohort,
)


def _arrays(folder):
    return {n: nib.load(folder / f"{n}.nii.gz") for n in ("CTres", "SUV", "SEG")}


def test_layout_types_and_geometry(tiny_cohort_master):
    table = pd.read_csv(tiny_cohort_master / "cohort.csv")
    assert list(table.columns[:6]) == ["patient_id", "n_lesions", "tmtv_ml", "suv_max", "smallest_lesion_ml", "hard"]
    assert len(table) == 6
    for pid in table.patient_id:
        imgs = _arrays(tiny_cohort_master / pid)
        assert imgs["CTres"].get_data_dtype() == np.int16
        assert imgs["SUV"].get_data_dtype() == np.float32
        assert imgs["SEG"].get_data_dtype() == np.uint8
        shapes = {i.shape for i in imgs.values()}
        assert len(shapes) == 1
        assert all(np.array_equal(i.affine, imgs["SUV"].affine) for i in imgs.values())
        seg = np.asarray(imgs["SEG"].dataobj)
        assert set(np.unique(seg)) <= {0, 1}


def test_cohort_csv_matches_the_masks(tiny_cohort_master):
    table = pd.read_csv(tiny_cohort_master / "cohort.csv").set_index("patient_id")
    for pid, row in table.iterrows():
        imgs = _arrays(tiny_cohort_master / pid)
        seg = np.asarray(imgs["SEG"].dataobj)
        suv = imgs["SUV"].get_fdata()
        voxel_ml = abs(np.linalg.det(imgs["SEG"].affine[:3, :3])) / 1000
        assert row.tmtv_ml == round(seg.sum() * voxel_ml, 3)
        assert row.n_lesions == ndimage.label(seg)[1]
        assert abs(row.suv_max - suv[seg > 0].max()) < 1e-3


def test_deterministic_for_a_seed(tmp_path):
    cfg = SynthConfig(spacing_mm=(12.0, 12.0, 12.0))
    write_cohort(tmp_path / "a", 3, seed=5, cfg=cfg, log=lambda *_: None)
    write_cohort(tmp_path / "b", 3, seed=5, cfg=cfg, log=lambda *_: None)
    write_cohort(tmp_path / "c", 3, seed=6, cfg=cfg, log=lambda *_: None)
    for name in ("SUV", "CTres", "SEG"):
        a = nib.load(tmp_path / "a/SYN0002" / f"{name}.nii.gz").get_fdata()
        b = nib.load(tmp_path / "b/SYN0002" / f"{name}.nii.gz").get_fdata()
        c = nib.load(tmp_path / "c/SYN0002" / f"{name}.nii.gz").get_fdata()
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)
    assert (tmp_path / "a/cohort.csv").read_text() == (tmp_path / "b/cohort.csv").read_text()


def test_a_third_of_the_patients_are_hard():
    for n in (3, 10, 24, 31):
        factors = hard_assignment(n, np.random.default_rng(0))
        assert sum(bool(f) for f in factors) == round(n / 3)


def test_looks_like_fdg_pet_ct():
    """Normal biodistribution and CT densities at the places an imager expects them."""
    cfg = SynthConfig()  # default 4 mm grid
    ct, pet, seg, grid, row = generate_patient("P", (), cfg, np.random.SeedSequence(3))
    assert ct.shape == grid.shape == (140, 75, 250)

    def at(vol, x, y, z):
        i = [int(round((c - o) / s)) for c, o, s in zip((x, y, z), grid.origin, grid.spacing)]
        return float(vol[i[0], i[1], i[2]])

    assert at(pet, 0, 0, 905) > 5  # brain
    assert 1.5 < at(pet, 72, 10, 500) < 3.5  # liver
    assert at(pet, 0, 48, 172) > 5  # bladder
    assert at(ct, 75, 0, 660) < -600  # lung
    assert at(ct, 0, 140, 500) < -900  # air in front of the body
    assert at(ct, 0, -72, 500) > 150  # vertebra
    assert 1 <= row["n_lesions"] and 2.5 <= row["suv_max"] <= 30
    # lesions live inside the body (soft-tissue density, never in the air around it)
    assert np.all(ct[seg > 0] > -700)


def test_hard_factors_do_what_they_say():
    cfg = SynthConfig(spacing_mm=(4.0, 4.0, 4.0))
    rows = {}
    for f in ((), ("disseminated",), ("small_faint",)):
        rows[f] = generate_patient("P", f, cfg, np.random.SeedSequence(11))[4]
    assert rows[("disseminated",)]["n_lesions"] >= 10
    assert rows[("small_faint",)]["smallest_lesion_ml"] < 2.0
    assert rows[("disseminated",)]["disseminated"] == 1 and rows[()]["hard"] == 0
    assert len(NODAL_STATIONS) >= 12


def test_cli_synth(tmp_path):
    res = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "c"), "--patients", "2", "--spacing", "12"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c/SYN0002/SEG.nii.gz").exists()
    res = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "d"), "--fov", "1,2"])
    assert res.exit_code != 0 and "--fov" in res.output
