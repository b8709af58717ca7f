"""Promotion in the model registry by evidence, not by hand.

1. The best finished run of an experiment by a test-set metric becomes a new version
   of the registered model, with the alias ``challenger``.
2. The challenger is compared with the current ``champion`` patient by patient, on the
   test patients both were evaluated on: a paired one-sided Wilcoxon signed-rank test
   that Dice is higher, and one that the absolute TMTV error is higher (worse).
3. ``champion`` moves to the challenger (the old one keeps ``previous``) only if Dice is
   better with p < alpha and the TMTV error is not significantly worse; the first
   version becomes champion when there is none. The evidence is written as tags on the
   model version; the decision is returned and printed.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clips.errors import ClipsError
from clips.registry.provenance import register_version, trained_provenance
from clips.stats.paired import wilcoxon_greater
from clips.tracking import schema
from clips.tracking.runs import experiment_name
from clips.tracking.tables import run_table

MIN_PAIRED_PATIENTS = 5


@dataclass
class Decision:
    model_name: str
    version: str
    run_id: str
    promoted: bool
    reason: str
    evidence: dict = field(default_factory=dict)
    unchanged: bool = False  # the best run is the champion already: nothing registered, nothing moved

    def __str__(self):
        verb = "promoted to champion" if self.promoted else ("stays champion" if self.unchanged else "stays challenger")
        return f"{self.model_name} version {self.version} (run {self.run_id}) {verb}: {self.reason}"


def best_run(client: MlflowClient, experiment: str, metric: str):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ClipsError(f"no experiment named {experiment!r} at {mlflow.get_tracking_uri()}")
    key = f"test_{metric}_mean"
    higher_is_better = not metric.endswith(("_mm", "_error", "_ml")) and "error" not in metric
    runs = client.search_runs([exp.experiment_id],
                              filter_string=f"attributes.status = 'FINISHED' and metrics.`{key}` > -1e300",
                              order_by=[f"metrics.`{key}` {'DESC' if higher_is_better else 'ASC'}"], max_results=50)
    runs = [r for r in runs if r.data.tags.get(schema.ROLE) != schema.TUNE_PARENT]
    if not runs:
        raise ClipsError(f"no finished run in {experiment!r} has the test-set metric {key}")
    return runs[0], key


def _test_table(client: MlflowClient, run_id: str) -> pd.DataFrame:
    table = run_table(client, run_id, schema.TEST_TABLE)
    if table is None:
        raise ClipsError(f"run {run_id} has no {schema.TEST_TABLE}: it was not evaluated on a test set")
    return table


def compare(challenger: pd.DataFrame, champion: pd.DataFrame, alpha: float) -> tuple[bool, str, dict]:
    both = challenger.merge(champion, on="patient_id", suffixes=("_new", "_old"))
    n = len(both)
    if n < MIN_PAIRED_PATIENTS:
        return False, (f"only {n} test patients in common with the champion (need {MIN_PAIRED_PATIENTS}): "
                       "the runs are not comparable"), {"paired_patients": n}
    dice_new, dice_old = both["dice_new"].to_numpy(float), both["dice_old"].to_numpy(float)
    err_new = (both["tmtv_pred_ml_new"] - both["tmtv_true_ml_new"]).abs().to_numpy(float)
    err_old = (both["tmtv_pred_ml_old"] - both["tmtv_true_ml_old"]).abs().to_numpy(float)
    p_dice = wilcoxon_greater(dice_new, dice_old)
    p_tmtv_worse = wilcoxon_greater(err_new, err_old)
    ev = {"paired_patients": n, "dice_challenger": float(np.nanmean(dice_new)),
          "dice_champion": float(np.nanmean(dice_old)),
          "tmtv_abs_error_ml_challenger": float(np.mean(err_new)),
          "tmtv_abs_error_ml_champion": float(np.mean(err_old)),
          "p_dice_better": p_dice, "p_tmtv_error_worse": p_tmtv_worse, "alpha": alpha,
          "patients_dice_improved": int(np.sum(dice_new > dice_old)),
          "patients_dice_worsened": int(np.sum(dice_new < dice_old))}
    if p_dice >= alpha:
        return False, f"Dice not significantly better (p = {p_dice:.3g} >= {alpha})", ev
    if p_tmtv_worse < alpha:
        return False, f"TMTV error significantly worse (p = {p_tmtv_worse:.3g} < {alpha})", ev
    return True, (f"Dice better (p = {p_dice:.3g}), TMTV error not worse (p = {p_tmtv_worse:.3g}), "
                  f"{n} paired test patients"), ev


def promote(experiment: str = "", model_name: str = "clips-tmtv", metric: str = "dice", alpha: float = 0.05,
            run_id: str | None = None) -> Decision:
    client = MlflowClient()
    experiment = experiment_name(experiment)
    if run_id:
        run, key = client.get_run(run_id), f"test_{metric}_mean"
    else:
        run, key = best_run(client, experiment, metric)
    table = _test_table(client, run.info.run_id)
    try:
        client.get_registered_model(model_name)
    except MlflowException:
        client.create_registered_model(model_name, description="CLIPS lymphoma PET/CT segmentation (TMTV)")
    try:
        champion = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        champion = None
    if champion is not None and champion.run_id == run.info.run_id:  # nothing new: no new version either
        return _record(Decision(model_name, str(champion.version), run.info.run_id, False,
                                f"the best run is already the champion (version {champion.version})", {},
                                unchanged=True))
    version = _version_of(client, model_name, run)
    client.set_registered_model_alias(model_name, "challenger", version)
    if champion is None:
        promoted, reason, ev = True, "first version: no champion yet", {}
    elif champion.run_id == run.info.run_id:
        promoted, reason, ev = False, f"the champion (version {champion.version}) is the same run", {}
    else:
        promoted, reason, ev = compare(table, _test_table(client, champion.run_id), alpha)
        ev["champion_version"] = champion.version
    if promoted:
        if champion is not None:
            client.set_registered_model_alias(model_name, "previous", champion.version)
        client.set_registered_model_alias(model_name, "champion", version)
    tags = {schema.PROMOTE_RUN: run.info.run_id, schema.PROMOTE_EXPERIMENT: experiment, schema.PROMOTE_METRIC: key,
            f"{schema.PREFIX}{key}": str(run.data.metrics.get(key)),
            schema.DECISION: "promoted" if promoted else "not promoted",
            schema.REASON: reason}
    tags |= {f"{schema.EVIDENCE_PREFIX}{k}": (f"{v:.6g}" if isinstance(v, float) and math.isfinite(v) else str(v))
             for k, v in ev.items()}
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    return _record(Decision(model_name, str(version), run.info.run_id, promoted, reason, ev))


def _version_of(client: MlflowClient, model_name: str, run) -> str:
    """The run's version of the registered model: the existing one, or a new one registered from the logged
    model's own URI (models:/<model id>, MLflow 3's link from version to logged model and its metrics)."""
    existing = client.search_model_versions(f"name = '{model_name}' and run_id = '{run.info.run_id}'")
    if existing:
        return str(max(int(v.version) for v in existing))
    outputs = run.outputs.model_outputs if run.outputs else []
    model_id = outputs[-1].model_id if outputs else None
    # a model logged before MLflow 3 linked models to runs is registered from the run's artifact path
    uri = f"models:/{model_id}" if model_id else f"runs:/{run.info.run_id}/model"
    return register_version(client, model_name, uri, run.info.run_id, trained_provenance(run), model_id=model_id)


def _record(decision: Decision) -> Decision:
    """Under `mlflow run . -e promote` the entry point's run records the decision instead of staying empty."""
    if os.environ.get("MLFLOW_RUN_ID"):
        client = MlflowClient()
        run_id = os.environ["MLFLOW_RUN_ID"]
        client.set_tag(run_id, "mlflow.runName", f"promote {decision.model_name}")
        for k, v in {schema.DECISION: "promoted" if decision.promoted else "not promoted",
                     schema.REASON: decision.reason, schema.CHALLENGER_RUN: decision.run_id,
                     schema.MODEL_VERSION: decision.version}.items():
            client.set_tag(run_id, k, str(v)[:5000])
    return decision
