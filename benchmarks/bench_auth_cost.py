"""Benchmark: what MLflow's basic auth costs per request, against the same server without it, in one run.

    python benchmarks/bench_auth_cost.py [--requests 60] [--workers 1]

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres). Starts ``clips server start`` on free loopback
ports, once ``--no-auth`` and once with basic auth and its credential cache off, each on a fresh database, times
``--requests`` ``get_experiment`` calls through MLflow's client after a warm-up, and drops everything. The
basic-auth app checks the password hash (werkzeug's scrypt) on every request, which is what the ratio measures; a
third server with ``--auth-cache-ttl 30`` (CLIPS's default: MLflow's credential cache)
measures what the cache gives back.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import mlflow  # noqa: E402
import psycopg  # noqa: E402

from clips.tracking.server import health  # noqa: E402

ADMIN_DB = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "admin-pass-for-the-benchmark"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def per_request_s(auth: bool, requests: int, workers: int, tmp: Path, cache_ttl: int = 0) -> float:
    db = f"clips_bench_auth_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    port = _free_port()
    env = dict(os.environ, MLFLOW_AUTH_ADMIN_PASSWORD=PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY=uuid.uuid4().hex)
    cmd = [sys.executable, "-m", "clips", "server", "start", "--backend-store-uri",
           f"postgresql://postgres@127.0.0.1:5432/{db}", "--artifacts-destination", str(tmp / db), "--port", str(port),
           "--workers", str(workers), "--runtime-dir", str(tmp / "runtime"), "--auth" if auth else "--no-auth",
           "--auth-cache-ttl", str(cache_ttl)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while not health(url, timeout=1):
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the server ({'auth' if auth else 'no auth'}) did not come up")
            time.sleep(0.5)
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = "admin", PASSWORD
        client = mlflow.MlflowClient(url)
        exp = client.create_experiment("bench")
        for _ in range(5):
            client.get_experiment(exp)
        t0 = time.perf_counter()
        for _ in range(requests):
            client.get_experiment(exp)
        return (time.perf_counter() - t0) / requests
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        with psycopg.connect(ADMIN_DB, autocommit=True) as conn:
            for name in (db, f"{db}_auth"):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = per_request_s(False, args.requests, args.workers, Path(tmp))
        basic = per_request_s(True, args.requests, args.workers, Path(tmp))
        cached = per_request_s(True, args.requests, args.workers, Path(tmp), cache_ttl=30)
    print(f"per request: no auth {plain * 1000:.1f} ms, basic auth {basic * 1000:.1f} ms, basic auth with the "
          f"30 s credential cache {cached * 1000:.1f} ms; auth_vs_no_auth={basic / plain:.2f} "
          f"cached_vs_no_auth={cached / plain:.2f}")


if __name__ == "__main__":
    main()
