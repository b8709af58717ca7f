"""A study: every curriculum x fold x seed as a child run of one parent, with the identical training recipe.

Children differ only in ``curriculum`` (and its options), ``seed`` and, in a cross-validated
study (``folds`` > 1), the fold that is their test set; the split is fixed by ``split_seed``
so every curriculum is tested on the same patients. A study is found again by its name
(tag ``clips.study_name`` on the parent), so stopping and starting it reuses every finished
child; ``--workers K`` splits the remaining list over K processes.
"""
from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from clips.config import build_config
from clips.curricula import BASELINE, REGISTRY, get_curriculum
from clips.errors import ConfigError
from clips.study.config import Job, StudyConfig

SELECTIONS = ("inner_val", "last")


def check(scfg: StudyConfig) -> None:
    unknown = [c for c in scfg.curricula if c not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown curricula {unknown}; available: {', '.join(REGISTRY)}")
    if scfg.seeds < 1 or scfg.folds == 1 or scfg.folds < 0:
        raise ConfigError("seeds must be at least 1, and folds 0 (one split) or at least 2")
    if scfg.selection not in SELECTIONS:
        raise ConfigError(f"selection {scfg.selection!r}: one of {', '.join(SELECTIONS)}")
    for contrast in scfg.contrasts:
        if contrast.count(":") != 1 or not all(arm in REGISTRY for arm in contrast.split(":")):
            raise ConfigError(f"contrast {contrast!r}: VARIANT:REFERENCE, both registered curricula")
    if needs_teacher(scfg) and BASELINE not in scfg.curricula:
        raise ConfigError(f"a variant needs a teacher: give teacher_uri, or include the baseline {BASELINE}")
    stand_ins = {c: get_curriculum(c).stand_in_values() for c in scfg.curricula} if needs_teacher(scfg) else {}
    for job in scfg.jobs()[:1] + [Job(c, max(scfg.folds - 1, -1), 0) for c in scfg.curricula]:
        build_config(child_params(scfg, job, stand_ins))  # every child's config is valid before the first trains


def needs_teacher(scfg: StudyConfig) -> bool:
    """A variant that needs a teacher, and no teacher_uri: the study's own baseline (seed 0) teaches."""
    return any(get_curriculum(c).needs_teacher for c in scfg.curricula) and not scfg.train.get("teacher_uri")


def child_params(scfg: StudyConfig, job: Job, tuned: dict) -> dict:
    params = dict(scfg.train) | {"curriculum": job.curriculum, "seed": str(job.seed),
                                 "split_seed": str(scfg.split_seed)}
    if job.fold >= 0:
        params |= {"folds": str(scfg.folds), "fold": str(job.fold)}
    if scfg.selection == "last":
        params["val_fraction"] = "0"
    if not get_curriculum(job.curriculum).needs_teacher:
        params.pop("teacher_uri", None)  # only the variants that need a teacher take it
    return params | {k: str(v) for k, v in tuned.get(job.curriculum, {}).items()}


def teacher_job(job: Job) -> Job:
    """The child that teaches ``job``: the baseline, seed 0, trained on the same training patients (same fold)."""
    return Job(BASELINE, job.fold, 0)


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


def run_child(scfg: StudyConfig, parent_id: str, experiment_id: str, job: Job, tuned: dict, log) -> str:
    from clips.training.trainer import train

    client = MlflowClient()
    fold = f" · fold {job.fold}" if job.fold >= 0 else ""
    run = client.create_run(experiment_id, run_name=f"{job.curriculum}{fold} · seed {job.seed}", tags={
        "mlflow.parentRunId": parent_id, "clips.study_name": scfg.name(), "clips.study_key": job.key,
        "clips.fold": str(job.fold), "clips.role": "study_child"})
    log(f"[{scfg.name()}] training {job.key} (run {run.info.run_id})")
    train(build_config(child_params(scfg, job, tuned)), log=lambda *_: None, run_id=run.info.run_id)
    return run.info.run_id


def _with_teacher(scfg: StudyConfig, job: Job, tuned: dict, finished: dict) -> dict:
    """``tuned`` plus, for a variant that needs one, its fold's own baseline as the teacher."""
    if not (needs_teacher(scfg) and get_curriculum(job.curriculum).needs_teacher):
        return tuned
    base = finished.get(teacher_job(job).key)
    if base is None:
        raise ConfigError(f"{job.key} needs its teacher {teacher_job(job).key} finished first")
    own = dict(tuned.get(job.curriculum, {})) | {"teacher_uri": f"runs:/{base.info.run_id}/model"}
    return tuned | {job.curriculum: own}


def run_jobs(scfg: StudyConfig, parent_id: str, worker_index: int = 0, worker_count: int = 1, log=print) -> None:
    """Train this worker's share of the children that are not finished yet."""
    client = MlflowClient()
    exp = client.get_run(parent_id).info.experiment_id
    tuned = tuned_params(scfg)
    for i, job in enumerate(scfg.jobs()):
        if i % worker_count != worker_index:
            continue
        finished = finished_children(client, exp, parent_id)
        if job.key in finished:
            log(f"[{scfg.name()}] {job.key} already finished: reused")
            continue
        try:
            run_child(scfg, parent_id, exp, job, _with_teacher(scfg, job, tuned, finished), log)
        except Exception as exc:  # noqa: BLE001 - one failed child must not stop the study
            log(f"[{scfg.name()}] {job.key} failed: {str(exc).splitlines()[0]}")


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
                               "study.folds": scfg.folds, "study.selection": scfg.selection,
                               "study.contrasts": ",".join(scfg.contrasts), "study.split_seed": scfg.split_seed}
                              | {f"train.{k}": v for k, v in scfg.train.items()})
        log(f"study {scfg.name()}: {len(scfg.jobs())} children, parent run {parent_id}")
        if needs_teacher(scfg):  # the baselines that teach come first, one per fold
            for job in sorted({teacher_job(j) for j in scfg.jobs()}):
                if job.key not in finished_children(client, exp, parent_id):
                    run_child(scfg, parent_id, exp, job, tuned_params(scfg), log)
        if scfg.workers > 1:
            _spawn(scfg, parent_id)
        else:
            run_jobs(scfg, parent_id, log=log)
    with mlflow.start_run(run_id=parent_id):
        return compare_and_log(client.get_run(parent_id).info.experiment_id, parent_id, compare_out, log,
                               contrasts=scfg.contrasts)


def _spawn(scfg: StudyConfig, parent_id: str) -> None:
    from clips.tracking.workers import spawn_clips_workers

    common = ["--worker-count", str(scfg.workers), "--curricula", ",".join(scfg.curricula), "--seeds", str(scfg.seeds),
              "--folds", str(scfg.folds), "--selection", scfg.selection, "--contrasts", ",".join(scfg.contrasts),
              "--study-name", scfg.name(), "--split-seed", str(scfg.split_seed)]
    common += [x for k, v in scfg.from_study.items() for x in ("--from-study", f"{k}:{v}")]
    common += [x for k, v in scfg.train.items() for x in ("-P", f"{k}={v}")]
    spawn_clips_workers([["study", "--worker-of", parent_id, "--worker-index", str(i), *common]
                         for i in range(scfg.workers)])
