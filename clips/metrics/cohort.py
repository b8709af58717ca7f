"""Evaluate a folder of predictions against a cohort: one patient in memory at a time, optionally in parallel.

Writes ``per_patient.csv`` and ``.parquet``, ``reports/<patient_id>.txt`` and
``summary.json``. A missing or mis-shaped prediction is reported by name
(``errors.txt`` and the summary) and the other patients are still evaluated.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clips.data.io import AFFINE_TOLERANCE_MM, PatientVolumes, as_binary, load_patient, read_volume
from clips.data.layout import PatientFiles, discover
from clips.errors import DataError
from clips.metrics.patient import COLUMNS, EvalSettings, evaluate_patient
from clips.metrics.report import patient_report
from clips.metrics.summary import summarize
from clips.progress import Progress

PREDICTION_NAMES = ("{pid}.nii.gz", "{pid}_SEG.nii.gz")


@dataclass
class CohortEvaluation:
    table: pd.DataFrame
    errors: list[str] = field(default_factory=list)
    settings: EvalSettings = field(default_factory=EvalSettings)

    @classmethod
    def from_rows(cls, rows: list[dict], settings: EvalSettings, errors: list[str] | None = None) -> "CohortEvaluation":
        """The evaluation of per-patient rows (evaluate_patient's), in the suite's column order."""
        return cls(pd.DataFrame(rows, columns=COLUMNS), list(errors or []), settings)

    @property
    def summary(self) -> dict:
        s = summarize(self.table, self.settings.describe())
        s["errors"] = self.errors
        return s


def find_prediction(pred_dir: Path, patient_id: str) -> Path | None:
    for pattern in PREDICTION_NAMES:
        p = Path(pred_dir) / pattern.format(pid=patient_id)
        if p.exists():
            return p
    return None


def load_prediction(path: Path, patient_id: str, shape, affine) -> np.ndarray:
    """A binary prediction on the patient's grid, or a DataError naming the file."""
    data, pred_affine = read_volume(patient_id, path)
    if data.shape != tuple(shape):
        raise DataError(patient_id, path.name, f"prediction shape {data.shape} differs from the label's {tuple(shape)}")
    if not np.allclose(pred_affine, affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
        raise DataError(patient_id, path.name, "prediction affine differs from the label's")
    mask, problem = as_binary(data)
    if problem:
        raise DataError(patient_id, path.name, problem)
    return mask


def read_prediction(files: PatientFiles, pred_path: Path | None) -> tuple[np.ndarray, PatientVolumes]:
    """A patient's saved binary prediction and the volumes it is scored against (PET, SEG; no CT), or a DataError
    naming the file."""
    if pred_path is None:
        raise DataError(files.patient_id, None, "no prediction found (expected "
                        + " or ".join(n.format(pid=files.patient_id) for n in PREDICTION_NAMES) + ")")
    vols = load_patient(files.without_ct())
    return load_prediction(pred_path, files.patient_id, vols.pet.shape, vols.affine), vols


def evaluate_files(files: PatientFiles, pred_path: Path | None, settings: EvalSettings) -> dict:
    mask, vols = read_prediction(files, pred_path)
    return evaluate_patient(files.patient_id, vols.seg, mask, vols.pet, vols.affine, settings)


def evaluate_predictions(ids: list[str], predict: Callable[[str], tuple[np.ndarray, PatientVolumes]],
                         settings: EvalSettings | None = None) -> CohortEvaluation:
    """The per-patient suite of whatever segments the patients ``ids``, one patient in memory at a time:
    ``predict(pid)`` gives the binary mask on the patient's own grid and the volumes it read (their SEG and PET
    score it). The one scoring of a study's test patients for every kind of arm: a trained network (the trainer),
    a fixed reference model and a peer's saved masks."""
    settings = settings or EvalSettings()
    rows = []
    for pid in ids:
        mask, vols = predict(pid)
        rows.append(evaluate_patient(pid, vols.seg, mask, vols.pet, vols.affine, settings))
    return CohortEvaluation.from_rows(rows, settings)


def _evaluate_job(args):
    """One patient's (files, prediction, settings) -> (its row, None) or (None, its error line); a pool's unit."""
    files, pred_path, settings = args
    try:
        return evaluate_files(files, pred_path, settings), None
    except DataError as exc:
        return None, str(exc)


def evaluate_cohort(data_dir, pred_dir, settings: EvalSettings | None = None, workers: int = 1,
                    log=print) -> CohortEvaluation:
    settings = settings or EvalSettings()
    jobs = []
    errors = []
    for f in discover(data_dir):
        if f.seg is None or not f.seg.exists():
            errors.append(str(DataError(f.patient_id, f.seg.name if f.seg else "SEG", "missing file")))
            continue
        jobs.append((f, find_prediction(Path(pred_dir), f.patient_id), settings))
    progress = Progress(len(jobs), "evaluating patients", log)
    results = []
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        for result in (pool.map(_evaluate_job, jobs, chunksize=1) if pool else map(_evaluate_job, jobs)):
            results.append(result)
            progress.step()
    rows = []
    for row, err in results:
        if err:
            errors.append(err)
            log(f"error: {err}")
        else:
            rows.append(row)
    return CohortEvaluation.from_rows(rows, settings, errors)


def write_outputs(result: CohortEvaluation, out: Path) -> dict:
    out = Path(out)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    result.table.to_csv(out / "per_patient.csv", index=False)
    result.table.to_parquet(out / "per_patient.parquet", index=False)
    settings = result.settings.describe()
    for row in result.table.to_dict("records"):
        (out / "reports" / f"{row['patient_id']}.txt").write_text(patient_report(row, settings))
    summary = result.summary
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "errors.txt").write_text("".join(f"{e}\n" for e in result.errors))
    return summary
