"""A study: every curriculum x seed as a child run of one parent, with the identical training recipe.

Children differ only in ``curriculum`` (and its options) and ``seed``; the split is
fixed by ``split_seed`` so every child is tested on the same patients. A study is found
again by its name (tag ``clips.study_name`` on the parent), so stopping and starting it
reuses every finished child; ``--workers K`` splits the remaining list over K processes.
"""
from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from clips.config import build_config
from clips.curricula import BASELINE, REGISTRY, get_curriculum
from clips.errors import ConfigError
from clips.study.config import StudyConfig


def check(scfg: StudyConfig) -> None:
    unknown = [c for c in scfg.curricula if c not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown curricula {unknown}; available: {', '.join(REGISTRY)}")
    if scfg.seeds < 1:
        raise ConfigError("seeds must be at least 1")
    stand_ins = {c: get_curriculum(c).stand_in_values() for c in scfg.curricula} if needs_teacher(scfg) else {}
    for c in scfg.curricula:  # every child's config must be valid before the first one trains
        build_config(child_params(scfg, c, 0, stand_ins))


def needs_teacher(scfg: StudyConfig) -> bool:
    """A variant that needs a teacher, and no teacher_uri: the study's own baseline (seed 0) teaches."""
    return any(get_curriculum(c).needs_teacher for c in scfg.curricula) and not scfg.train.get("teacher_uri")


def child_params(scfg: StudyConfig, curriculum: str, seed: int, tuned: dict) -> dict:
    params = dict(scfg.train) | {"curriculum": curriculum, "seed": str(seed), "split_seed": str(scfg.split_seed)}
    if not get_curriculum(curriculum).needs_teacher:
        params.pop("teacher_uri", None)  # only the variants that need a teacher take it
    return params | {k: str(v) for k, v in tuned.get(curriculum, {}).items()}


def tuned_params(scfg: StudyConfig) -> dict[str, dict]:
    """Best parameters of finished tune studies, per curriculum (``-P from_study=smoothing:name,...``)."""
    if not scfg.from_study:
        return {}
    import optuna

    from clips.tuning.study import default_storage

    out = {}
    for curriculum, study_name in scfg.from_study.items():
        try:
            study = optuna.load_study(study_name=study_name, storage=scfg.storage or default_storage())
            out[curriculum] = study.best_params
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"from_study {curriculum}:{study_name}: no finished study of that name ({exc})") from None
    return out


def find_parent(client: MlflowClient, experiment_id: str, name: str):
    runs = client.search_runs([experiment_id], filter_string=f"tags.`clips.study_name` = '{name}' and "
                              "tags.`clips.role` = 'study_parent'", max_results=1)
    return runs[0] if runs else None


def finished_children(client: MlflowClient, experiment_id: str, parent_id: str) -> dict[str, object]:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and "
                              "attributes.status = 'FINISHED'", max_results=5000)
    return {r.data.tags.get("clips.study_key"): r for r in runs if r.data.tags.get("clips.study_key")}


def run_child(scfg: StudyConfig, parent_id: str, experiment_id: str, curriculum: str, seed: int, tuned: dict,
              log) -> str:
    from clips.training.trainer import train

    key = f"{curriculum}:{seed}"
    client = MlflowClient()
    run = client.create_run(experiment_id, run_name=f"{scfg.name()} {curriculum} seed {seed}", tags={
        "mlflow.parentRunId": parent_id, "clips.study_name": scfg.name(), "clips.study_key": key,
        "clips.role": "study_child"})
    log(f"[{scfg.name()}] training {key} (run {run.info.run_id})")
    train(build_config(child_params(scfg, curriculum, seed, tuned)), log=lambda *_: None, run_id=run.info.run_id)
    return run.info.run_id


def run_jobs(scfg: StudyConfig, parent_id: str, worker_index: int = 0, worker_count: int = 1, log=print) -> None:
    """Train this worker's share of the children that are not finished yet."""
    client = MlflowClient()
    parent = client.get_run(parent_id)
    exp = parent.info.experiment_id
    tuned = tuned_params(scfg)
    if needs_teacher(scfg):
        base = finished_children(client, exp, parent_id).get(f"{BASELINE}:0")
        if base is None:
            raise ConfigError(f"a variant needs a teacher: give teacher_uri, or let the study's {BASELINE}:0 child "
                              "finish first")
        for c in scfg.curricula:
            if get_curriculum(c).needs_teacher:
                tuned.setdefault(c, {})["teacher_uri"] = f"runs:/{base.info.run_id}/model"
    for i, (curriculum, seed) in enumerate(scfg.jobs()):
        if i % worker_count != worker_index:
            continue
        if f"{curriculum}:{seed}" in finished_children(client, exp, parent_id):
            log(f"[{scfg.name()}] {curriculum}:{seed} already finished: reused")
            continue
        try:
            run_child(scfg, parent_id, exp, curriculum, seed, tuned, log)
        except Exception as exc:  # noqa: BLE001 - one failed child must not stop the study
            log(f"[{scfg.name()}] {curriculum}:{seed} failed: {str(exc).splitlines()[0]}")


def run_study(scfg: StudyConfig, log=print, compare_out=None) -> dict:
    from clips.study.compare import compare_and_log

    check(scfg)
    client = MlflowClient()
    with mlflow.start_run() as active:  # a fresh run, or the one `mlflow run` made
        exp = active.info.experiment_id
        existing = find_parent(client, exp, scfg.name())
        if existing and existing.info.run_id != active.info.run_id:
            # Started again: continue the existing study; this run only points to it.
            mlflow.set_tags({"clips.role": "study_restart", "clips.continues": existing.info.run_id})
            parent_id = existing.info.run_id
        else:
            parent_id = active.info.run_id
            mlflow.set_tags({"clips.role": "study_parent", "clips.study_name": scfg.name()})
            mlflow.log_params({"study.curricula": ",".join(scfg.curricula), "study.seeds": scfg.seeds,
                               "study.split_seed": scfg.split_seed} | {f"train.{k}": v for k, v in scfg.train.items()})
        log(f"study {scfg.name()}: {len(scfg.jobs())} children, parent run {parent_id}")
        if needs_teacher(scfg):  # the baseline that teaches comes first
            if f"{BASELINE}:0" not in finished_children(client, exp, parent_id):
                run_child(scfg, parent_id, exp, BASELINE, 0, tuned_params(scfg), log)
        if scfg.workers > 1:
            _spawn(scfg, parent_id)
        else:
            run_jobs(scfg, parent_id, log=log)
    with mlflow.start_run(run_id=parent_id):
        return compare_and_log(client.get_run(parent_id).info.experiment_id, parent_id, compare_out, log)


def _spawn(scfg: StudyConfig, parent_id: str) -> None:
    from clips.tracking.workers import spawn_clips_workers

    common = ["--worker-count", str(scfg.workers), "--curricula", ",".join(scfg.curricula), "--seeds", str(scfg.seeds),
              "--study-name", scfg.name(), "--split-seed", str(scfg.split_seed)]
    common += [x for k, v in scfg.from_study.items() for x in ("--from-study", f"{k}:{v}")]
    common += [x for k, v in scfg.train.items() for x in ("-P", f"{k}={v}")]
    spawn_clips_workers([["study", "--worker-of", parent_id, "--worker-index", str(i), *common]
                         for i in range(scfg.workers)])
