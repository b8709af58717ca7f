import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import ndimage

from clips.cli import cli
from clips.data.synth import (
    HARD_FACTORS,
    MIMICS,
    NODAL_STATIONS,
    SynthConfig,
    generate_patient,
    hard_assignment,
    plan_patient,
    write_cohort,
)
from clips.data.synth.anatomy import LIVER_CENTER
from clips.data.synth.cohort import CONTEXT_FACTORS, DISEASE_FACTORS
from clips.data.synth.factors import LOW_COUNTS_COV, liver_cov
from clips.data.synth.mimics import CODES, DISEASE_LIKE, MANY

FOUR_MM = SynthConfig()


def _arrays(folder):
    return {n: nib.load(folder / f"{n}.nii.gz") for n in ("CTres", "SUV", "SEG")}


def test_layout_types_and_geometry(tiny_cohort_master):
    table = pd.read_csv(tiny_cohort_master / "cohort.csv")
    assert list(table.columns[:6]) == ["patient_id", "n_lesions", "tmtv_ml", "suv_max", "smallest_lesion_ml", "hard"]
    assert set(HARD_FACTORS) <= set(table.columns)
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
        assert set(np.unique(seg)) <= {0, 1} and seg.any()  # every patient has disease


def test_cohort_csv_matches_the_files(tiny_cohort_master):
    """Lesion counts, volumes, SUVmax, and the factors that can be read from the files, recomputed here."""
    table = pd.read_csv(tiny_cohort_master / "cohort.csv").set_index("patient_id")
    for pid, row in table.iterrows():
        imgs = _arrays(tiny_cohort_master / pid)
        seg = np.asarray(imgs["SEG"].dataobj)
        suv = imgs["SUV"].get_fdata()
        voxel_ml = abs(np.linalg.det(imgs["SEG"].affine[:3, :3])) / 1000
        labels, n = ndimage.label(seg)
        assert row.tmtv_ml == round(seg.sum() * voxel_ml, 3)
        assert row.n_lesions == n
        assert abs(row.suv_max - suv[seg > 0].max()) < 1e-3
        volumes = np.array([(labels == i).sum() * voxel_ml for i in range(1, n + 1)])
        maxima = np.array([suv[labels == i].max() for i in range(1, n + 1)])
        assert row.small_faint == int(np.median(volumes) < 2 and np.median(maxima) < 5)
        assert row.disseminated == int(n >= 12)
        assert row.hard == int(any(row[f] for f in HARD_FACTORS))
        assert row.hard_factors if row.hard else pd.isna(row.hard_factors)


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


def test_the_plan_does_not_depend_on_the_grid():
    """A patient is the same patient at 4 mm and at 10 mm: planning draws before any voxel."""
    rows = [generate_patient("P", ("disseminated",), cfg, np.random.SeedSequence(4))[1]
            for cfg in (FOUR_MM, SynthConfig(spacing_mm=(10.0,) * 3))]
    for key in ("age", "body_scale", "presentation", "psf_fwhm_mm", "counts", "mimic_kinds"):
        assert rows[0][key] == rows[1][key]
    a = plan_patient("P", ("small_faint",), np.random.default_rng(1))
    b = plan_patient("P", ("small_faint",), np.random.default_rng(1))
    assert [les.center for les in a.lesions] == [les.center for les in b.lesions]


def test_a_third_of_the_patients_are_planned_hard():
    for n in (3, 10, 24, 31):
        planned = hard_assignment(n, np.random.default_rng(0))
        assert sum(bool(f) for f in planned) == round(n / 3)
        assert all(f[0] in DISEASE_FACTORS and set(f[1:]) <= set(CONTEXT_FACTORS) for f in planned if f)


@pytest.mark.parametrize("planned", [(f,) for f in DISEASE_FACTORS] + [("small_faint", c) for c in CONTEXT_FACTORS])
def test_each_planned_factor_is_found_in_what_was_drawn(planned):
    for seed in (0, 1):
        d, row = generate_patient("P", planned, FOUR_MM, np.random.SeedSequence(seed))
        for f in planned:
            assert row[f] == 1, (planned, seed, row)
        if "many_mimics" in planned:
            kinds = {k for k in DISEASE_LIKE if (d.mimics == CODES[k]).any()}
            assert len(kinds) >= MANY
        if "low_counts" in planned:
            assert liver_cov(d.pet, d.grid, d.liver_center_mm) >= LOW_COUNTS_COV
        if "diffuse_organ" in planned and row["presentation"] == "diffuse_organ" and row["spleen_labelled_share"]:
            assert row["spleen_labelled_share"] >= 0.8


def test_usual_patients_are_not_flagged_and_have_ordinary_noise():
    for seed in range(4):
        d, row = generate_patient("P", (), FOUR_MM, np.random.SeedSequence(seed))
        assert row["presentation"] == "usual" and row["n_mimic_kinds"] < MANY
        assert liver_cov(d.pet, d.grid, d.liver_center_mm) < LOW_COUNTS_COV


def test_mimics_are_hot_and_never_labelled():
    """Every mimic raises the PET where it is drawn, and no mimic voxel is in SEG."""
    seen = set()
    for seed in range(6):
        d, _ = generate_patient("P", ("near_high_uptake", "many_mimics"), FOUR_MM, np.random.SeedSequence(seed))
        assert not ((d.mimics > 0) & (d.seg > 0)).any()
        for kind, code in CODES.items():
            mask = d.mimics == code
            if mask.any():
                seen.add(kind)
                assert d.physio[mask].mean() > 1.5, kind
    assert len(seen) >= len(MIMICS) - 3  # most kinds show up in six patients with many mimics


def test_looks_like_fdg_pet_ct():
    """Normal biodistribution and CT densities at the places an imager expects them."""
    d, row = generate_patient("P", (), FOUR_MM, np.random.SeedSequence(3))
    ct, pet, seg, grid = d.ct, d.pet, d.seg, d.grid
    assert ct.shape == grid.shape == (140, 75, 250)

    def at(vol, x, y, z):
        i = [int(round((c - o) / s)) for c, o, s in zip((x, y, z), grid.origin, grid.spacing)]
        return float(vol[i[0], i[1], i[2]])

    s = row["body_scale"]
    assert at(pet, 0, 0, 905) > 5  # brain
    assert 1.5 < at(pet, LIVER_CENTER[0] * s, LIVER_CENTER[1] * s, LIVER_CENTER[2]) < 3.5  # liver
    assert at(pet, 0, 48 * s, 172) > 5  # bladder
    assert at(ct, 75 * s, 0, 660) < -600  # lung
    assert at(ct, 0, 140, 500) < -900  # air in front of the body
    assert at(ct, 0, -72 * s, 500) > 150  # vertebra
    assert 1 <= row["n_lesions"] and 2.5 <= row["suv_max"] <= 30
    # lesions live inside the body, at soft-tissue density
    assert np.all(ct[seg > 0] > -700) and 10 < np.median(ct[seg > 0]) < 80
    assert len(NODAL_STATIONS) >= 12


def test_hard_disease_is_less_and_fainter_than_the_usual():
    """Hard presentations replace the usual disease: they do not simply add tumour."""
    usual = [generate_patient("P", (), FOUR_MM, np.random.SeedSequence(s))[1] for s in range(4)]
    faint = [generate_patient("P", ("small_faint",), FOUR_MM, np.random.SeedSequence(s))[1] for s in range(4)]
    assert max(r["tmtv_ml"] for r in faint) < min(r["tmtv_ml"] for r in usual)
    assert max(r["median_lesion_suvmax"] for r in faint) < 5 < min(r["median_lesion_suvmax"] for r in usual)


def test_cli_synth_and_preview(tmp_path):
    png = tmp_path / "preview.png"
    res = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "c"), "--patients", "2", "--spacing", "12",
                                   "--preview", str(png)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c/SYN0002/SEG.nii.gz").exists()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(cli, ["data", "preview", str(tmp_path / "c"), "--out", str(tmp_path / "p2.png")])
    assert res.exit_code == 0 and (tmp_path / "p2.png").stat().st_size > 1000
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["data", "preview", str(tmp_path / "empty"), "--out", str(tmp_path / "p3.png")])
    assert res.exit_code != 0 and "no patient folder" in res.output
    res = CliRunner().invoke(cli, ["synth", "--out", str(tmp_path / "d"), "--fov", "1,2"])
    assert res.exit_code != 0 and "--fov" in res.output
