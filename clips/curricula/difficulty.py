"""A difficulty score per training patient (higher = harder), computed before training.

From the cohort (on the preprocessed grid), each oriented so that higher is harder:

* ``tmtv``: -log TMTV (less disease is harder to find);
* ``n_lesions``: number of lesions (disseminated disease);
* ``smallest_lesion``: -log of the smallest lesion volume;
* ``contrast``: minus the lesion-to-background SUV ratio (lesion mean over a 2-voxel shell);
* ``organ_distance``: minus the distance (mm) from the lesions to the nearest high
  physiological uptake (SUV > 5 outside the lesions: brain, heart, kidneys, bladder);
* ``cohort`` (default): the mean percentile rank of the last four, the ways the network fails.

From a model (``teacher_uri``): ``teacher_loss`` (the training loss of the teacher on the
whole volume) or ``teacher_dice`` (1 - its Dice).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from clips.data.preprocess import SUV_CHANNEL, Case
from clips.errors import ConfigError

COHORT_SCORES = ("tmtv", "n_lesions", "smallest_lesion", "contrast", "organ_distance", "cohort")
TEACHER_SCORES = ("teacher_loss", "teacher_dice")
HOT_SUV = 5.0
NO_HOT_MM = 1000.0


def check_difficulty(name: str, teacher_uri: str = "") -> None:
    if name not in COHORT_SCORES + TEACHER_SCORES:
        raise ConfigError(f"unknown difficulty {name!r}; known: {', '.join(COHORT_SCORES + TEACHER_SCORES)}")
    if name in TEACHER_SCORES and not teacher_uri:
        raise ConfigError(f"difficulty={name} needs teacher_uri (a checkpoint or a models:/ URI)")


def case_features(case: Case, spacing) -> dict:
    """Lesion statistics of one preprocessed case."""
    label = np.asarray(case.label, bool)
    suv = np.asarray(case.image[SUV_CHANNEL], np.float32) * 30.0
    voxel_ml = float(np.prod(spacing)) / 1000.0
    lab, n = ndimage.label(label)
    row = {"tmtv_ml": case.tmtv_ml, "n_lesions": int(n)}
    if n == 0:
        return row | {"smallest_lesion_ml": np.nan, "contrast": np.nan, "organ_distance_mm": np.nan}
    sizes = np.bincount(lab.ravel())[1:] * voxel_ml
    shell = ndimage.binary_dilation(label, iterations=2) & ~label
    background = float(suv[shell].mean()) if shell.any() else 1.0
    hot = (suv > HOT_SUV) & ~ndimage.binary_dilation(label, iterations=1)
    if hot.any():
        dist = ndimage.distance_transform_edt(~hot, sampling=spacing)
        organ = float(dist[label].min())
    else:
        organ = NO_HOT_MM
    return row | {"smallest_lesion_ml": float(sizes.min()), "contrast": float(suv[label].mean()) / max(background, 1e-3),
                  "organ_distance_mm": organ}


def _rank(x: np.ndarray) -> np.ndarray:
    """Percentile rank in [0, 1]; NaN (no lesion) gets the middle."""
    s = pd.Series(x).rank(pct=True).to_numpy()
    return np.where(np.isnan(s), 0.5, s)


def cohort_difficulty(patient_ids: list[str], cases: list[Case], spacing) -> pd.DataFrame:
    """One row per patient: the features, every cohort score, higher = harder."""
    df = pd.DataFrame([case_features(c, spacing) for c in cases])
    df.insert(0, "patient_id", patient_ids)
    df["score_tmtv"] = -np.log(np.maximum(df["tmtv_ml"].to_numpy(float), 1e-3))
    df["score_n_lesions"] = df["n_lesions"].astype(float)
    df["score_smallest_lesion"] = -np.log(np.maximum(df["smallest_lesion_ml"].to_numpy(float), 1e-3))
    df["score_contrast"] = -df["contrast"].astype(float)
    df["score_organ_distance"] = -df["organ_distance_mm"].astype(float)
    parts = ["score_n_lesions", "score_smallest_lesion", "score_contrast", "score_organ_distance"]
    df["score_cohort"] = np.mean([_rank(df[p].to_numpy(float)) for p in parts], axis=0)
    return df


def select_score(table: pd.DataFrame, name: str) -> np.ndarray:
    """The chosen score as an array in patient order; NaN (no lesion) counts as the median."""
    s = table[f"score_{name}"].to_numpy(float)
    return np.where(np.isnan(s), np.nanmedian(s) if np.isfinite(s).any() else 0.0, s)
