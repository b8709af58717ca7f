"""A study: every curriculum x seed as a child run of one parent, with the identical training recipe.

Children differ only in ``curriculum`` (and its options) and ``seed``; the split is
fixed by ``split_seed`` so every child is tested on the same patients. A study is found
again by its name (tag ``clips.study_name`` on the parent), so stopping and starting it
reuses every finished child; ``--workers K`` splits the remaining list over K processes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import mlflow
from mlflow.tracking import MlflowClient

from clips.config import build_config
from clips.curricula import REGISTRY
from clips.errors import ConfigError

ALL_CURRICULA = ("none", "random", "anti", "predefined", "self_paced", "transfer_teacher", "rl_teacher", "smoothing")


@dataclass
class StudyConfig:
    curricula: list[str] = field(default_factory=lambda: list(ALL_CURRICULA))
    seeds: int = 3
    study_name: str = ""  # default clips-study-<profile>
    split_seed: int = 0
    workers: int = 1
    from_study: dict[str, str] = field(default_factory=dict)  # curriculum -> Optuna study name (best params)
    storage: str = ""  # Optuna storage of from_study (default: beside the MLflow store)
    train: dict = field(default_factory=dict)  # the shared recipe: profile, data_dir, epochs, teacher_uri, ...

    def name(self) -> str:
        return self.study_name or f"clips-study-{self.train.get('profile') or 'smoke'}"

    def jobs(self) -> list[tuple[str, int]]:
        jobs = [(c, s) for c in self.curricula for s in range(self.seeds)]
        return sorted(jobs, key=lambda j: j != ("none", 0))  # the baseline first: it may be the teacher


def check(scfg: StudyConfig) -> None:
    unknown = [c for c in scfg.curricula if c not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown curricula {unknown}; available: {', '.join(REGISTRY)}")
    if scfg.seeds < 1:
        raise ConfigError("seeds must be at least 1")
    for c in scfg.curricula:  # every child's config must be valid before the first one trains
        teacher = {"transfer_teacher": {"teacher_uri": "runs:/placeholder/model"}} if needs_teacher(scfg) else {}
        build_config(child_params(scfg, c, 0, teacher))


def needs_teacher(scfg: StudyConfig) -> bool:
    """transfer_teacher without a teacher_uri: the study's own baseline (none, seed 0) is the teacher."""
    return "transfer_teacher" in scfg.curricula and not scfg.train.get("teacher_uri")


def child_params(scfg: StudyConfig, curriculum: str, seed: int, tuned: dict) -> dict:
    params = dict(scfg.train) | {"curriculum": curriculum, "seed": str(seed), "split_seed": str(scfg.split_seed)}
    if curriculum != "transfer_teacher":
        params.pop("teacher_uri", None)  # only the teacher variant takes it
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


def run_child(scfg: StudyConfig, parent_id: str, experiment_id: str, curriculum: str, seed: int, tuned: dict, log) -> str:
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
        base = finished_children(client, exp, parent_id).get("none:0")
        if base is None:
            raise ConfigError("transfer_teacher needs teacher_uri, or the study's none:0 child finished first")
        tuned.setdefault("transfer_teacher", {})["teacher_uri"] = f"runs:/{base.info.run_id}/model"
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
        if needs_teacher(scfg):  # the baseline that teaches transfer_teacher comes first
            if "none:0" not in finished_children(client, exp, parent_id):
                run_child(scfg, parent_id, exp, "none", 0, tuned_params(scfg), log)
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
