"""The cohort difficulty score: features that hold up, and the command that shows them before training."""
import subprocess
import sys

import numpy as np
import pandas as pd
from scipy import ndimage

from clips.curricula.difficulty import COMPOSITE_WEIGHTS, case_features, cohort_difficulty
from clips.data.preprocess import CHANNEL_WINDOWS, SUV_CHANNEL, Case

SPACING = (4.0, 4.0, 4.0)


def case_from_suv(suv: np.ndarray, label: np.ndarray, pid="p") -> Case:
    image = np.zeros((5, *suv.shape), np.float32)
    image[SUV_CHANNEL] = np.clip(suv / CHANNEL_WINDOWS[SUV_CHANNEL][2], 0, 1)
    return Case(pid, image, label.astype(np.uint8), float(label.sum()) * 0.064)


def bulky_case(organ_offset_vox: int) -> Case:
    """A bulky lesion (SUV 25, blurred into a hot halo a few voxels wide) and an organ of SUV 8 at a given distance."""
    shape = (60, 40, 90)
    label = np.zeros(shape, bool)
    label[20:32, 14:26, 10:24] = True  # 12 x 12 x 14 voxels: 48 x 48 x 56 mm
    suv = ndimage.gaussian_filter(np.where(label, 25.0, 1.0), 2.0)
    suv = np.where(label, 25.0, suv)  # halo: SUV > 5 up to 2 voxels beyond the label
    organ = np.zeros(shape, bool)
    z0 = 24 + organ_offset_vox
    organ[20:32, 14:26, z0:z0 + 8] = True
    suv = np.where(organ, 8.0, suv)
    return case_from_suv(suv, label)


def test_bulky_lesion_far_from_organs_is_not_near_an_organ():
    far = case_features(bulky_case(organ_offset_vox=50), SPACING)
    near = case_features(bulky_case(organ_offset_vox=2), SPACING)
    # The lesion's own halo is excluded: the distance is to the organ, 50 voxels = 200 mm away.
    assert far["organ_distance_mm"] >= 180
    assert near["organ_distance_mm"] <= 24  # touching the halo: counted from 2 blur widths (16 mm) out
    table = cohort_difficulty(["far", "near"], [bulky_case(50), bulky_case(2)], SPACING)
    assert table.loc[1, "score_organ_distance"] > table.loc[0, "score_organ_distance"]


def test_contrast_is_measured_outside_the_blur_and_the_faintest_lesion_counts():
    shape = (50, 50, 50)
    label = np.zeros(shape, bool)
    label[10:14, 10:14, 10:14] = True  # bright
    label[35:38, 35:38, 35:38] = True  # faint
    suv = np.full(shape, 1.0)
    suv[10:14, 10:14, 10:14] = 12.0
    suv[35:38, 35:38, 35:38] = 3.0
    f = case_features(case_from_suv(ndimage.gaussian_filter(suv, 1.0), label), SPACING)
    assert 2.0 < f["contrast"] < 3.2  # the faint lesion's peak over a background of 1
    assert f["n_lesions"] == 2


def test_composite_weights_are_explicit_and_favour_small_faint_disease():
    assert set(COMPOSITE_WEIGHTS) == {"tmtv", "contrast", "organ_distance"}
    shape = (40, 40, 40)
    big, small = np.zeros(shape, bool), np.zeros(shape, bool)
    big[5:25, 5:25, 5:25] = True
    small[20:22, 20:22, 20:22] = True
    cases = [case_from_suv(np.where(big, 20.0, 1.0), big, "big"),
             case_from_suv(np.where(small, 3.0, 1.0), small, "small")]
    t = cohort_difficulty(["big", "small"], cases, SPACING)
    assert t.loc[1, "score_cohort"] > t.loc[0, "score_cohort"]


def test_difficulty_command_writes_every_patient(tiny_cohort, tmp_path):
    out = tmp_path / "d" / "difficulty.csv"
    proc = subprocess.run([sys.executable, "-m", "clips", "data", "difficulty", str(tiny_cohort), "--out", str(out),
                           "--spacing", "10"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert len(table) == 6 and {"hard", "score_cohort", "organ_distance_mm", "contrast"} <= set(table.columns)
    assert table["score_cohort"].is_monotonic_decreasing
    proc = subprocess.run([sys.executable, "-m", "clips", "data", "difficulty", str(tmp_path / "nope"), "--out",
                           str(out)], capture_output=True, text=True)
    assert proc.returncode != 0 and "nope" in proc.stderr and "Traceback" not in proc.stderr
