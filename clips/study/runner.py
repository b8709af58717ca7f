"""A study: every curriculum x fold x seed as a child run of one parent, with the identical training recipe.

Children differ only in ``curriculum`` (and its options), ``seed`` and, in a cross-validated
study (``folds`` > 1), the fold that is their test set; the split is fixed by ``split_seed``
so every curriculum is tested on the same patients. The children are jobs of a queue in the
Optuna storage (``clips.scaling.queue``): the command that starts the study fills it and works
through it, ``clips study --join NAME --storage URL`` adds workers from any machine, and a
study started again continues where it stopped (a finished child is never trained again).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import mlflow
from mlflow.tracking import MlflowClient

from clips.config import build_config
from clips.curricula import BASELINE, REGISTRY, get_curriculum
from clips.data.splits import FOLDS_RULE, cross_validated, folds_allowed
from clips.errors import ClipsError, ConfigError, NotResumable, Preempted
from clips.scaling import preemption
from clips.scaling.devices import local_slots
from clips.scaling.machine import MACHINE_KEYS
from clips.scaling.queue import JobQueue
from clips.scaling.storage import default_storage, redact
from clips.scaling.worker_loop import close_dead_workers_runs, drain, spawn_on_slots
from clips.scaling.workers import machine_overrides, worker_name
from clips.stats.run_aware import MIN_SEEDS
from clips.study.config import CURRICULUM, PEER, REFERENCE, SELECTIONS, Job, StudyConfig
from clips.study.peer_arm import check_peers, run_peer, waits_for
from clips.study.reference import check_references, evaluate_reference
from clips.tracking import schema
from clips.tracking.privacy import Privacy
from clips.tracking.runs import inherited_tags, never_left_running


def check(scfg: StudyConfig) -> None:
    unknown = [c for c in scfg.curricula if c not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown curricula {unknown}; available: {', '.join(REGISTRY)}")
    if scfg.seeds < 1 or not folds_allowed(scfg.folds):
        raise ConfigError(f"seeds must be at least 1, and {FOLDS_RULE}")
    if scfg.selection not in SELECTIONS:
        raise ConfigError(f"selection {scfg.selection!r}: one of {', '.join(SELECTIONS)}")
    arms = scfg.arms()
    for contrast in scfg.contrasts:
        if contrast.count(":") != 1 or not all(arm in REGISTRY or arm in arms for arm in contrast.split(":")):
            raise ConfigError(f"contrast {contrast!r}: VARIANT:REFERENCE, both registered curricula, references "
                              "or peers")
        if set(contrast.split(":")) <= arms and scfg.seeds_through() < MIN_SEEDS:
            raise ConfigError(f"primary contrast {contrast} with {scfg.seeds_through()} seed(s) per fold cannot be "
                              "tested: one "
                              f"training's luck moves a whole fold, and it takes at least {MIN_SEEDS} seeds per fold "
                              f"to tell it from an effect (docs/study.md); give --seeds {MIN_SEEDS} or more, or "
                              "--exploratory true to declare no primary contrast")
    if scfg.sequential and not [c for c in scfg.contrasts if set(c.split(":")) <= arms]:
        raise ConfigError("a sequential study decides its declared primary contrasts: give --contrasts VARIANT:REF "
                          "(not --exploratory true)")
    if needs_teacher(scfg) and BASELINE not in scfg.curricula:
        raise ConfigError(f"a variant needs a teacher: give teacher_uri, or include the baseline {BASELINE}")
    check_references(scfg)
    check_peers(scfg)
    stand_ins = {c: get_curriculum(c).stand_in_values() for c in scfg.curricula} if needs_teacher(scfg) else {}
    trained = [j for j in scfg.jobs() if j.kind == CURRICULUM]
    for job in trained[:1] + [Job(c, max(scfg.folds - 1, -1), 0) for c in scfg.curricula]:
        build_config(child_params(scfg, job, stand_ins))  # every child's config is valid before the first trains


def needs_teacher(scfg: StudyConfig) -> bool:
    """A variant that needs a teacher, and no teacher_uri: the study's own baseline (seed 0) teaches."""
    return any(get_curriculum(c).needs_teacher for c in scfg.curricula) and not scfg.train.get("teacher_uri")


def child_params(scfg: StudyConfig, job: Job, tuned: dict) -> dict:
    params = dict(scfg.train) | {"curriculum": job.arm, "seed": str(job.seed),
                                 "split_seed": str(scfg.split_seed)}
    if scfg.vary_inner_split:
        params["val_split_seed"] = str(job.seed)
    if job.fold >= 0:
        params |= {"folds": str(scfg.folds), "fold": str(job.fold)}
    if scfg.selection == "last":
        params["val_fraction"] = "0"
    if not get_curriculum(job.arm).needs_teacher:
        params.pop("teacher_uri", None)  # only the variants that need a teacher take it
    return params | {k: str(v) for k, v in tuned.get(job.arm, {}).items()}


def teacher_job(scfg: StudyConfig, job: Job) -> Job:
    """The child that teaches ``job``: the baseline of the study's (or chunk's) first seed, trained on the same
    training patients (same fold)."""
    return Job(BASELINE, job.fold, scfg.first_seed)


def _needs_own_teacher(scfg: StudyConfig, job: Job) -> bool:
    return job.kind == CURRICULUM and needs_teacher(scfg) and get_curriculum(job.arm).needs_teacher


def prerequisite(scfg: StudyConfig, job: Job) -> Job | None:
    """The child ``job`` waits for: a variant's teacher, or the baseline whose wall time a peer's budget is;
    None when it waits for nothing."""
    if job.kind == PEER:
        return waits_for(scfg, job)
    return teacher_job(scfg, job) if _needs_own_teacher(scfg, job) else None


def tuned_params(scfg: StudyConfig) -> dict[str, dict]:
    """Best parameters of finished tune studies, per curriculum (``-P from_study=smoothing:name,...``)."""
    if not scfg.from_study:
        return {}
    import optuna

    out = {}
    for curriculum, study_name in scfg.from_study.items():
        try:
            study = optuna.load_study(study_name=study_name, storage=scfg.storage or default_storage())
            out[curriculum] = study.best_params
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"from_study {curriculum}:{study_name}: no finished study of that name ({exc})") from None
    return out


def find_parent(client: MlflowClient, experiment_id: str, name: str):
    runs = client.search_runs([experiment_id], filter_string=f"{schema.tag_is(schema.STUDY_NAME, name)} and "
                              f"{schema.tag_is(schema.ROLE, schema.STUDY_PARENT)}", max_results=1)
    return runs[0] if runs else None


def finished_children(client: MlflowClient, experiment_id: str, parent_id: str) -> dict[str, object]:
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and "
                              "attributes.status = 'FINISHED'", max_results=5000)
    return {r.data.tags.get(schema.STUDY_KEY): r for r in runs if r.data.tags.get(schema.STUDY_KEY)}


def resumable_attempt(client: MlflowClient, experiment_id: str, parent_id: str, job: Job) -> str | None:
    """The run of ``job``'s latest attempt when it did not finish (its worker died, was pre-empted, or failed) and
    has not been found unresumable: the next attempt continues it from its checkpoint, not from epoch 0."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and "
                              f"{schema.tag_is(schema.STUDY_KEY, job.key)}", order_by=["attributes.start_time DESC"],
                              max_results=1)
    if not runs or runs[0].info.status == "FINISHED" or schema.NOT_RESUMABLE in runs[0].data.tags:
        return None
    return runs[0].info.run_id


def _resume_child(scfg: StudyConfig, client: MlflowClient, previous: str, job: Job, tuned: dict, log, progress,
                  on_created) -> bool:
    """Continue ``previous`` (a dead attempt's run) from its checkpoint; False, with the reason on the run and in
    one line, when it cannot be (no checkpoint yet, a corrupt or foreign one, another recipe)."""
    from clips.training.trainer import train

    on_created(previous)
    client.set_tag(previous, schema.WORKER, worker_name())
    log(f"[{scfg.name()}] resuming {job.key} in its run {previous} from its checkpoint")
    try:
        train(build_config(child_params(scfg, job, tuned) | {"resume": previous}), log=progress, run_id=previous)
    except NotResumable as exc:
        reason = str(exc).splitlines()[0]
        client.set_tag(previous, schema.NOT_RESUMABLE, reason[:5000])
        if client.get_run(previous).info.status == "RUNNING":
            schema.mark_failed(client, previous, f"not resumable: {reason}")
        log(f"[{scfg.name()}] {job.key}: run {previous} cannot be resumed ({reason}); training it afresh in a new run")
        return False
    return True


@dataclass
class Child:
    """One child run being filled: what every kind of arm's runner gets (ARM_RUNNERS)."""

    scfg: StudyConfig
    job: Job
    run_id: str
    experiment_id: str
    parent_id: str
    tuned: dict  # per curriculum: tuned parameters, and a variant's teacher (_with_teacher)
    log: Callable[[str], None]  # the study's log
    progress: Callable[[str], None]  # a trainer's per-epoch lines, filtered and prefixed for the study's log


def _train_curriculum(child: Child) -> None:
    from clips.training.trainer import train

    train(build_config(child_params(child.scfg, child.job, child.tuned)), log=child.progress, run_id=child.run_id)


def _evaluate_reference(child: Child) -> None:
    scfg, job = child.scfg, child.job
    MlflowClient().set_tag(child.run_id, schema.REFERENCE, scfg.references[job.arm])
    evaluate_reference(scfg, job, child.run_id, child_params(scfg, Job(BASELINE, job.fold, job.seed), {}),
                       log=child.progress)
    MlflowClient().set_terminated(child.run_id, "FINISHED")


def _train_peer(child: Child) -> None:
    scfg, job = child.scfg, child.job
    waited = waits_for(scfg, job)
    baseline = (finished_children(MlflowClient(), child.experiment_id, child.parent_id).get(waited.key)
                if waited else None)
    if waited and baseline is None:
        raise ConfigError(f"{job.key} needs the wall time of {waited.key}, which did not finish")
    run_peer(scfg, job, child.run_id, child_params(scfg, Job(BASELINE, job.fold, job.seed), {}), baseline,
             log=child.log)


# How a child of each kind of arm fills its run (clips/study/config.py: CURRICULUM, REFERENCE, PEER); each logs the
# same per-patient suite under evaluation/test.
ARM_RUNNERS: dict[str, Callable[[Child], None]] = {CURRICULUM: _train_curriculum, REFERENCE: _evaluate_reference,
                                                   PEER: _train_peer}


def run_child(scfg: StudyConfig, parent_id: str, experiment_id: str, job: Job, tuned: dict, log,
              on_created=lambda run_id: None) -> str:
    client = MlflowClient()

    def progress(line: str) -> None:  # one line per epoch, with the time left, so a long study shows it lives
        if line.startswith("epoch") or line.startswith("resuming") or "checkpoint" in line:
            log(f"[{scfg.name()}] {job.key} {line}")

    # only a trained curriculum has a checkpoint to continue from
    previous = resumable_attempt(client, experiment_id, parent_id, job) if job.kind == CURRICULUM else None
    if previous is not None:
        with never_left_running(client, previous):
            if _resume_child(scfg, client, previous, job, tuned, log, progress, on_created):
                return previous
    fold = f" · fold {job.fold}" if job.fold >= 0 else ""
    run = client.create_run(experiment_id, run_name=f"{job.arm}{fold} · seed {job.seed}", tags={
        **inherited_tags(client.get_run(parent_id)), "mlflow.parentRunId": parent_id,
        schema.STUDY_NAME: scfg.name(), schema.STUDY_KEY: job.key, schema.FOLD: str(job.fold),
        schema.ROLE: schema.STUDY_CHILD, schema.WORKER: worker_name()})
    run_id = run.info.run_id
    on_created(run_id)
    log(f"[{scfg.name()}] training {job.key} (run {run_id})")
    with never_left_running(client, run_id):
        ARM_RUNNERS[job.kind](Child(scfg, job, run_id, experiment_id, parent_id, tuned, log, progress))
    return run_id


def _with_teacher(scfg: StudyConfig, job: Job, tuned: dict, parent_id: str, experiment_id: str) -> dict:
    """``tuned`` plus, for a variant that needs one, its fold's own baseline as the teacher."""
    if not _needs_own_teacher(scfg, job):
        return tuned
    teacher = teacher_job(scfg, job)
    base = finished_children(MlflowClient(), experiment_id, parent_id).get(teacher.key)
    if base is None:
        raise ConfigError(f"{job.key} needs its teacher {teacher.key}, which did not finish")
    own = dict(tuned.get(job.arm, {})) | {"teacher_uri": f"runs:/{base.info.run_id}/model"}
    return tuned | {job.arm: own}


# ----------------------------------------------------------------------------- the queue
def open_queue(scfg: StudyConfig, create: bool = False) -> JobQueue:
    return JobQueue(scfg.name(), scfg.storage, scfg.heartbeat_grace_s, on_dead_worker=close_dead_workers_runs,
                    create=create)


def cohort_digest_of(scfg: StudyConfig) -> tuple[str, str]:
    """(data folder, digest) of the cohort the children train on (preprocessed here once, cached for them)."""
    from clips.training.cohort import load_data

    first = next(j for j in scfg.jobs() if j.kind == CURRICULUM)
    root, cohort = load_data(build_config(child_params(scfg, first, {})), log=lambda *_: None)
    return str(root), cohort.digest


def work(scfg: StudyConfig, queue: JobQueue, parent_id: str, log=print, until_all_done: bool = False,
         poll_s: float = 2.0) -> None:
    """Take jobs from the queue and train them (clips/scaling/worker_loop.py: the loop every worker runs). A
    joining worker stops when nothing is left to take; the study's own command (``until_all_done``) also waits for
    jobs running elsewhere, and takes those that a dead worker gave back."""
    client = MlflowClient()
    exp = client.get_run(parent_id).info.experiment_id
    tuned = tuned_params(scfg)
    jobs = {j.key: j for j in scfg.jobs()}
    deadline = preemption.parse_deadline(scfg.deadline)
    name = f"[{scfg.name()}] "

    def keep_going() -> bool:
        if preemption.requested():
            log(f"{name}{preemption.requested()} received: this worker leaves before its next job")
            return False
        return deadline is None or _time_for_a_child(scfg, client, exp, parent_id, deadline, log)

    def ready():  # a job waits until its prerequisite (a teacher, a wall-time baseline) is settled
        status = queue.status()

        def settled(key: str) -> bool:
            job = jobs.get(key)
            before = prerequisite(scfg, job) if job is not None else None
            return job is not None and (before is None or status.get(before.key) in ("done", "failed"))

        return settled

    runs: dict[str, str] = {}

    def run_job(claim) -> None:
        job = jobs[claim.job]
        teacher = _with_teacher(scfg, job, tuned, parent_id, exp)
        runs[claim.job] = run_child(scfg, parent_id, exp, job, teacher, log,
                                    on_created=lambda rid: queue.set_attr(claim, "run_id", rid))

    def on_wait(waiting: int, running: int) -> None:
        log(f"{name}waiting: {waiting} queued (blocked on a teacher), {running} running elsewhere")

    try:
        drain(queue, run_job, ready=ready, until_all_done=until_all_done, poll_s=poll_s, keep_going=keep_going,
              on_wait=on_wait, on_done=lambda claim: log(f"{name}{claim.job} finished (run {runs[claim.job]})"),
              log=log, label=name)
    except Preempted:
        return


def _time_for_a_child(scfg: StudyConfig, client: MlflowClient, exp: str, parent_id: str, deadline: float,
                      log) -> bool:
    """Whether a child can finish before the worker's ``deadline``, judged by the median wall time of the study's
    finished children (unknown before the first: then yes); says why not in one line."""
    walls = sorted((r.info.end_time - r.info.start_time) / 1000
                   for r in finished_children(client, exp, parent_id).values() if r.info.end_time)
    left = deadline - time.time()
    needed = walls[len(walls) // 2] if walls else 0.0  # the upper middle of an even count: the cautious one
    if needed <= left:
        return True
    log(f"[{scfg.name()}] not claiming another job: a child takes about {needed / 60:.1f} min (the median of "
        f"{len(walls)} finished), {max(left, 0) / 60:.1f} min are left before this worker's deadline")
    return False


def run_study(scfg: StudyConfig, log=print, compare_out=None) -> dict:
    from clips.study.compare import compare_and_log

    check(scfg)
    client = MlflowClient()
    with mlflow.start_run() as active:  # a fresh run, or the one `mlflow run` made
        exp = active.info.experiment_id
        existing = find_parent(client, exp, scfg.name())
        if existing and existing.info.run_id != active.info.run_id:
            # Started again: continue the existing study; this run only points to it.
            mlflow.set_tags({schema.ROLE: schema.STUDY_RESTART, schema.CONTINUES: existing.info.run_id})
            parent_id = existing.info.run_id
        else:
            parent_id = active.info.run_id
            # named after the study (not MLflow's random adjective-animal), so the UI lists it by what it is
            mlflow.set_tags({schema.ROLE: schema.STUDY_PARENT, schema.STUDY_NAME: scfg.name(),
                             "mlflow.runName": scfg.name(), "mlflow.note.content": study_description(scfg)})
            design = {"curricula": ",".join(scfg.curricula), "seeds": scfg.seeds, "first_seed": scfg.first_seed,
                      "sequential": scfg.plan().describe(len(scfg.contrasts)) if scfg.sequential else "",
                      "baseline_seeds": scfg.seeds_of(BASELINE), "folds": scfg.folds, "selection": scfg.selection,
                      "contrasts": ",".join(scfg.contrasts), "split_seed": scfg.split_seed,  # CONTRASTS_PARAM
                      "vary_inner_split": scfg.vary_inner_split,
                      "references": ",".join(f"{k}={v}" for k, v in scfg.references.items()),
                      "peers": ",".join(scfg.peers),
                      "peer_options": ",".join(f"{k}={v}" for k, v in scfg.peer_options.items())}
            mlflow.log_params({schema.STUDY + k: v for k, v in design.items()}
                              | Privacy(scfg.train.get("privacy", "auto")).params(
                                  {schema.TRAIN + k: v for k, v in scfg.train.items()}))
        queue = open_queue(scfg, create=True)
        root, digest = cohort_digest_of(scfg)
        known = queue.meta.get("digest")
        if known and known != digest:
            raise ClipsError(f"study {scfg.name()!r} was started on a cohort with digest {known}; {root} has "
                             f"digest {digest}: continue it with the same data, or give another study_name")
        changed = design_changes(queue.meta.get("config"), scfg)
        if changed:  # grown or changed on a restart (e.g. a pilot's baseline seeds, then the arms): say so
            when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            history = client.get_run(parent_id).data.tags.get(schema.DESIGN_CHANGES, "")
            client.set_tag(parent_id, schema.DESIGN_CHANGES, (history + "; " if history else "") + f"{when}: {changed}")
            client.set_tag(parent_id, "mlflow.note.content", study_description(scfg))
            log(f"[{scfg.name()}] design changed on this restart: {changed}")
        declared = _declared_seeds(queue.meta, scfg)
        grown = unplanned_growth(declared, scfg)
        if grown:
            client.set_tag(parent_id, schema.EXPLORATORY, grown)
            log(f"[{scfg.name()}] every contrast is now exploratory: {grown}")
        queue.set_meta(config=scfg.to_dict(), parent_run_id=parent_id, experiment_id=exp, digest=digest,
                       tracking_uri=redact(mlflow.get_tracking_uri()), declared_seeds=declared)
        done = set(finished_children(client, exp, parent_id))  # finished before the queue existed
        earlier = earlier_chunks(scfg)
        if earlier is not None:
            reused = chunk_keys(earlier)
            done |= reused
            log(f"[{scfg.name()}] {len(reused)} children of earlier chunks "
                f"({', '.join(scfg.earlier_chunks)}): not trained again, analysed with this chunk's")
        plan = scfg.plan()
        rounds = [None] if plan is None else [s for s in scfg.seed_range(BASELINE) if s < plan.max_seeds]
        if plan is not None and earlier is not None and scfg.first_seed >= plan.min_seeds:
            # the looks of the earlier chunks decide whether this one is needed, and which arms it still trains
            if not _look(scfg, queue, parent_id, scfg.first_seed - 1, log, earlier):
                rounds = []
        for seed in rounds:  # a fixed design: every job at once; a sequential one: seed round by seed round
            if not _run_round(scfg, queue, parent_id, done, seed, log, earlier):
                break
        failed = {k: queue.errors(k)[-1] for k, v in queue.status().items() if v == "failed"}
        if failed:
            mlflow.set_tag(schema.FAILED_CHILDREN, ",".join(sorted(failed)))
            for key, reason in sorted(failed.items()):
                log(f"[{scfg.name()}] {key} failed for good: {reason}")
    with mlflow.start_run(run_id=parent_id):
        return compare_and_log(client.get_run(parent_id).info.experiment_id, parent_id, compare_out, log,
                               contrasts=scfg.contrasts, plan=scfg.plan(), earlier=earlier)


def earlier_chunks(scfg: StudyConfig):
    """The per-patient rows of the study's earlier chunks (``--earlier-chunks``), or None; every arm in them must be
    one of this study's."""
    if not scfg.earlier_chunks:
        return None
    from clips.study.compare import read_tables

    table, names = read_tables(scfg.earlier_chunks)
    arms = scfg.arms()
    foreign = sorted(set(table["curriculum"]) - arms)
    if foreign:
        raise ClipsError(f"{names}: arm(s) {', '.join(foreign)} of the earlier chunks are not arms of study "
                         f"{scfg.name()!r} ({', '.join(sorted(arms))}): is it the same study?")
    return table


def chunk_keys(table) -> set[str]:
    """The study keys (arm:fold:seed) of the children in a per-patient table."""
    runs = table[["curriculum", "fold", "seed"]].drop_duplicates()
    return {Job(c, int(f), int(s)).key for c, f, s in runs.itertuples(index=False)}


def _run_round(scfg: StudyConfig, queue: JobQueue, parent_id: str, done: set[str], seed: int | None, log,
               earlier=None) -> bool:
    """Queue and train the jobs of one seed round (``seed`` None: every job of a fixed design), then, in a
    sequential study, look; False when the study has reached its decision."""
    withdrawn = set(queue.meta.get("withdrawn", []))
    keys = [j.key for j in scfg.jobs() if (seed is None or j.seed == seed) and j.arm not in withdrawn]
    added = queue.fill(keys, done_elsewhere=done)
    status = queue.status()
    for key in [k for k in keys if k in done or status.get(k) == "done"]:
        log(f"[{scfg.name()}] {key} already finished: reused")
    for arm in sorted(withdrawn):
        log(f"[{scfg.name()}] {arm} was withdrawn: its jobs are not queued again")
    what = f"{len(keys)} children" if seed is None else f"seed round {seed}: {len(keys)} children"
    log(f"study {scfg.name()}: {what} ({added} queued now), parent run {parent_id}, queue in "
        f"{redact(scfg.storage or default_storage())}; more workers: clips study --join {scfg.name()} --storage "
        "<that storage>")
    spawn_on_slots(local_slots(scfg.workers, scfg.gpus, scfg.train), lambda i: join_args(scfg))
    work(scfg, queue, parent_id, log, until_all_done=True)
    preemption.check("before the study's next look; start the same command again to continue it")
    return seed is None or _look(scfg, queue, parent_id, seed, log, earlier)


def _look(scfg: StudyConfig, queue: JobQueue, parent_id: str, seed: int, log, earlier=None) -> bool:
    """A sequential study's look after seed round ``seed``: the primary contrasts' decisions (the looks table on
    the parent, under looks/), arms whose every contrast stopped withdrawn; False when every contrast stopped."""
    import tempfile

    from clips.study.compare import compare_and_log
    from clips.study.contrasts import contrast_arms

    plan = scfg.plan()
    if seed + 1 < plan.min_seeds:
        return True
    client = MlflowClient()
    with tempfile.TemporaryDirectory() as tmp:
        result = compare_and_log(client.get_run(parent_id).info.experiment_id, parent_id, tmp, lambda *_: None,
                                 contrasts=scfg.contrasts, plan=plan, log_to_active=False, earlier=earlier)
        client.log_artifact(parent_id, f"{tmp}/looks.csv", f"looks/after_seed_{seed}")
    rows = result["decisions"]
    rows = rows[rows["subset"] == "all"]
    client.set_tag(parent_id, schema.SEQUENTIAL, "; ".join(
        f"{r.contrast}: {r.decision} at {int(r.look)} seeds" for r in rows.itertuples())[:5000])
    for r in rows.itertuples():
        log(f"[{scfg.name()}] look after {seed + 1} seeds: {r.contrast}: {r.decision} "
            f"(p boundary {r.boundary:.4f}, Dice {r.estimate_naive:+.3f})")
    stopped = {contrast_arms(r.contrast): r.decision != "continue" for r in rows.itertuples()}
    arms = {a for pair in stopped for a in pair}
    done_arms = [a for a in sorted(arms) if all(v for pair, v in stopped.items() if a in pair)]
    withdrawn = set(queue.meta.get("withdrawn", []))
    if [a for a in done_arms if a not in withdrawn] and not all(stopped.values()):
        withdraw_arms(scfg.name(), [a for a in done_arms if a not in withdrawn], scfg.storage, log=log)
    if stopped and all(stopped.values()):
        log(f"[{scfg.name()}] every primary contrast has its decision after {seed + 1} seeds: the study stops")
        return False
    return True


def _declared_seeds(meta: dict, scfg: StudyConfig) -> int:
    """The seeds per fold the study first declared (kept in the queue; an older queue: its first design's)."""
    if meta.get("declared_seeds"):
        return int(meta["declared_seeds"])
    before = meta.get("config")
    return StudyConfig.from_dict(before).seeds_through() if before else scfg.seeds_through()


def unplanned_growth(declared: int, scfg: StudyConfig) -> str:
    """Why every contrast is exploratory ("" if not): a fixed-design study grown beyond its declared seeds."""
    if scfg.plan() is not None or scfg.seeds_through() <= declared:
        return ""
    return (f"the study grew from its declared {declared} to {scfg.seeds_through()} seeds per fold without a "
            "sequential plan; adding seeds after results could be seen is optional stopping, whose false-positive "
            "rate is above alpha (docs/study.md, 'Sequential studies')")


DESIGN_KEYS = ("curricula", "references", "peers", "first_seed", "seeds", "baseline_seeds", "folds", "contrasts",
               "selection", "vary_inner_split", "sequential")


def design_changes(before: dict | None, scfg: StudyConfig) -> str:
    """What a restart changes in the design ("" for none): a study may grow (more seeds, more arms) and keep
    its finished children; the parent's study.* parameters are the first design, this tag the later ones."""
    if not before:
        return ""
    now = scfg.to_dict()
    # a key the earlier design did not have (an older CLIPS) is not a change
    parts = [f"{k} {_shown(before[k])} -> {_shown(now[k])}" for k in DESIGN_KEYS if k in before and before[k] != now[k]]
    return ", ".join(parts)


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def study_description(scfg: StudyConfig) -> str:
    """The parent run's description in the UI: the design, the recipe, where the answer is."""
    design = ((f"{scfg.folds}-fold cross-validation" if cross_validated(scfg.folds) else "one split")
              + f", {scfg.seeds} seed(s)")
    if scfg.first_seed:
        design += f" from seed {scfg.first_seed} (a chunk: seeds {scfg.first_seed}-{scfg.seeds_through() - 1})"
    if scfg.seeds_of(BASELINE) > scfg.seeds:
        design += f" ({scfg.seeds_of(BASELINE)} for the baseline {BASELINE}, for the A/A calibration check)"
    if scfg.vary_inner_split:
        design += ", inner validation split varied with the seed"
    if scfg.references:
        design += ", fixed reference model(s) " + ", ".join(f"{k} ({v})" for k, v in scfg.references.items())
    if scfg.peers:
        design += ", peer arm(s) " + ", ".join(scfg.peers) + " (their own trainers, the same folds; clips/peers)"
    train = Privacy(scfg.train.get("privacy", "auto")).params(scfg.train)  # what the shared server may see
    recipe = ", ".join(f"{k}={v}" for k, v in sorted(train.items())) or "the profile's defaults"
    declared = (f"Primary contrasts: {', '.join(scfg.contrasts)}" if scfg.contrasts else
                "Exploratory: no primary contrast declared")
    return (f"**Study {scfg.name()}**: {len(scfg.curricula)} curricula ({', '.join(scfg.curricula)}), {design}, "
            f"checkpoint by {scfg.selection}; every child trained with one recipe: {recipe}.\n\n"
            f"{declared}; the A/A check (the baseline against itself) is declared to come out non-significant. "
            "The answer, with its intervals, calibration and power, is in the artifacts: comparison/report.html.")


def withdraw_arms(name: str, arms: list[str], storage: str = "", log=print) -> list[str]:
    """Withdraw ``arms`` from study ``name`` while it runs: their waiting jobs are cancelled through the queue
    (a child already training finishes and is kept), a restart does not queue them again, and the parent run
    records the withdrawal, when, and which children had finished by then (the results that could have been
    seen). Returns the cancelled jobs."""
    queue = JobQueue(name, storage)
    meta = queue.meta
    design = StudyConfig.from_dict(meta["config"])
    known = design.curricula + design.peers
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise ConfigError(f"study {name!r} has no arm {', '.join(unknown)}; its arms: {', '.join(known)}")
    status = queue.status()
    seen = sorted(k for k, v in status.items() if v == "done")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cancelled = queue.withdraw(lambda job: job.split(":")[0] in arms, f"withdrawn {when}")
    running = sorted(k for k, v in queue.status().items() if v == "running" and k.split(":")[0] in arms)
    client = MlflowClient()
    parent = meta["parent_run_id"]
    for arm in arms:
        mine = [j for j in cancelled if j.split(":")[0] == arm]
        client.set_tag(parent, f"{schema.WITHDRAWN}.{arm}", (
            f"{arm} withdrawn {when}: {len(mine)} waiting job(s) cancelled"
            + (f", {', '.join(r for r in running if r.startswith(arm + ':'))} left to finish" if running else "")
            + f"; {len(seen)} children had finished by then" + (f" ({', '.join(seen)})" if seen else ""))[:5000])
    before = client.get_run(parent).data.tags.get(schema.WITHDRAWN, "")
    client.set_tag(parent, schema.WITHDRAWN, ",".join(sorted(set(_names(before)) | set(arms))))
    queue.set_meta(withdrawn=sorted(set(meta.get("withdrawn", [])) | set(arms)))
    log(f"study {name}: withdrew {', '.join(arms)}: {len(cancelled)} waiting job(s) cancelled"
        + (f"; still running, kept: {', '.join(running)}" if running else "")
        + f"; {len(seen)} children had finished (recorded on the parent run {parent})")
    return cancelled


def _names(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def join_study(name: str, storage: str, workers: int = 1, gpus: str = "auto", machine: dict | None = None,
               log=print, deadline: str = "") -> None:
    """Work on study ``name`` from this machine until no job is left to take."""
    machine = machine_overrides(machine)
    probe = JobQueue(name, storage)
    meta = probe.meta
    scfg = StudyConfig.from_dict(meta["config"])
    scfg.storage, scfg.workers, scfg.gpus, scfg.deadline = storage, workers, gpus, deadline
    scfg.train = dict(scfg.train) | machine
    parent_id = meta["parent_run_id"]
    try:
        MlflowClient().get_run(parent_id)
    except Exception:  # noqa: BLE001 - not found, or the server refuses
        raise ClipsError(f"study {name!r}: its parent run {parent_id} is not in the tracking store "
                         f"{redact(mlflow.get_tracking_uri())}; set MLFLOW_TRACKING_URI to the study's "
                         f"({meta.get('tracking_uri')})") from None
    root, digest = cohort_digest_of(scfg)
    if digest != meta.get("digest"):
        raise ClipsError(f"study {name!r} trains on a cohort with digest {meta.get('digest')}; this machine's "
                         f"{root} has digest {digest}: every worker must have the same data")
    if not spawn_on_slots(local_slots(scfg.workers, scfg.gpus, scfg.train), lambda i: join_args(scfg)):
        work(scfg, open_queue(scfg), parent_id, log)


def join_args(scfg: StudyConfig) -> list[str]:
    """Command line of a local worker process of this study."""
    args = ["study", "--join", scfg.name(), "--storage", scfg.storage or default_storage(), "--workers", "1"]
    own = [k for k in MACHINE_KEYS if k in scfg.train and k != "threads"]  # threads: the slot's share
    deadline = ["--deadline", scfg.deadline] if scfg.deadline else []
    return args + deadline + [x for k in own for x in ("-P", f"{k}={scfg.train[k]}")]
