"""Load benchmark: 4 processes log short trainings to one tracking server on PostgreSQL at once.

    python benchmarks/bench_server_load.py [--processes 4] [--rounds 2] [--json OUT.json]

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres), as on the project's
machines. It creates its own databases, starts ``clips server start`` (auth on) on a
free loopback port, runs the rounds, counts what arrived, and drops everything. Each
process trains the tiny network on a generated 6-patient cohort (3 epochs of 2 steps),
so the figures measure the server path (params, per-epoch metrics, checkpoints, tables,
figures, a model), not training.
"""
from __future__ import annotations

import argparse
import json
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

EPOCHS = 3
PER_EPOCH_KEYS = ("train_loss", "train_loss_dice", "train_loss_ce", "train_loss_ms", "lr", "samples_seen",
                  "fraction_in_play", "val_dice", "epoch_time_s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    import mlflow
    import psycopg

    from clips.data.synth import SynthConfig, write_cohort
    from clips.tracking.server import health

    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="clips-load-"))
    db = f"clips_load_{uuid.uuid4().hex[:8]}"
    pg = f"postgresql://postgres@127.0.0.1:5432/{db}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    password = uuid.uuid4().hex
    env = dict(os.environ, MLFLOW_AUTH_ADMIN_PASSWORD=password, MLFLOW_FLASK_SERVER_SECRET_KEY=uuid.uuid4().hex,
               CLIPS_HOME=str(tmp / "home"), MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME="admin",
               MLFLOW_TRACKING_PASSWORD=password, MLFLOW_EXPERIMENT_NAME="load",
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    write_cohort(tmp / "cohort", 6, 7, SynthConfig(spacing_mm=(10.0,) * 3), log=lambda *_: None)
    server = subprocess.Popen([sys.executable, "-m", "clips", "server", "start", "--backend-store-uri", pg,
                               "--artifacts-destination", str(tmp / "artifacts"), "--port", str(port), "--workers", "4",
                               "--runtime-dir", str(tmp / "runtime")], cwd=REPO, env=env,
                              stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    result = {"processes": args.processes, "rounds": [], "epochs_per_run": EPOCHS}
    try:
        deadline = time.time() + 90
        while not health(url, 1):
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit("server did not start:\n" + (tmp / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                               "MLFLOW_TRACKING_PASSWORD")})
        mlflow.set_tracking_uri(url)
        client = mlflow.MlflowClient()
        client.create_experiment("load")
        cmd = [sys.executable, "-m", "clips", "train", "--data-dir", str(tmp / "cohort"), "-P", "model=tiny",
               "-P", f"epochs={EPOCHS}", "-P", "steps_per_epoch=2", "-P", "patch_size=32", "-P", "spacing_mm=10"]
        for r in range(args.rounds):
            t0 = time.time()
            procs = [subprocess.Popen(cmd + ["-P", f"seed={r * 100 + i}"], cwd=REPO, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for i in range(args.processes)]
            errors = [p.communicate()[1] for p in procs]
            wall = time.time() - t0
            failed = [e[-500:] for p, e in zip(procs, errors) if p.returncode != 0]
            exp = client.get_experiment_by_name("load").experiment_id
            runs = [x for x in client.search_runs([exp], max_results=1000)
                    if x.data.params.get("cfg.seed") in {str(r * 100 + i) for i in range(args.processes)}]
            points = sum(len(client.get_metric_history(x.info.run_id, k)) for x in runs for k in PER_EPOCH_KEYS)
            tables = sum(len([a for a in client.list_artifacts(x.info.run_id, "tables")]) for x in runs)
            models = 0
            for x in runs:
                try:
                    mlflow.models.get_model_info(f"runs:/{x.info.run_id}/model")
                    models += 1
                except Exception:  # noqa: BLE001 - a missing model is what we count
                    pass
            expected_points = args.processes * EPOCHS * len(PER_EPOCH_KEYS)
            row = {"round": r, "wall_s": wall, "runs_finished": sum(x.info.status == "FINISHED" for x in runs),
                   "metric_points": points, "metric_points_expected": expected_points, "table_artifacts": tables,
                   "models": models, "failed_processes": failed,
                   "runs_per_minute": 60 * args.processes / wall, "metric_points_per_s": points / wall}
            result["rounds"].append(row)
            print(f"round {r}: {args.processes} runs in {wall:.1f} s ({row['runs_per_minute']:.1f} runs/min); "
                  f"{row['runs_finished']} finished, metric points {points}/{expected_points}, "
                  f"{tables} table artifacts, {models}/{args.processes} models, {len(failed)} failed processes")
        # Reference, same run: the same 4 processes logging to a local SQLite store instead of the server.
        local = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'reference.db'}")
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            local.pop(k, None)
        subprocess.run([sys.executable, "-c", "import mlflow; mlflow.create_experiment('load')"], env=local, check=True)
        t0 = time.time()
        procs = [subprocess.Popen(cmd + ["-P", f"seed={900 + i}"], cwd=REPO, env=local, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for i in range(args.processes)]
        codes = [p.wait() for p in procs]
        result["reference_local_sqlite_wall_s"] = time.time() - t0
        result["reference_failed_processes"] = sum(c != 0 for c in codes)
        mean_server = sum(r["wall_s"] for r in result["rounds"]) / len(result["rounds"])
        result["server_to_local_wall_ratio"] = mean_server / result["reference_local_sqlite_wall_s"]
        print(f"reference: the same {args.processes} runs to a local SQLite store in "
              f"{result['reference_local_sqlite_wall_s']:.1f} s; "
              f"server / local = {result['server_to_local_wall_ratio']:.2f}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            for name in (db, f"{db}_auth"):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    ok = all(r["metric_points"] == r["metric_points_expected"] and r["models"] == args.processes
             and not r["failed_processes"] for r in result["rounds"])
    print("everything arrived" if ok else "SOMETHING WAS LOST")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
