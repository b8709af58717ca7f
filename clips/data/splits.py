"""Deterministic train/val/test splits, stratified by TMTV and grouped by subject.

Subjects are sorted by TMTV and cut into blocks of ten; within each block a seeded
shuffle hands out the val and test places, so every TMTV range is represented in
every set. All studies of one subject land in the same set.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

BLOCK = 10


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
