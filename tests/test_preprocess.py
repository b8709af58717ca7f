import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from clips.data.io import PatientVolumes
from clips.data.layout import discover
from clips.data.preprocess import (
    CHANNEL_WINDOWS,
    CaseCache,
    PreprocessConfig,
    make_channels,
    preprocess_volumes,
)
from clips.data.splits import make_splits


def test_channels_follow_tmtv_net_windows():
    ct = np.array([-2000, -1000, -600, -150, 0, 100, 300, 2000], np.float32)
    pet = np.array([0, 1, 2, 6, 10, 15, 30, 60], np.float32)
    ch = make_channels(ct, pet)
    assert ch.shape == (5, 8) and ch.min() >= 0 and ch.max() <= 1
    for c, (src, lo, hi) in enumerate(CHANNEL_WINDOWS):
        x = ct if src == "ct" else pet
        assert np.allclose(ch[c], (np.clip(x, lo, hi) - lo) / (hi - lo))
    assert ch[1, 4] == pytest.approx(10 / 30) and ch[4, 3] == pytest.approx(0.5)


def _vols(flip: bool):
    rng = np.random.default_rng(0)
    ct = rng.uniform(-1000, 500, (20, 16, 12)).astype(np.float32)
    pet = rng.uniform(0, 12, (20, 16, 12)).astype(np.float32)
    seg = np.zeros((20, 16, 12), np.uint8)
    seg[5:9, 4:8, 3:6] = 1
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    if flip:  # the same image stored with the x axis reversed and y/z swapped
        ct, pet, seg = (np.ascontiguousarray(a[::-1].transpose(0, 2, 1)) for a in (ct, pet, seg))
        aff = np.array([[-4.0, 0, 0, 76], [0, 0, 4.0, 0], [0, 4.0, 0, 0], [0, 0, 0, 1]])
    return PatientVolumes("p", ct, pet, seg, aff)


def test_orientation_does_not_change_network_input():
    a = preprocess_volumes(_vols(False), PreprocessConfig((4.0, 4.0, 4.0)))
    b = preprocess_volumes(_vols(True), PreprocessConfig((4.0, 4.0, 4.0)))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert a.tmtv_ml == b.tmtv_ml == pytest.approx(4 * 4 * 3 * 0.064)


def test_resampling_keeps_lesion_volume_roughly():
    case = preprocess_volumes(_vols(False), PreprocessConfig((8.0, 8.0, 8.0)))
    assert case.image.shape == (5, 10, 8, 6) and case.image.dtype == np.float16
    assert abs(case.label.sum() * 0.512 - case.tmtv_ml) / case.tmtv_ml < 0.5


def test_cache_is_reused_and_invalidated(tiny_cohort, tmp_path):
    files = discover(tiny_cohort)[0]
    cache = CaseCache(tmp_path / "cache", PreprocessConfig((10.0, 10.0, 10.0)))
    first = cache.get(files)
    assert isinstance(first.image, np.memmap)
    entries = list(cache.root.iterdir())
    again = cache.get(files)
    assert list(cache.root.iterdir()) == entries and np.array_equal(first.image, again.image)
    img = nib.load(files.seg)  # a corrected label must be preprocessed again
    seg = np.asarray(img.dataobj).copy()
    seg[:] = 0
    nib.save(nib.Nifti1Image(seg, img.affine), files.seg)
    fresh = cache.get(files)
    assert fresh.label.sum() == 0 and len(list(cache.root.iterdir())) == len(entries) + 1


def test_splits_are_deterministic_stratified_and_grouped():
    rng = np.random.default_rng(1)
    n = 60
    table = pd.DataFrame({"patient_id": [f"p{i:02d}" for i in range(n)],
                          "subject": [f"s{i // 2:02d}" for i in range(n)],  # two studies per subject
                          "tmtv_ml": rng.lognormal(4, 1, n)})
    a = make_splits(table, seed=3)
    assert a.equals(make_splits(table, seed=3))
    assert not a["split"].equals(make_splits(table, seed=4)["split"])
    assert a.groupby("subject")["split"].nunique().max() == 1
    counts = a["split"].value_counts()
    assert counts["test"] == counts["val"] == 12 and counts["train"] == 36
    # stratified: every TMTV tercile is in every set
    tercile = pd.qcut(a["tmtv_ml"], 3, labels=False)
    assert pd.crosstab(tercile, a["split"]).min().min() >= 2


def test_tiny_cohort_still_gets_val_and_test():
    table = pd.DataFrame({"patient_id": list("abcd"), "subject": list("abcd"), "tmtv_ml": [1, 2, 3, 4]})
    s = make_splits(table, seed=0)["split"].value_counts()
    assert s["val"] == 1 and s["test"] == 1 and s["train"] == 2
