"""The shared tracking server for real: PostgreSQL backend, served artifacts, basic auth, registry promotion."""
from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from clips.models import SegNet
from clips.registry.promote import promote
from clips.tracking.certificates import CA_ENV
from clips.tracking.model import log_segmentation_model
from clips.tracking.server import ServerConfig, health, probe

REPO = Path(__file__).resolve().parent.parent
ADMIN = ("admin", "admin-pass-for-tests")
SECRET_KEY = "flask-secret-for-tests"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, pg_url: str, tmp: Path, tls: tuple[Path, Path] | None = None):
        self.pg_url, self.tmp, self.tls = pg_url, tmp, tls
        self.port = _free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.proc = None
        self.env = dict(os.environ, MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1], MLFLOW_FLASK_SERVER_SECRET_KEY=SECRET_KEY)
        self.env.pop("MLFLOW_TRACKING_URI", None)

    def start(self):
        cmd = [sys.executable, "-m", "clips", "server", "start", "--backend-store-uri", self.pg_url,
               "--artifacts-destination", str(self.tmp / "artifacts"), "--port", str(self.port), "--workers", "2",
               "--runtime-dir", str(self.tmp / "runtime")]
        if self.tls:
            cmd += ["--certfile", str(self.tls[0]), "--keyfile", str(self.tls[1])]
        self.log = open(self.tmp / f"server-{time.time():.0f}.log", "w")
        # Its own process group: MLflow's server starts helper processes (job consumers) that must go with it.
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 90
        while not health(self.url, timeout=1):
            assert self.proc.poll() is None, Path(self.log.name).read_text()[-3000:]
            assert time.time() < deadline, "server did not come up"
            time.sleep(0.5)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:  # uvicorn's workers take 20 s to drain on SIGTERM; a test's outage needs no grace
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group
            except ProcessLookupError:
                pass
        if self.proc:
            self.log.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 only, made as a lab would make it."""
    out = tmp_path_factory.mktemp("tls")
    res = subprocess.run([sys.executable, "-m", "clips", "server", "make-cert", "--host", "127.0.0.1", "--out",
                          str(out)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0 and f"{CA_ENV}=" in res.stdout, res.stdout + res.stderr
    assert (out / "server.key").stat().st_mode & 0o777 == 0o600
    return out / "server.crt", out / "server.key"


@pytest.fixture(scope="module")
def running_server(pg_url_module, certificate, tmp_path_factory):
    """One HTTPS server for this module's tests (starting one costs tens of seconds on 2 cores); a test that
    stops it (restart, outage) leaves it running again or the next test's ``server`` starts it."""
    import psycopg

    srv = Server(pg_url_module, tmp_path_factory.mktemp("server"), tls=certificate)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CA_ENV, str(certificate[0]))
        srv.start()
    yield srv
    srv.stop()
    name = pg_url_module.rsplit("/", 1)[1] + "_auth"
    with psycopg.connect(pg_url_module.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def server(running_server, monkeypatch):
    """The module's server, up, with this test's client (and its subprocesses) pointed at it as the admin and
    trusting its certificate. Tests use experiments of their own names, so sharing the server shares nothing
    they assert on."""
    monkeypatch.setenv(CA_ENV, str(running_server.tls[0]))
    if running_server.proc is None or running_server.proc.poll() is not None:
        running_server.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", running_server.url)
    mlflow.set_tracking_uri(running_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    return running_server


def _as(user, password, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def _add_user(server, name, permission, experiment=""):
    """`clips server user add`, run in this process (the real command; a subprocess would only add start-up)."""
    from click.testing import CliRunner

    from clips.cli import cli

    args = ["server", "user", "add", name, "--permission", permission] + (["--experiment", experiment]
                                                                          if experiment else [])
    res = CliRunner().invoke(cli, args, env={"CLIPS_NEW_USER_PASSWORD": f"{name}-password-1"})
    assert res.exit_code == 0, res.output
    return res.output


def test_auth_permissions_and_concurrent_logging(server, tiny_cohort, monkeypatch):
    """Accounts at work, a two-arm study logged by two workers at once, and then what must not be on the server:
    no secret anywhere, no patient id or cohort path unless privacy=real says so."""
    # Anonymous requests are refused.
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{server.url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10,
                               context=ssl.create_default_context(cafile=str(server.tls[0])))
    assert err.value.code == 401

    exp_id = mlflow.MlflowClient().create_experiment("shared")
    assert "READ on experiment" in _add_user(server, "reader", "READ", "shared")
    _add_user(server, "writer", "EDIT", "shared")

    _as("reader", "reader-password-1", monkeypatch)
    assert mlflow.MlflowClient().get_experiment(exp_id).name == "shared"  # may read
    with pytest.raises(MlflowException, match="(?i)permission"):
        mlflow.MlflowClient().create_run(exp_id)

    _as("writer", "writer-password-1", monkeypatch)
    mlflow.MlflowClient().create_run(exp_id)  # may write

    # A study of two arms, its two trainings at once (two local workers), through the server: nothing lost.
    res = subprocess.run([sys.executable, "-m", "clips", "study", "--curricula", "none,random", "--seeds", "1",
                          "--exploratory", "true", "--workers", "2", "--study-name", "shared-study",
                          "--experiment", "shared", "-P", f"data_dir={tiny_cohort}", "-P", "model=tiny",
                          "-P", "epochs=3", "-P", "steps_per_epoch=2", "-P", "patch_size=32", "-P", "spacing_mm=10"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    outs = [res.stdout + res.stderr]
    assert res.returncode == 0, outs[0][-3000:]
    client = mlflow.MlflowClient()
    runs = client.search_runs([exp_id], filter_string="attributes.status = 'FINISHED' and params.`cfg.model` = 'tiny'")
    assert len(runs) == 2
    for run in runs:
        for key in ("train_loss", "val_dice", "samples_seen", "lr"):
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [0, 1, 2], key
        table = client.load_table(exp_id, "tables/val_per_patient.json", run_ids=[run.info.run_id])
        assert len(table) == 1
        # Nothing identifying reached the shared server: pseudonyms, and the mapping stays local.
        assert table["patient_id"].str.match(r"^P[0-9a-f]{12}$").all()
        assert run.data.tags["clips.privacy"].startswith("pseudo")
        split = Path(client.download_artifacts(run.info.run_id, "data/split.csv", str(tiny_cohort.parent)))
        assert "SYN0" not in split.read_text()
        mapping = pd.read_csv(Path(os.environ["CLIPS_HOME"]) / "runs" / run.info.run_id / "pseudonyms.csv")
        assert table["patient_id"].iloc[0] in set(mapping["pseudonym"])
        best = run.data.tags["clips.selected"].startswith("best validation")  # a validation found a lesion
        assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")} == (
            {"checkpoints/best.pt", "checkpoints/last.pt"} if best else {"checkpoints/last.pt"})
        assert type(mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")).__name__ == "SegNet"

    # Many runs of one cohort registering it at the same moment (a study's workers starting together):
    # the server checks, then inserts, so some collide on the unique key; every run still gets its input.
    _log_one_dataset_at_once(exp_id, 8)

    # No secret anywhere it should not be: run parameters and tags, the server's log, the trainings' output, the
    # generated auth config, the artifacts.
    secrets = [ADMIN[1], SECRET_KEY, "reader-password-1", "writer-password-1"]
    _as(*ADMIN, monkeypatch)
    logged = [str(r.data.params) + str(r.data.tags) for r in client.search_runs([exp_id])]
    places = {"runs' params and tags": "\n".join(logged), "trainings' output": "\n".join(outs),
              "server log": "\n".join(f.read_text() for f in server.tmp.glob("server-*.log")),
              "auth config": (server.tmp / "runtime" / "basic_auth.ini").read_text(),
              "artifacts": "\n".join(f.read_bytes().decode("latin-1") for f in (server.tmp / "artifacts").rglob("*")
                                     if f.is_file())}
    found = [(where, secret) for where, text in places.items() for secret in secrets if secret in text]
    assert not found, found

    # No patient id or cohort path reached the server with the default privacy: a scan of all it holds (both
    # databases, every artifact, text or binary) finds none; with privacy=real it finds them, so it can fail.
    ids = pd.read_csv(tiny_cohort / "cohort.csv")["patient_id"].astype(str).tolist()
    needles = [i.encode() for i in ids] + [str(tiny_cohort).encode(), str(tiny_cohort.resolve()).encode()]
    held = _everything_the_server_holds(server)
    assert _where([b"shared-study"], held)  # the study is there
    found = _where(needles, held)
    assert not found, f"found on the server: {found[:20]}"
    predictions = tiny_cohort.parent / "predictions"
    predictions.mkdir()
    for pid in ids:
        shutil.copyfile(tiny_cohort / pid / "SEG.nii.gz", predictions / f"{pid}.nii.gz")
    res = subprocess.run([sys.executable, "-m", "clips", "evaluate", "--data-dir", str(tiny_cohort), "--pred-dir",
                          str(predictions), "--out", str(tiny_cohort.parent / "eval"), "--mlflow", "--privacy", "real"],
                         cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, MLFLOW_EXPERIMENT_NAME="shared"))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    found = _where(needles, _everything_the_server_holds(server))
    assert {f.split(" in ")[0] for f in found} >= {*ids, str(tiny_cohort)}, found


def _log_one_dataset_at_once(exp_id: str, n: int) -> None:
    import threading

    from clips.tracking.runs import log_input

    client = mlflow.MlflowClient()
    run_ids = [client.create_run(exp_id).info.run_id for _ in range(n)]
    ds = mlflow.data.from_pandas(pd.DataFrame({"patient_id": ["A", "B"]}), source="/cohort", name="race",
                                 digest=f"{time.time_ns():x}"[-8:])
    gate, errors = threading.Barrier(n), []

    def log(run_id):
        with mlflow.start_run(run_id=run_id):  # the active run is per thread
            gate.wait()
            try:
                log_input(ds, context="training")
            except Exception as exc:  # reported below, with every other thread's
                errors.append(f"{type(exc).__name__}: {str(exc)[:300]}")

    threads = [threading.Thread(target=log, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    for run_id in run_ids:
        assert [d.dataset.digest for d in client.get_run(run_id).inputs.dataset_inputs] == [ds.digest]


def _run_with_test_table(exp_id: str, dice: np.ndarray, tmtv_err: np.ndarray) -> str:
    """A finished run with a logged model and a test table constructed so that the answer is known."""
    ids = [f"P{i:02d}" for i in range(len(dice))]
    table = pd.DataFrame({"patient_id": ids, "dice": dice, "tmtv_true_ml": 100.0, "tmtv_pred_ml": 100.0 + tmtv_err})
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_table(table, "tables/test_per_patient.json")
        mlflow.log_metric("test_dice_mean", float(dice.mean()))
        log_segmentation_model(SegNet("tiny"), {"spacing_mm": [10, 10, 10], "patch_size": [32, 32, 32],
                                                "model": "tiny", "sw_overlap": 0.25})
    return run.info.run_id


def test_promotion_restart_and_predict(server, tiny_cohort, tmp_path, monkeypatch):
    exp_id = mlflow.MlflowClient().create_experiment("promotion")
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.6, 10)
    run_a = _run_with_test_table(exp_id, base, rng.uniform(5, 10, 10))
    first = promote("promotion")
    assert first.promoted and first.run_id == run_a and "first version" in first.reason

    run_b = _run_with_test_table(exp_id, base + 0.1, rng.uniform(5, 10, 10))  # better on every patient
    second = promote("promotion")
    assert second.run_id == run_b and second.promoted, second
    assert second.evidence["p_dice_better"] < 0.01 and second.evidence["patients_dice_improved"] == 10

    run_c = _run_with_test_table(exp_id, base + 0.12, rng.uniform(80, 90, 10))  # a bit better Dice, TMTV far off
    third = promote("promotion")
    assert third.run_id == run_c and not third.promoted and "TMTV error significantly worse" in third.reason

    client = mlflow.MlflowClient()
    alias = {a: client.get_model_version_by_alias("clips-tmtv", a) for a in ("champion", "challenger", "previous")}
    assert alias["champion"].run_id == run_b and alias["challenger"].run_id == run_c
    assert alias["previous"].run_id == run_a
    tags = client.get_model_version("clips-tmtv", third.version).tags
    assert tags["clips.decision"] == "not promoted" and float(tags["clips.evidence.p_tmtv_error_worse"]) < 0.05

    # Restart against the same database and artifact folder: runs and models are still served.
    server.stop()
    server.start()
    assert client.get_run(run_b).info.status == "FINISHED"
    net = mlflow.pytorch.load_model("models:/clips-tmtv@champion")
    assert type(net).__name__ == "SegNet"

    out = tmp_path / "mask.nii.gz"
    res = subprocess.run([sys.executable, "-m", "clips", "predict", "--model", "models:/clips-tmtv@champion",
                          "--input", str(tiny_cohort / "SYN0001"), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    import nibabel as nib

    mask, pet = nib.load(out), nib.load(tiny_cohort / "SYN0001" / "SUV.nii.gz")
    assert mask.shape == pet.shape and np.allclose(mask.affine, pet.affine)
    report = (tmp_path / "mask_report.txt").read_text()
    assert "TMTV" in report and f"version {alias['champion'].version}" in report


def test_unreachable_server_fails_at_once_naming_it(tiny_cohort, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=url)
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "clips", "train", "--data-dir", str(tiny_cohort)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and url in res.stderr and "does not answer" in res.stderr
    assert "Traceback" not in res.stderr and time.time() - t0 < 60


def test_missing_secrets_are_a_clear_error(pg_url, tmp_path):
    secrets = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    res = subprocess.run([sys.executable, "-m", "clips", "server", "start", "--backend-store-uri", pg_url,
                          "--print-command"], cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and "MLFLOW_AUTH_ADMIN_PASSWORD" in res.stderr
    env["MLFLOW_AUTH_ADMIN_PASSWORD"] = "x"
    env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "y"
    res = subprocess.run([sys.executable, "-m", "clips", "server", "start", "--backend-store-uri", pg_url,
                          "--print-command", "--runtime-dir", str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    import psycopg

    with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:  # start made it
        conn.execute(f'DROP DATABASE IF EXISTS "{pg_url.rsplit("/", 1)[1]}_auth" WITH (FORCE)')
    assert "--app-name basic-auth" in res.stdout and "--serve-artifacts" in res.stdout
    ttl = ServerConfig().auth_cache_ttl_s  # MLflow's credential cache, on by default
    assert ttl > 0 and f"auth_cache_ttl_seconds = {ttl}" in (tmp_path / "basic_auth.ini").read_text()
    # a secret file others can read is refused, naming it; the owner-only one is taken
    loose = tmp_path / "admin_password"
    loose.write_text("s3cret\n")
    loose.chmod(0o644)
    args = [sys.executable, "-m", "clips", "server", "start", "--backend-store-uri", pg_url, "--print-command",
            "--runtime-dir", str(tmp_path), "--admin-password-file", str(loose)]
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and f"{loose} is readable by others (mode 0644): chmod 600" in res.stderr
    loose.chmod(0o600)
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "x" not in (tmp_path / "basic_auth.ini").read_text().split("admin_username")[0].split("=")[-1]


def test_reap_marks_dead_runs_failed(tmp_path):
    from click.testing import CliRunner

    from clips.cli import cli

    client = mlflow.MlflowClient()
    exp = client.create_experiment("reap")
    dead = client.create_run(exp, start_time=int((time.time() - 5 * 3600) * 1000)).info.run_id
    alive = client.create_run(exp).info.run_id
    res = CliRunner().invoke(cli, ["runs", "reap", "--older-than", "2"])
    assert res.exit_code == 0 and dead in res.output and alive not in res.output
    assert client.get_run(dead).info.status == "FAILED" and client.get_run(alive).info.status == "RUNNING"
    assert "reaped" in client.get_run(dead).data.tags["clips.failure"]


def _steps(client, run_id, key="train_loss"):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_server_outage_during_training(server, tiny_cohort, monkeypatch):
    """The server stops mid-training: first it comes back in time, then it stays away too long."""
    client = mlflow.MlflowClient()
    # A stopped server refuses connections at once; the timeout only bounds a slow answer, and 3 s was too
    # short for a loaded 2-core machine (the start-up check timed out while the server was up).
    env = dict(os.environ, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="15",
               MLFLOW_EXPERIMENT_NAME="outage")
    base = [sys.executable, "-m", "clips", "train", "--data-dir", str(tiny_cohort), "-P", "model=tiny",
            "-P", "epochs=5", "-P", "steps_per_epoch=3", "-P", "patch_size=32", "-P", "spacing_mm=10"]
    client.create_experiment("outage")

    def run_until_two_epochs(extra):
        proc = subprocess.Popen(base + extra, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id],
                                      filter_string="attributes.status = 'RUNNING'")
            if runs and len(_steps(client, runs[0].info.run_id)) >= 2:
                return proc, runs[0].info.run_id
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            time.sleep(0.3)
        pytest.fail("training did not get going")

    # 1. Back in time: training goes on, buffers, uploads, and finishes the run.
    proc, run_id = run_until_two_epochs(["-P", "seed=1"])
    server.stop()
    time.sleep(4)
    server.start()
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "tracking server unreachable" in out and "pending logging operation(s) uploaded" in out
    assert _steps(client, run_id) == list(range(5)) and _steps(client, run_id, "val_dice") == list(range(5))
    assert client.get_run(run_id).info.status == "FINISHED"

    # 2. Away for longer than outage_wait_min: a clear stop, everything kept, resume uploads it.
    proc, run_id = run_until_two_epochs(["-P", "seed=2", "-P", "outage_wait_min=0.05"])
    server.stop()
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 2 and f"clips train --resume {run_id}" in out and "Traceback" not in out
    server.start()
    res = subprocess.run(base + ["-P", "seed=2", "-P", "outage_wait_min=0.05", "--resume", run_id], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert _steps(client, run_id) == list(range(5))  # no epoch lost, none twice
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "test_dice_mean" in run.data.metrics


def test_https_only_and_certificate_problems_in_one_line(server, monkeypatch, tmp_path):
    from clips.tracking.certificates import explain

    assert health(server.url)  # with the certificate trusted
    plain = server.url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, OSError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(plain + "/health", timeout=10)  # no answer in clear, no redirect
    assert "does not answer" in probe(plain) and "an https:// server?" in probe(plain)

    def reap(url, trust: bool):
        env = {k: v for k, v in os.environ.items() if k != CA_ENV} | {"MLFLOW_TRACKING_URI": url}
        if trust:
            env[CA_ENV] = str(server.tls[0])
        return subprocess.run([sys.executable, "-m", "clips", "runs", "reap", "--older-than", "1"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)

    untrusted = reap(server.url, trust=False)  # a client that does not have the lab's certificate
    assert untrusted.returncode == 2 and "Traceback" not in untrusted.stderr, untrusted.stderr
    line = untrusted.stderr.strip()
    assert len(line.splitlines()) == 1 and server.url in line and CA_ENV in line and "certificate" in line
    wrong_name = server.url.replace("127.0.0.1", "localhost")  # the certificate lists 127.0.0.1 only
    res = reap(wrong_name, trust=True)
    assert res.returncode == 2 and wrong_name in res.stderr and "make-cert --host" in res.stderr, res.stderr
    assert reap(server.url, trust=True).returncode == 0
    expired = ssl.SSLCertVerificationError(1, "certificate verify failed")
    expired.verify_message = "certificate has expired"
    assert "renew" in explain(server.url, expired)


MATRIX = ("<!-- permission-matrix -->", "<!-- /permission-matrix -->")


def permission_matrix() -> tuple[list[str], dict[str, dict[str, bool]]]:
    """tracking_server/README.md's table: (its columns, {action: {column: allowed}})."""
    text = (REPO / "tracking_server" / "README.md").read_text()
    lines = text.split(MATRIX[0])[1].split(MATRIX[1])[0].strip().splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    columns = cells[0][1:]
    return columns, {row[0]: dict(zip(columns, (c == "yes" for c in row[1:]), strict=True)) for row in cells[2:]}


def test_permission_matrix(server, monkeypatch):
    """Every cell of the README's table, tried against the real server as that user."""
    from mlflow.server import get_app_client

    columns, rows = permission_matrix()
    admin = mlflow.MlflowClient()
    auth = get_app_client("basic-auth", tracking_uri=server.url)
    exp_id = admin.create_experiment("matrix")
    model = "matrix-model"
    admin.create_registered_model(model)
    source_run = admin.create_run(exp_id).info.run_id
    version = admin.create_model_version(model, f"runs:/{source_run}/model", run_id=source_run).version
    users = {"admin": ADMIN}
    for i, column in enumerate(columns[1:]):
        name, password = f"matrix-user-{i}", f"matrix-password-{i}-long"
        auth.create_user(name, password)
        if column in ("READ", "EDIT", "MANAGE", "DENY"):
            auth.grant_user_permission(name, "experiment", exp_id, column)
            auth.grant_user_permission(name, "registered_model", model, column)
        users[column] = (name, password)

    def fresh_run():
        _as(*ADMIN, monkeypatch)
        return admin.create_run(exp_id).info.run_id

    actions = {
        "read the experiment and its runs": lambda c, run: (c.get_experiment(exp_id), c.get_run(source_run)),
        "create a run in it": lambda c, run: c.create_run(exp_id),
        "delete a run of it": lambda c, run: c.delete_run(run),
        "register a new version of the model": lambda c, run: c.create_model_version(
            model, f"runs:/{source_run}/model", run_id=source_run),
        "move the model's alias": lambda c, run: c.set_registered_model_alias(model, "champion", version),
        "create an account": lambda c, run: get_app_client("basic-auth", tracking_uri=server.url).create_user(
            f"new-{time.time_ns()}", "new-account-password-1"),
    }
    assert set(actions) == set(rows), "the README's rows and the test's actions differ"
    wrong = []
    for action, expected in rows.items():
        for column, allowed in expected.items():
            run = fresh_run()
            _as(*users[column], monkeypatch)
            try:
                actions[action](mlflow.MlflowClient(), run)
                happened = True
            except MlflowException as exc:
                assert "permission" in str(exc).lower() or exc.get_http_status_code() in (401, 403), str(exc)[:300]
                happened = False
            if happened != allowed:
                wrong.append(f"{action} as {column}: {'allowed' if happened else 'refused'}")
    assert not wrong, wrong


def _everything_the_server_holds(server) -> dict[str, bytes]:
    """Every row of every table of its two databases (runs, registry, accounts) and every artifact file, as bytes,
    by where it is (``db:<table>``, ``artifact:<path>``)."""
    import psycopg

    held = {}
    for db in (server.pg_url, server.pg_url + "_auth"):
        with psycopg.connect(db) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
            for table in tables:
                held[f"db:{table}"] = b"\n".join(repr(row).encode() for row in conn.execute(f'SELECT * FROM "{table}"'))
    root = server.tmp / "artifacts"
    # an artifact's path counts too (a report named after a patient would leak the id)
    held |= {f"artifact:{f.relative_to(root)}": str(f.relative_to(root)).encode() + b"\n" + f.read_bytes()
             for f in root.rglob("*") if f.is_file()}
    return held


def _where(needles: list[bytes], held: dict[str, bytes]) -> list[str]:
    return sorted({f"{n.decode()} in {place}" for n in needles for place, data in held.items() if n in data})
