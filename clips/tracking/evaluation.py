"""Log an evaluation to the active MLflow run: table, reports, summary, headline metrics, figures."""
from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow

from clips.metrics.cohort import CohortEvaluation, write_outputs
from clips.metrics.figures import bland_altman, tmtv_scatter
from clips.metrics.summary import headline_metrics
from clips.tracking import schema


def log_evaluation(result: CohortEvaluation, name: str, out_dir: Path | None = None, privacy=None,
                   step: int = 0) -> dict:
    """Write the outputs (to ``out_dir``, else a temporary folder) and log them under ``evaluation/<name>/``.

    Only the tables, reports and summary are logged: never images (predicted masks
    stay on the local disk).
    """
    if privacy is not None and privacy.active:  # what leaves the machine carries pseudonyms only
        privacy.ids(result.table["patient_id"])
        privacy.ids(e.split(":", 1)[0] for e in result.errors)  # errors start with the patient id
        result = CohortEvaluation(privacy.table(result.table), [privacy.text(e) for e in result.errors],
                                  result.settings)
        out_dir = None  # the local outputs keep real ids; the logged copy is written apart
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(out_dir) if out_dir else Path(tmp) / name
        summary = write_outputs(result, out)
        for fname in ("per_patient.csv", "per_patient.parquet", "summary.json", "errors.txt"):
            mlflow.log_artifact(str(out / fname), f"evaluation/{name}")
        mlflow.log_artifacts(str(out / "reports"), f"evaluation/{name}/reports")
    if len(result.table):
        mlflow.log_table(result.table, schema.per_patient_table(name))
        mlflow.log_metrics(headline_metrics(summary, name), step=step)
        for fig, fname in ((tmtv_scatter(result.table, f"{name}: TMTV predicted vs true"), "tmtv_scatter.png"),
                           (bland_altman(result.table, f"{name}: TMTV Bland-Altman"), "tmtv_bland_altman.png")):
            mlflow.log_figure(fig, f"figures/{name}_{fname}")
            plt.close(fig)
    return summary


def log_evaluation_run(result: CohortEvaluation, data_dir, model_uri: str, privacy: str) -> None:
    """``clips evaluate --mlflow``: one run holding what was evaluated, with which settings, and the outputs."""
    from clips.tracking.privacy import Privacy

    pseudonyms = Privacy(privacy)
    with mlflow.start_run():
        mlflow.log_params(pseudonyms.params({schema.DATA_DIR_PARAM: str(data_dir), schema.CFG + "model_uri": model_uri
                                             or "", schema.CFG + "privacy": privacy,
                                             **{schema.CFG + k: v for k, v in result.settings.describe().items()}}))
        log_evaluation(result, "eval", privacy=pseudonyms)
