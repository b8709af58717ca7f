"""Reference arms: a fixed model evaluated, not trained, in every fold of a study (``--reference NAME=URI``).

The row every trained arm is compared with: the released TMTV-Net (``models:/tmtv-net-released/1``), a champion,
any logged model. In each fold it segments that fold's test patients (the split of the study's own children)
and logs the full per-patient suite as a study child tagged ``clips.reference``. A fixed model has no training
randomness: the comparison gives it the same per-patient values under every seed of the study, so that the
run-aware test pairs it with each trained run of the other arm (clips/study/compare.py).
"""
from __future__ import annotations

import mlflow

from clips.config import build_config
from clips.errors import ConfigError
from clips.metrics.cohort import evaluate_predictions
from clips.study.config import Job, StudyConfig
from clips.tracking import schema


def check_references(scfg: StudyConfig) -> None:
    from clips.curricula import REGISTRY

    for name, uri in scfg.references.items():
        if name in REGISTRY:
            raise ConfigError(f"reference {name!r}: that is a curriculum's name; give the reference another one")
        try:
            mlflow.models.get_model_info(uri)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI
            raise ConfigError(f"reference {name}={uri}: no model there ({str(exc).splitlines()[0][:200]})") from None


def evaluate_reference(scfg: StudyConfig, job: Job, run_id: str, split_params: dict, log=print) -> None:
    """Segment the fold's test patients with the reference model and log the per-patient suite to ``run_id``.
    ``split_params``: a trained child's parameters of the same fold (the children's own split)."""
    from clips.inference.predict import segmenter
    from clips.inference.sliding_window import resolve_device
    from clips.training.cohort import load_data

    uri = scfg.references[job.arm]
    cfg = build_config(split_params)
    _, cohort = load_data(cfg, log=lambda *_: None)
    segment = segmenter(uri, resolve_device(cfg.device))
    # the volumes the segmenter read hold the SEG too: no second read
    evaluation = evaluate_predictions(cohort.ids("test"), lambda pid: segment(cohort.files[pid]))
    from clips.tracking.evaluation import log_evaluation
    from clips.tracking.privacy import Privacy

    with mlflow.start_run(run_id=run_id, nested=True):  # the study's parent is the active run
        mlflow.log_params({schema.CURRICULUM_PARAM: job.arm, schema.SEED_PARAM: job.seed,
                           schema.FOLD_PARAM: job.fold, schema.FOLDS_PARAM: scfg.folds, "reference.model_uri": uri})
        mlflow.set_tag(schema.REFERENCE, uri)
        log_evaluation(evaluation, "test", privacy=Privacy(cfg.privacy))
    log(f"reference {job.arm} on fold {job.fold}: {len(evaluation.table)} test patients")
