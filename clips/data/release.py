"""Select studies of a public release (autoPET's FDG-PET-CT-Lesions) by its metadata table, without copying it.

The NIfTI release is ``<root>/<patient>/<study>/{SUV,CTres,CT,PET,SEG}.nii.gz`` with ``fdg_metadata.csv``: one row
per DICOM series of the original download, whose columns include ``Subject ID`` (the patient folder,
``PETCT_<hash>``), ``File Location`` (``./FDG-PET-CT-Lesions/<patient>/<study>/<series>``) and ``diagnosis``
(``LYMPHOMA``, ``MELANOMA``, ``LUNG_CANCER``, ``NEGATIVE``), besides ``age`` and ``sex``. A selection is a folder of
links, ``<out>/<patient>/<study> -> <root>/<patient>/<study>``: the nested layout every CLIPS command reads, in which
a patient's studies share one ``subject`` so that no split puts one person on both sides. ``selection.csv`` says
what was taken and why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clips.data.layout import AUTOPET_FILES
from clips.errors import DataError

SUBJECT, LOCATION, DIAGNOSIS = "Subject ID", "File Location", "diagnosis"  # the release's own column names
NEGATIVE = "NEGATIVE"  # the diagnosis of the studies without PET-positive lesions (empty SEG)
SELECTION_FILE = "selection.csv"


@dataclass
class Selection:
    """What to take: every ``where`` (column -> allowed values) must hold; ``negatives`` negative studies are
    added at random (``seed``), -1 for all of them, 0 for none."""

    where: dict[str, list[str]] = field(default_factory=dict)
    negatives: int = 0
    seed: int = 0


def read_metadata(path: Path, needed: list[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(str(path), None, f"cannot read the metadata table: {exc}") from None
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise DataError(str(path), None, f"no column {', '.join(repr(c) for c in missing)} "
                        f"(columns: {', '.join(table.columns)})")
    return table


def studies(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """One row per study: the metadata's first row of it, with ``patient`` and ``study`` folder names read from
    ``File Location`` (the part after the subject's folder)."""
    patients, folders = [], []
    for i, (subject, location) in enumerate(zip(table[SUBJECT], table[LOCATION])):
        parts = [p for p in location.replace("\\", "/").split("/") if p not in ("", ".")]
        if subject not in parts or parts.index(subject) + 1 >= len(parts):
            raise DataError(str(path), f"row {i + 2}", f"File Location {location!r} holds no "
                            f"<{SUBJECT}>/<study> folder for {subject!r}")
        patients.append(subject)
        folders.append(parts[parts.index(subject) + 1])
    out = table.assign(patient=patients, study=folders)
    return out.drop_duplicates(["patient", "study"]).reset_index(drop=True)


def select(root: Path, metadata: Path, selection: Selection, out: Path, log=print) -> pd.DataFrame:
    """Link the selected studies of the release at ``root`` into ``out``; returns (and writes) the selection table."""
    table = studies(read_metadata(metadata, [SUBJECT, LOCATION, DIAGNOSIS, *selection.where]), metadata)
    chosen = pd.Series(True, index=table.index)
    for column, values in selection.where.items():
        known = sorted(set(table[column]))
        unknown = [v for v in values if v not in known]
        if unknown:
            raise DataError(str(metadata), column, f"no study has {column}={', '.join(unknown)} "
                            f"(values: {', '.join(known)})")
        chosen &= table[column].isin(values)
    table["reason"] = np.where(chosen, "; ".join(f"{c}={'|'.join(v)}" for c, v in selection.where.items()), "")
    negatives = table.index[(table[DIAGNOSIS] == NEGATIVE) & ~chosen]
    if selection.negatives:
        n = len(negatives) if selection.negatives < 0 else min(selection.negatives, len(negatives))
        picked = np.random.default_rng(selection.seed).choice(negatives, size=n, replace=False)
        table.loc[picked, "reason"] = f"negative control ({n} of {len(negatives)}, seed {selection.seed})"
        chosen.loc[picked] = True
    taken = table[chosen].copy()
    if taken.empty:
        raise DataError(str(metadata), None, "the selection holds no study")
    taken["source"] = [str(root / p / s) for p, s in zip(taken["patient"], taken["study"])]
    absent = [src for src in taken["source"] if not (Path(src) / AUTOPET_FILES["pet"]).is_file()]
    if absent:
        raise DataError(absent[0], None, f"selected study not in the release at {root} ({len(absent)} of "
                        f"{len(taken)} missing; is DATA the folder that holds the patient folders?)")
    out.mkdir(parents=True, exist_ok=True)
    for patient, study, source in zip(taken["patient"], taken["study"], taken["source"]):
        link = out / patient / study
        link.parent.mkdir(exist_ok=True)
        if link.is_symlink() and os.readlink(link) == source:
            continue  # selected before: a selection can be repeated
        if link.exists() or link.is_symlink():
            raise DataError(str(link), None, "exists and is not this release's study (choose an empty --out)")
        link.symlink_to(source, target_is_directory=True)
    columns = ["patient", "study", DIAGNOSIS, "reason", "source"] + [c for c in ("age", "sex") if c in taken]
    taken[columns].to_csv(out / SELECTION_FILE, index=False)
    log(f"selected {len(taken)} studies of {taken['patient'].nunique()} patients "
        f"({', '.join(f'{k} {v}' for k, v in taken[DIAGNOSIS].value_counts().items())}) into {out}; "
        f"what and why: {out / SELECTION_FILE}")
    return taken[columns]
