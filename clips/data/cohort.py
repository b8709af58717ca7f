"""Everything training needs to know about a cohort: valid cases, their split, a digest."""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clips.data.layout import PatientFiles, discover
from clips.data.preprocess import Case, CaseCache, PreprocessConfig
from clips.data.splits import cross_validated, is_hard, make_fold_split, make_splits
from clips.data.synth import SynthConfig, write_cohort
from clips.errors import ClipsError, DataError
from clips.progress import Progress


@dataclass
class Cohort:
    root: Path
    files: dict[str, PatientFiles]
    cases: dict[str, Case]
    table: pd.DataFrame  # patient_id, subject, tmtv_ml, split (, fold) (+ cohort.csv columns when present)
    digest: str
    skipped: list[DataError]

    def ids(self, split: str) -> list[str]:
        return sorted(self.table.loc[self.table["split"] == split, "patient_id"])


def ensure_example_cohort(out: Path, patients: int, spacing_mm: float, seed: int, log=print) -> Path:
    """Generate the example cohort once; a half-written one (killed process) is never used.

    Each process writes into its own temporary folder and renames it into place: processes that start
    together (a study's workers) never read each other's half-written files, and the first rename wins.
    """
    if (out / "cohort.csv").exists():
        return out
    tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"generating the example cohort ({patients} patients, {spacing_mm:g} mm) in {out}")
    write_cohort(tmp, patients, seed, SynthConfig(spacing_mm=(spacing_mm,) * 3), log=log)
    try:
        tmp.rename(out)
    except OSError:  # another process put it in place first: theirs is identical (same seed)
        if not (out / "cohort.csv").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def cohort_digest(files: list[PatientFiles], tmtv: dict[str, float]) -> str:
    """SHA-1 over every file's name and size and each case's TMTV: cheap on 1,000 patients, and it changes
    with the data."""
    h = hashlib.sha1()
    for f in sorted(files, key=lambda f: f.patient_id):
        h.update(f.patient_id.encode())
        for _, p in f.items():
            if p is not None and p.exists():
                h.update(f"{p.name}:{p.stat().st_size}".encode())
        h.update(f"{tmtv.get(f.patient_id, -1):.3f}".encode())
    return h.hexdigest()[:16]


def load_cohort(root: str | Path, *, cache_root: Path, pre: PreprocessConfig, seed: int, val_fraction: float,
                test_fraction: float, skip_invalid: bool = False, log=print, folds: int = 0, fold: int = 0,
                val_seed: int | None = None) -> Cohort:
    """Valid cases, preprocessed once, and their split: train/val/test by ``seed``, or with ``folds`` > 1
    fold ``fold`` as the test set (folds by ``seed``) and an inner validation set from the other folds (by
    ``val_seed``, default ``seed``)."""
    root = Path(root)
    cache = CaseCache(cache_root, pre)
    files, cases, problems = {}, {}, []
    found = discover(root)
    todo = {f.patient_id for f in found if not cache.has(f)}
    progress = Progress(len(todo), f"preprocessing {root.name} (first time, cached after)", log) if todo else None
    for f in found:
        if f.seg is None or not f.seg.exists():
            problems.append(DataError(f.patient_id, f.seg.name if f.seg else "SEG", "missing file"))
            if progress and f.patient_id in todo:
                progress.step()
            continue
        try:
            cases[f.patient_id] = cache.get(f)
            files[f.patient_id] = f
        except DataError as exc:
            problems.append(exc)
        if progress and f.patient_id in todo:
            progress.step()
    if problems and not skip_invalid:
        lines = "\n".join(f"  {p}" for p in problems)
        raise ClipsError(f"{len(problems)} invalid patient(s) in {root} (run 'clips data check {root}', "
                         f"or pass skip_invalid=true to leave them out):\n{lines}")
    for p in problems:
        log(f"skipping invalid patient: {p}")
    if len(cases) < 3:
        raise ClipsError(f"{root}: only {len(cases)} valid patient(s); training needs at least 3")
    table = pd.DataFrame([
        {"patient_id": pid, "subject": files[pid].subject, "tmtv_ml": round(c.tmtv_ml, 3)} for pid, c in cases.items()
    ])
    meta = root / "cohort.csv"
    if meta.exists():  # the generator's (or a user's) description of each patient, e.g. the hard flags
        extra = pd.read_csv(meta, dtype={"patient_id": str}, keep_default_na=False)
        extra = extra.drop(columns=[c for c in ("tmtv_ml", "subject", "split", "fold") if c in extra])
        table = table.merge(extra, on="patient_id", how="left")
    if cross_validated(folds):
        table = make_fold_split(table, folds, fold, seed, val_fraction, val_seed)
    else:
        table = make_splits(table, seed, val_fraction, test_fraction)
    digest = cohort_digest(list(files.values()), {p: c.tmtv_ml for p, c in cases.items()})
    return Cohort(root, files, cases, table, digest, problems)


def hard_ids(table: pd.DataFrame) -> set[str] | None:
    """Patients flagged hard in the cohort's cohort.csv (as joined into the split), or None without the column."""
    if "hard" not in table:
        return None
    return set(table.loc[is_hard(table), "patient_id"])
