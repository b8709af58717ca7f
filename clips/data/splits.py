"""Deterministic train/val/test splits, stratified by TMTV and grouped by subject.

Subjects are sorted by TMTV and cut into blocks of ten; within each block a seeded
shuffle hands out the val and test places, so every TMTV range is represented in
every set. All studies of one subject land in the same set.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

BLOCK = 10


FOLDS_RULE = "folds 0 (one split) or at least 2"  # what a user is told when it is broken


def cross_validated(folds: int) -> bool:
    """The folds rule, once: 0 is one train/val/test split, 2 or more is cross-validation by test fold."""
    return folds > 1


def folds_allowed(folds: int) -> bool:
    """1 fold (no test set left) and negative counts are refused (config, study)."""
    return folds == 0 or cross_validated(folds)


def _block_labels(n: int, val_fraction: float, test_fraction: float, rng) -> list[str]:
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
    return list(rng.permutation(labels))


def make_splits(table: pd.DataFrame, seed: int, val_fraction: float = 0.2, test_fraction: float = 0.2) -> pd.DataFrame:
    """``table`` has patient_id, subject, tmtv_ml; returns it with a ``split`` column."""
    rng = np.random.default_rng(seed)
    subjects = table.groupby("subject")["tmtv_ml"].mean().sort_values(kind="stable")
    names = list(subjects.index)
    labels: list[str] = []
    for start in range(0, len(names), BLOCK):
        labels += _block_labels(len(names[start:start + BLOCK]), val_fraction, test_fraction, rng)
    # Small cohorts: make sure val and test each get someone, as long as training keeps most.
    for needed, fraction in (("val", val_fraction), ("test", test_fraction)):
        if fraction > 0 and needed not in labels and labels.count("train") > 2:
            train_pos = [i for i, s in enumerate(labels) if s == "train"]
            labels[int(rng.choice(train_pos))] = needed
    by_subject = dict(zip(names, labels))
    out = table.copy()
    out["split"] = out["subject"].map(by_subject)
    return out.sort_values("patient_id").reset_index(drop=True)


def assign_folds(table: pd.DataFrame, folds: int, seed: int) -> pd.Series:
    """Fold (0..folds-1) of each patient, stratified by the hard flag and TMTV and grouped by subject.

    Subjects are sorted by (hard, TMTV) and cut into blocks of ``folds``; each block hands one
    subject to each fold in a seeded order, so every fold gets its share of hard patients and of
    every TMTV range. ``table`` has patient_id, subject, tmtv_ml and optionally hard."""
    rng = np.random.default_rng(seed)
    per_subject = table.assign(hard=_hard_flags(table)).groupby("subject")[["hard", "tmtv_ml"]].mean()
    names = list(per_subject.sort_values(["hard", "tmtv_ml"], kind="stable").index)
    fold_of = {}
    for start in range(0, len(names), folds):
        block = names[start:start + folds]
        for name, fold in zip(block, rng.permutation(folds)[:len(block)]):
            fold_of[name] = int(fold)
    return table["subject"].map(fold_of)


def make_fold_split(table: pd.DataFrame, folds: int, fold: int, seed: int, val_fraction: float,
                    val_seed: int | None = None) -> pd.DataFrame:
    """Cross-validation: fold ``fold`` is the test set (folds by ``seed``); an inner validation set of
    ``val_fraction`` of the other folds' subjects (by ``val_seed``, default ``seed``) selects the checkpoint
    (none with val_fraction 0); the rest trains."""
    out = table.copy()
    out["fold"] = assign_folds(table, folds, seed)
    rest = make_splits(out[out["fold"] != fold], seed if val_seed is None else val_seed, val_fraction, 0.0)
    split = dict(zip(rest["patient_id"], rest["split"]))
    out["split"] = [split.get(p, "test") for p in out["patient_id"]]
    return out.sort_values("patient_id").reset_index(drop=True)


HARD_VALUES = ("1", "1.0", "True", "true")  # what cohort.csv's (or a per-patient table's) hard column says for yes


def is_hard(table: pd.DataFrame) -> pd.Series:
    """Each row's hard flag as a boolean (the column read as text: 1, 1.0, True or true)."""
    return table["hard"].astype(str).isin(HARD_VALUES)


def _hard_flags(table: pd.DataFrame) -> np.ndarray:
    if "hard" not in table:
        return np.zeros(len(table))
    return is_hard(table).to_numpy(float)
