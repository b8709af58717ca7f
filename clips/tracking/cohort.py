"""What a run trained on, logged: its split (``data/split.csv``, with the cohort's own columns), the patients it
skipped, and the cohort as the run's MLflow dataset input. A training and a peer arm's child log the same."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import mlflow

from clips.data.cohort import Cohort
from clips.tracking.privacy import Privacy
from clips.tracking.runs import log_input


def log_cohort(cohort: Cohort, workdir: Path, privacy: Privacy) -> None:
    """The run's split, skipped patients and the cohort as the run's MLflow dataset input (module docstring)."""
    table = privacy.table(cohort.table)
    split_file = workdir / "split.csv"
    table.to_csv(split_file, index=False)
    mlflow.log_artifact(str(split_file), "data")
    if cohort.skipped:
        privacy.ids([p.patient_id for p in cohort.skipped])
        (workdir / "skipped.json").write_text(json.dumps([privacy.text(str(p)) for p in cohort.skipped], indent=1))
        mlflow.log_artifact(str(workdir / "skipped.json"), "data")
    with warnings.catch_warnings():  # MLflow's source-type guess and integer-column hints are noise here
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(table, source=privacy.path(cohort.root), name="cohort", digest=cohort.digest)
        log_input(ds, context="training")
