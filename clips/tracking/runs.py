"""Starting, resuming and describing MLflow runs.

Exactly one top-level ``mlflow.start_run`` per training: under ``mlflow run`` it
attaches to the run MLflow created (``MLFLOW_RUN_ID``); ``resume=<run id>`` reopens
that run; otherwise a new run is created. Runs are never looked up by name.
"""
from __future__ import annotations

import contextlib
import os
import random
import time

import mlflow
from mlflow.exceptions import MlflowException

from clips.errors import ClipsError, ConfigError, Preempted
from clips.tracking import schema
from clips.tracking.schema import DEFAULT_EXPERIMENT


def experiment_name(name: str = "") -> str:
    """What ``--experiment`` means in every command: the name given, else $MLFLOW_EXPERIMENT_NAME, else "clips"."""
    return name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def use_experiment(name: str = "") -> str | None:
    """Send this command's runs to experiment ``name`` (default: $MLFLOW_EXPERIMENT_NAME, else "clips") instead of
    MLflow's "Default". Created once even when several workers start together. Under ``mlflow run`` the run
    exists already (MLFLOW_RUN_ID) and keeps the experiment ``mlflow run --experiment-name`` gave it."""
    client = mlflow.MlflowClient()
    if os.environ.get("MLFLOW_RUN_ID"):
        _mark_model_training(client, client.get_run(os.environ["MLFLOW_RUN_ID"]).info.experiment_id)
        return None
    if not name and os.environ.get("MLFLOW_EXPERIMENT_ID"):
        _mark_model_training(client, os.environ["MLFLOW_EXPERIMENT_ID"])
        return None
    name = experiment_name(name)
    for attempt in range(5):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise ClipsError(f"experiment {name!r} is deleted: restore it in the UI, or choose another "
                                 "(--experiment NAME)")
            _mark_model_training(client, exp.experiment_id, exp.tags)
            break
        try:
            client.create_experiment(name)
        except MlflowException:  # another process created it a moment ago: read it again
            time.sleep(0.2 * (attempt + 1))
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    # the environment, not mlflow.set_experiment: a child process (a study's worker) inherits it
    os.environ["MLFLOW_EXPERIMENT_NAME"] = name
    return name


def inherited_tags(parent) -> dict[str, str]:
    """What a child run made with ``create_run`` takes from its parent: where the code came from (source, git
    commit) and who ran it, which MLflow only sets on runs it starts itself."""
    return {k: v for k, v in parent.data.tags.items() if k.startswith("mlflow.source.") or k == "mlflow.user"}


EXPERIMENT_KIND = "mlflow.experimentKind"  # what MLflow 3's UI reads to choose its view of an experiment


def _mark_model_training(client, experiment_id: str, tags: dict | None = None) -> None:
    """Open the experiment in the UI's model-training view (runs, charts), not the GenAI view MLflow 3 starts
    in; an experiment someone marked otherwise keeps its kind."""
    tags = client.get_experiment(experiment_id).tags if tags is None else tags
    if EXPERIMENT_KIND not in tags:
        try:
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, "custom_model_development")
        except MlflowException:  # a read-only account: the view is a convenience
            pass


def start_run(resume: str, run_id: str | None = None):
    """Return the active run for a training, honouring ``resume``; ``run_id`` attaches to a run made for us
    (a tuning trial, created with its parent)."""
    if run_id:
        try:
            return mlflow.start_run(run_id=run_id, nested=True)
        except MlflowException as exc:
            raise ClipsError(f"cannot attach to MLflow run {run_id}: {exc.message.splitlines()[0]}") from None
    if resume and resume.lower() not in ("true", "1", "yes", "last"):
        run_id = resume
    elif resume:
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if not run_id:
            raise ConfigError("resume=true needs the run to resume: 'mlflow run . --run-id RUN_ID -P resume=true' "
                              "or 'clips train --resume RUN_ID'")
    try:
        return mlflow.start_run(run_id=run_id)
    except MlflowException as exc:
        raise ClipsError(f"cannot start or resume the MLflow run at {mlflow.get_tracking_uri()}: "
                         f"{exc.message.splitlines()[0]}") from None


def log_params_once(params: dict[str, str], may_differ: tuple[str, ...] = ()) -> None:
    """Log params; on a resumed run, check that none changed (MLflow forbids overwriting) except those in
    ``may_differ`` (the machine's, and resume itself), which keep the first start's value."""
    run = mlflow.active_run()
    existing = mlflow.get_run(run.info.run_id).data.params
    changed = {k: (existing[k], v) for k, v in params.items()
               if k in existing and existing[k] != v and k not in may_differ}
    if changed:
        desc = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ConfigError(f"cannot resume run {run.info.run_id} with different parameters ({desc})")
    new = {k: v for k, v in params.items() if k not in existing}
    items = list(new.items())
    for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        mlflow.log_params(dict(items[i:i + 100]))


@contextlib.contextmanager
def run_context(resume: str, run_id: str | None = None):
    """:func:`start_run` as a context whose exit never hides the real error behind a lost server."""
    run = start_run(resume, run_id)
    status = "FINISHED"
    try:
        yield run
    except Preempted:
        status = "KILLED"  # told to leave: resumable from its checkpoint, not failed
        raise
    except BaseException:  # anything else, an interrupt included, ends the run FAILED; the exception goes on
        status = "FAILED"
        raise
    finally:
        try:
            mlflow.end_run(status)
        except Exception:  # noqa: BLE001 - the run stays RUNNING on the server; `clips runs reap` or a resume fixes it
            pass


# What a database says when two writers insert the same unique key at once (PostgreSQL, SQLite, MySQL).
_INSERT_RACE = ("IntegrityError", "UniqueViolation", "duplicate key", "UNIQUE constraint", "Duplicate entry")


def log_input(dataset, context: str, attempts: int = 5) -> None:
    """``mlflow.log_input``, tried again when another run registered the same dataset at the same moment.

    The tracking server looks for the dataset, then inserts it: two trainings of one cohort starting
    together can both insert and one gets the database's unique-key error (seen on the shared
    PostgreSQL server). Logging an input is idempotent, and the next try finds the dataset and only
    links it to this run."""
    for attempt in range(attempts):
        try:
            return mlflow.log_input(dataset, context=context)
        except MlflowException as exc:
            if attempt == attempts - 1 or not any(sign in str(exc) for sign in _INSERT_RACE):
                raise
            time.sleep(0.1 * 2**attempt * (1 + random.random()))  # jittered: the colliding run retries too


@contextlib.contextmanager
def never_left_running(client, run_id: str):
    """A run that any exception (an interrupt too: BaseException) leaves RUNNING ends FAILED with it, and the
    exception goes on: for runs made with the client around a training (study children, re-evaluation runs),
    which a training's own run_context cannot end when what fails is around it."""
    try:
        yield
    except BaseException as exc:  # an interrupt too: the run ends FAILED with it, and it goes on
        if client.get_run(run_id).info.status == "RUNNING":
            schema.mark_failed(client, run_id, f"{type(exc).__name__}: {exc}")
        raise
