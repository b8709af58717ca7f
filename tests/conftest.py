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


@pytest.fixture(scope="session")
def nnunet_study(tiny_cohort_master, tmp_path_factory):
    """One tiny study with the nnU-Net peer arm (real nnU-Net v2: plan, preprocess, train 1 epoch x 3 steps,
    predict) beside a trained baseline, on its own home and store; shared by the peer arm's test and the
    model-import tests (tests/test_nnunet_models.py), which point their environment at ``env``."""
    import types

    import mlflow
    import mlflow.tracking.fluent

    from clips.study.runner import StudyConfig, run_study

    root = tmp_path_factory.mktemp("nnunet_study")
    cohort = root / "cohort"
    shutil.copytree(tiny_cohort_master, cohort)
    env = {"CLIPS_HOME": str(root / "home"), "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"}
    train = {"data_dir": str(cohort), "model": "tiny", "epochs": "1", "steps_per_epoch": "3", "patch_size": "32",
             "spacing_mm": "10", "threads": "2"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.tracking.fluent._active_experiment_id = None
    try:
        run_study(StudyConfig(curricula=["none"], peers=["nnunet"], seeds=1, study_name="peer", contrasts=[],
                              peer_options={"nnunet.val_iterations": "1"}, train=train),
                  log=lambda *_: None, compare_out=root / "report")
    finally:
        for k, v in before.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        mlflow.tracking.fluent._active_experiment_id = None  # isolated_home sets the test's own store next
    return types.SimpleNamespace(root=root, env=env, cohort=cohort, report=root / "report", train=train)


@pytest.fixture
def in_nnunet_study(nnunet_study, monkeypatch):
    """This test's environment on the shared nnU-Net study's home and store."""
    import mlflow
    import mlflow.tracking.fluent

    for k, v in nnunet_study.env.items():
        monkeypatch.setenv(k, v)
    mlflow.set_tracking_uri(nnunet_study.env["MLFLOW_TRACKING_URI"])
    mlflow.tracking.fluent._active_experiment_id = None
    return nnunet_study


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own CLIPS_HOME and a local SQLite MLflow store."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("CLIPS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    # mlflow.set_experiment in an earlier test sets MLFLOW_EXPERIMENT_ID in os.environ and a module global: an id
    # of that test's store, unknown to this one's (and to its subprocesses)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    # `mlflow run` and our subprocesses call `python`: make it this interpreter (the venv's).
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    import mlflow
    import mlflow.tracking.fluent

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.tracking.fluent._active_experiment_id = None
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


# ----------------------------------------------------------------------------- the suite's time, and the machine's
# The same suite took 18 and 25 minutes on two CI runs of one machine (its speed varies by tens of per cent), so a
# suite time means little alone: a full run also times the study profile's training step (benchmarks/bench_step.py)
# at its start and end, and the summary states the suite's time in those steps too.
FULL_SUITE = 100  # tests collected: below this (a module, a -k selection) nothing is timed
_clock: dict = {}


def _study_step_s(threads: int) -> float:
    import torch

    from benchmarks.bench_step import make_step, seconds

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return seconds(make_step(48, 2), repeats=3)
    finally:
        torch.set_num_threads(before)


def pytest_sessionstart(session):
    import time

    _clock["session_start"] = time.perf_counter()  # as pytest's own "in N s" counts: collection included


def pytest_collection_finish(session):
    if len(session.items) >= FULL_SUITE and not session.config.option.collectonly:
        import torch

        _clock["threads"] = torch.get_num_threads()
        _clock["step_start"] = _study_step_s(_clock["threads"])
        _clock["t0"] = _clock["session_start"]


def pytest_terminal_summary(terminalreporter):
    if "t0" not in _clock:
        return
    import time

    wall = time.perf_counter() - _clock["t0"]
    end = _study_step_s(_clock["threads"])
    mean = (_clock["step_start"] + end) / 2
    terminalreporter.write_line(
        f"suite time: {wall:.0f} s ({wall / 60:.1f} min); the machine: one study-profile training step took "
        f"{_clock['step_start']:.3f} s at the start and {end:.3f} s at the end ({_clock['threads']} threads), "
        f"so the suite took {wall / mean:.0f} study steps")
