"""Reading back what a run logged with ``mlflow.log_table``."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient


def run_table(client: MlflowClient, run_id: str, artifact_file: str) -> pd.DataFrame | None:
    """The table ``artifact_file`` of one run, or None when the run has none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, artifact_file, tmp)
        except Exception:  # noqa: BLE001 - MLflow raises several types for "no such artifact"
            return None
        data = json.loads(Path(path).read_text())
    return pd.DataFrame(data["data"], columns=data["columns"])
