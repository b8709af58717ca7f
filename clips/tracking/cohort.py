"""What a run trained on, logged: its split (``data/split.csv``, with the cohort's own columns), the patients it
skipped, and the cohort as the run's MLflow dataset input. A training and a peer arm's child log the same."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import mlflow

from clips.data.cohort import Cohort
from clips.tracking import schema
from clips.tracking.privacy import Privacy
from clips.tracking.runs import log_input


def log_cohort(cohort: Cohort, workdir: Path, privacy: Privacy) -> None:
    """The run's split, skipped patients and the cohort as the run's MLflow dataset input (module docstring)."""
    table = privacy.table(cohort.table)
    _log_file(workdir, schema.SPLIT, lambda path: table.to_csv(path, index=False))
    if cohort.skipped:
        privacy.ids([p.patient_id for p in cohort.skipped])
        lines = [privacy.text(str(p)) for p in cohort.skipped]
        _log_file(workdir, schema.SKIPPED, lambda path: path.write_text(json.dumps(lines, indent=1)))
    with warnings.catch_warnings():  # MLflow's source-type guess and integer-column hints are noise here
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(table, source=privacy.path(cohort.root), name="cohort", digest=cohort.digest)
        log_input(ds, context="training")


def _log_file(workdir: Path, artifact: str, write) -> None:
    """Write the file ``artifact`` names (schema.py: folder/name) in ``workdir`` and log it at that path."""
    folder, _, name = artifact.rpartition("/")
    path = workdir / name
    write(path)
    mlflow.log_artifact(str(path), folder or None)
