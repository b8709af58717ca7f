"""Shared fixtures: a small generated cohort on real NIfTI files, and an isolated MLflow store."""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from clips.data.synth import SynthConfig, write_cohort

# Small and coarse so that the whole suite stays fast on 2 cores; the anatomy is the same.
TINY = SynthConfig(spacing_mm=(10.0, 10.0, 10.0))


@pytest.fixture(scope="session")
def tiny_cohort_master(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "tiny"
    write_cohort(out, patients=6, seed=7, cfg=TINY, log=lambda *_: None)
    return out


@pytest.fixture
def tiny_cohort(tiny_cohort_master, tmp_path) -> Path:
    """A private copy, so a test may damage it."""
    dst = tmp_path / "cohort"
    shutil.copytree(tiny_cohort_master, dst)
    return dst


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own CLIPS_HOME and a local SQLite MLflow store."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CLIPS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    # `mlflow run` and our subprocesses call `python`: make it this interpreter (the venv's).
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    yield home
    while mlflow.active_run():
        mlflow.end_run()


@contextlib.contextmanager
def fresh_database():
    """A fresh PostgreSQL database on 127.0.0.1:5432 (trust auth), dropped afterwards.

    Skipped only when no server answers on a developer machine; under CI=true a missing
    server is a failure, since CI's machine runs PostgreSQL.
    """
    import uuid

    import psycopg

    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({exc})")
    name = f"clips_test_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def pg_url():
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_url_module():
    """One database for a module's tests (test_server.py's one server)."""
    with fresh_database() as url:
        yield url
