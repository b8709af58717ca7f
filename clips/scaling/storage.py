"""The Optuna storage that studies and tuning share: SQLite beside the MLflow store, or any database URL."""
from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import optuna

from clips.errors import ClipsError
from clips.paths import clips_home


def default_storage() -> str:
    """A SQLite file beside the MLflow store (or under $CLIPS_HOME for a remote store)."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).parent / 'optuna.db'}"
    return f"sqlite:///{clips_home() / 'optuna.db'}"


def redact(url: str) -> str:
    p = urlparse(url)
    return url.replace(f":{p.password}@", ":***@") if p.password else url


def heartbeat_interval(grace_s: int) -> int:
    """Three beats per grace period: one lost beat (a busy database) never fails a live worker."""
    return max(1, grace_s // 3)


def open_storage(url: str, grace_s: int, on_stale=None) -> optuna.storages.RDBStorage:
    """The storage at ``url`` (default: beside the MLflow store) with heartbeats; ``on_stale(study, trial)`` runs
    for each trial whose worker stopped beating for ``grace_s`` seconds, once it is marked failed."""
    url = url or default_storage()
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9; a warning per worker
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, grace_period=grace_s,
                                                 heartbeat_interval=heartbeat_interval(grace_s),
                                                 heartbeat_stale_trial_callback=on_stale)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many types for an unreachable database
        raise ClipsError(f"cannot open the Optuna storage {redact(url)}: {str(exc).splitlines()[0]}") from None
    if url.startswith("sqlite"):
        _serialise_sqlite(storage.engine)
    return storage


def _serialise_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    A claim reads a trial's state and writes it: PostgreSQL locks the row (SELECT ... FOR UPDATE), but SQLite
    ignores FOR UPDATE and its deferred transactions let two processes both read WAITING and both take the job
    (measured: 1 job in 12 run twice by 4 workers, one time in three). This is SQLAlchemy's documented recipe
    for serialisable SQLite transactions; a local queue has a few workers, so the lost concurrency is nothing.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let the "begin" event below emit BEGIN itself

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
