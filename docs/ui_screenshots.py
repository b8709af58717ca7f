"""Screenshots of the real MLflow UI on a small demo study, for docs/ui.md (so the doc stays true when the UI
changes: run this again after an MLflow upgrade).

    python docs/ui_screenshots.py [--store sqlite:///mlflow.db] [--out docs/img]

Without ``--store`` it first runs a small study (3 curricula, tiny model, 12 generated patients; a few minutes
on 2 CPU cores) and a 4-trial tuning study in a temporary store. Then it serves the store with ``mlflow ui``
and photographs pages with headless Chromium (Debian's ``chromium`` package: ``apt-get install chromium``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = "machine_learning"
TINY = ["-P", "model=tiny", "-P", "epochs=4", "-P", "steps_per_epoch=3", "-P", "patch_size=32",
        "-P", "spacing_mm=10", "-P", "example.patients=12", "-P", "example.spacing_mm=10"]


def clips(args: list[str], env: dict, cwd: Path) -> None:
    # run in the temporary folder: a SQLite store keeps its artifacts in ./mlruns of the process that makes them
    subprocess.run([sys.executable, "-m", "clips", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(chromium: str, url: str, path: Path, size=(1500, 950)) -> None:
    subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=60000",
                    "--run-all-compositor-stages-before-draw", f"--screenshot={path}", url],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="", help="tracking store to photograph (default: a fresh demo study)")
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("needs Chromium: apt-get install chromium")
    tmp = Path(tempfile.mkdtemp(prefix="clips-ui-"))
    store = args.store or f"sqlite:///{tmp / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, CLIPS_HOME=str(tmp / "home"),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("MLFLOW_RUN_ID", None)
    if not args.store:
        clips(["study", "--curricula", "none,random,smoothing", "--seeds", "1", "--exploratory", "true",
               "--study-name", "demo-study", "--selection", "last", *TINY], env, tmp)
        clips(["tune", "--curriculum", "smoothing", "--n-trials", "4", "--pruner", "none", "--study-name",
               "demo-tune", *TINY], env, tmp)
    import mlflow

    mlflow.set_tracking_uri(store)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("clips")
    parent = client.search_runs([exp.experiment_id], "tags.`clips.role` = 'study_parent'")[0]
    tune = client.search_runs([exp.experiment_id], "tags.`clips.role` = 'tune_parent'")[0]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host",
                               "127.0.0.1", "--port", str(port)], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        ml = f"workflowType={WORKFLOW}"  # the UI's model-training view (MLflow 3 starts in its GenAI view)
        children = "searchFilter=" + urllib.request.quote("tags.`clips.role` = 'study_child'")
        shoot(chromium, f"{base}/runs?{ml}", out / "ui_runs.png")
        shoot(chromium, f"{base}/runs?{ml}&{children}&compareRunsMode=CHART", out / "ui_charts.png")
        shoot(chromium, f"{base}/runs/{parent.info.run_id}?{ml}", out / "ui_study_parent.png")
        shoot(chromium, f"{base}/runs/{parent.info.run_id}/artifacts/comparison/report.html?{ml}",
              out / "ui_study_report.png")
        trials = "searchFilter=" + urllib.request.quote("tags.`clips.role` = 'tune_trial'")
        shoot(chromium, f"{base}/runs?{ml}&{trials}&compareRunsMode=CHART", out / "ui_tune_trials.png")
        shoot(chromium, f"{base}/runs/{tune.info.run_id}/artifacts/figures/tune_parallel_coordinate.png?{ml}",
              out / "ui_tune_parallel.png")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
