"""A difficulty score per training patient (higher = harder), computed before training.

Features of each preprocessed case (the lesion mask and the SUV channel):

* ``tmtv_ml``: total lesion volume; small total volume is the clearest marker of the
  small-volume disease a network misses (score ``tmtv`` = -log TMTV);
* ``contrast``: lesion SUVmax over the background SUV, the background measured in a
  shell 2 to 4 point-spread widths (``BLUR_MM``) away from every lesion, outside the
  lesions' own blurred halo; the faintest lesion counts (score ``contrast`` = -log of it);
* ``organ_distance_mm``: distance from the lesions to the nearest physiological high
  uptake (SUV > ``HOT_SUV``), where the hot connected component of each lesion (its
  blurred halo, a bulky conglomerate) is excluded up to 2 blur widths from the lesion, so
  bulky disease far from organs is not "near an organ", while an organ the lesion touches
  still is, at about 2 blur widths (score ``organ_distance`` = -distance);
* ``n_lesions`` and ``smallest_lesion_ml``, reported and available as scores but left out of
  the composite: a lesion count says little about how hard the disease is to delineate (many
  large nodes are easy), and the smallest lesion saturates at one voxel.

``cohort`` (default) is the weighted mean of the percentile ranks of the scores in
``COMPOSITE_WEIGHTS``. From a model (``teacher_uri``): ``teacher_loss`` (the teacher's
training loss on the whole volume) or ``teacher_dice`` (1 - its Dice).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from clips.data.preprocess import CHANNEL_WINDOWS, SUV_CHANNEL, Case
from clips.errors import ConfigError

COMPOSITE_WEIGHTS = {"tmtv": 1.0, "contrast": 1.0, "organ_distance": 1.0}
COHORT_SCORES = ("tmtv", "n_lesions", "smallest_lesion", "contrast", "organ_distance", "cohort")
TEACHER_SCORES = ("teacher_loss", "teacher_dice")
HOT_SUV = 5.0  # physiological high uptake: brain, myocardium, kidneys, bladder
BLUR_MM = 8.0  # about a clinical PET point-spread FWHM: the background starts 2 widths away
NO_HOT_MM = 1000.0  # distance recorded when nothing hot remains


def check_difficulty(name: str, teacher_uri: str = "") -> None:
    if name not in COHORT_SCORES + TEACHER_SCORES:
        raise ConfigError(f"unknown difficulty {name!r}; known: {', '.join(COHORT_SCORES + TEACHER_SCORES)}")
    if name in TEACHER_SCORES and not teacher_uri:
        raise ConfigError(f"difficulty={name} needs teacher_uri (a checkpoint or a models:/ URI)")


def case_features(case: Case, spacing) -> dict:
    """Lesion features of one preprocessed case (NaN where it has no lesion)."""
    label = np.asarray(case.label, bool)
    suv = np.asarray(case.image[SUV_CHANNEL], np.float32) * CHANNEL_WINDOWS[SUV_CHANNEL][2]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    lab, n = ndimage.label(label)
    row = {"tmtv_ml": case.tmtv_ml, "n_lesions": int(n)}
    if n == 0:
        return row | {"smallest_lesion_ml": np.nan, "contrast": np.nan, "organ_distance_mm": np.nan}
    sizes = np.bincount(lab.ravel())[1:] * voxel_ml
    dist = ndimage.distance_transform_edt(~label, sampling=spacing)
    shell = (dist > 2 * BLUR_MM) & (dist <= 4 * BLUR_MM)
    background = float(np.median(suv[shell])) if shell.any() else 1.0
    peaks = np.asarray(ndimage.maximum(suv, lab, np.arange(1, n + 1)), float)
    # Hot uptake that is not a lesion's own: the hot components that touch a lesion are its halo
    # (or the conglomerate it belongs to) up to 2 blur widths out; beyond that, a component that
    # merely merges with the halo is an organ the lesion touches, and it counts.
    hot, _ = ndimage.label(suv > HOT_SUV)
    own = np.unique(hot[ndimage.binary_dilation(label)])
    physiological = (hot > 0) & ~(np.isin(hot, own[own > 0]) & (dist <= 2 * BLUR_MM))
    if physiological.any():
        organ = float(ndimage.distance_transform_edt(~physiological, sampling=spacing)[label].min())
    else:
        organ = NO_HOT_MM
    return row | {"smallest_lesion_ml": float(sizes.min()), "contrast": float(peaks.min()) / max(background, 0.1),
                  "organ_distance_mm": organ}


def _rank(x: np.ndarray) -> np.ndarray:
    """Percentile rank in [0, 1]; NaN (no lesion) gets the middle."""
    s = pd.Series(x).rank(pct=True).to_numpy()
    return np.where(np.isnan(s), 0.5, s)


def feature_table(patient_ids: list[str], cases: list[Case], spacing) -> pd.DataFrame:
    """One row per patient: the features (the costly part: labelling and distance transforms)."""
    df = pd.DataFrame([case_features(c, spacing) for c in cases])
    df.insert(0, "patient_id", patient_ids)
    return df


def cohort_difficulty(patient_ids: list[str], cases: list[Case], spacing) -> pd.DataFrame:
    """One row per patient: the features, every cohort score, higher = harder."""
    return with_scores(feature_table(patient_ids, cases, spacing))


def with_scores(features: pd.DataFrame) -> pd.DataFrame:
    """The features with every cohort score; the composite ranks patients within this table."""
    df = features.reset_index(drop=True).copy()
    df["score_tmtv"] = -np.log(np.maximum(df["tmtv_ml"].to_numpy(float), 1e-3))
    df["score_n_lesions"] = df["n_lesions"].astype(float)
    df["score_smallest_lesion"] = -np.log(np.maximum(df["smallest_lesion_ml"].to_numpy(float), 1e-3))
    df["score_contrast"] = -np.log(np.maximum(df["contrast"].to_numpy(float), 1e-3))
    df["score_organ_distance"] = -df["organ_distance_mm"].astype(float)
    total = sum(COMPOSITE_WEIGHTS.values())
    df["score_cohort"] = sum(w * _rank(df[f"score_{k}"].to_numpy(float)) for k, w in COMPOSITE_WEIGHTS.items()) / total
    return df


def select_score(table: pd.DataFrame, name: str) -> np.ndarray:
    """The chosen score as an array in patient order; NaN (no lesion) counts as the median."""
    s = table[f"score_{name}"].to_numpy(float)
    return np.where(np.isnan(s), np.nanmedian(s) if np.isfinite(s).any() else 0.0, s)


def difficulty_of_cohort(cohort, spacing) -> pd.DataFrame:
    """Every patient of a loaded cohort (:class:`clips.data.cohort.Cohort`, preprocessed at
    ``spacing``): the features and every score, with the cohort's own columns (e.g. hard flags)."""
    ids = list(cohort.table["patient_id"])
    table = cohort_difficulty(ids, [cohort.cases[p] for p in ids], spacing)
    own = cohort.table.drop(columns=[c for c in ("tmtv_ml", "split") if c in cohort.table])
    return own.merge(table, on="patient_id")
