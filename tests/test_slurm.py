"""A real Slurm (issue #44): a one-node cluster on this machine (.ci/slurm-cluster: munged, slurmctld and slurmd
as root), the documented worker script (docs/slurm/clips-study-worker.sbatch) submitted as an array job of
`clips study --join` workers against a PostgreSQL queue, and one array task sent the signal Slurm sends before its
time limit (`scancel --signal=USR1 --batch`, as `--signal=B:USR1@300` would): that task hands its job back and
exits 0, another task finishes the child from its checkpoint, and every job ran exactly once."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "docs" / "slurm" / "clips-study-worker.sbatch"
TINY = {"model": "tiny", "epochs": "8", "steps_per_epoch": "3", "patch_size": "32", "spacing_mm": "10",
        "threads": "1"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm():
    """The one-node cluster, started if it is not up (root and the slurm-wlm package needed; CI has both)."""
    if shutil.which("sinfo") is None and os.geteuid() != 0:
        pytest.skip("Slurm is not installed and this is not root (CI installs it: .ci/slurm-cluster)")
    res = subprocess.run([str(REPO / ".ci" / "slurm-cluster")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    yield


def _squeue(job: str) -> list[str]:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True, text=True).stdout.split()


def test_slurm_array_workers_hand_back_a_job_on_the_time_limit_warning(slurm, tiny_cohort, pg_url, tmp_path):
    env = dict(os.environ, CLIPS_VENV=str(Path(sys.executable).parent.parent), CLIPS_QUEUE=pg_url,
               CLIPS_DATA_DIR=str(tiny_cohort), MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"])
    params = [x for k, v in (TINY | {"data_dir": str(tiny_cohort)}).items() for x in ("-P", f"{k}={v}")]
    mlflow.search_experiments()  # the local store's tables, before several processes race to create them
    # The study's own command fills the queue and works too; three array tasks join it. The script's GPU, core and
    # memory requests are this one-node cluster's instead (command-line options override #SBATCH lines).
    study = subprocess.Popen([sys.executable, "-m", "clips", "study", "--curricula", "none,random", "--seeds", "2",
                              "--study-name", "sl", "--storage", pg_url, "--heartbeat-grace-s", "600",
                              "--out", str(tmp_path / "report"), *params], cwd=REPO, env=env,
                             stdout=open(tmp_path / "study.log", "w"), stderr=subprocess.STDOUT)
    out = tmp_path / "task-%a.log"
    deadline = time.time() + 300
    while "queue in" not in (tmp_path / "study.log").read_text():
        assert study.poll() is None and time.time() < deadline, (tmp_path / "study.log").read_text()[-3000:]
        time.sleep(0.3)
    sub = subprocess.run(["sbatch", "--parsable", "--array=0-1", "--gres=none", "--cpus-per-task=1", "--mem=1G",
                          f"--output={out}", "--chdir", str(tmp_path), str(SCRIPT), "sl"],
                         capture_output=True, text=True, env=env)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.strip().split(";")[0]
    task0 = tmp_path / "task-0.log"
    while not (task0.exists() and " epoch 2/8" in task0.read_text()):  # task 0 is mid-child, checkpoint written
        assert time.time() < deadline and (task0.exists() or _squeue(f"{job}_0")), "task 0 never trained"
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", "--batch", f"{job}_0"], check=True)
    assert study.wait(timeout=400) == 0, (tmp_path / "study.log").read_text()[-3000:]
    while _squeue(job):  # the tasks leave once no job is left
        assert time.time() < deadline + 200
        time.sleep(0.5)
    log0 = task0.read_text()
    assert "SIGUSR1 received; left in epoch" in log0 and "handed back to the queue" in log0, log0[-3000:]
    assert "Traceback" not in log0

    client = mlflow.MlflowClient()
    children = [r for r in client.search_runs([client.get_experiment_by_name("clips").experiment_id],
                                              max_results=100) if r.data.tags.get("clips.role") == "study_child"]
    keys = sorted(r.data.tags["clips.study_key"] for r in children)
    assert keys == sorted(f"{c}:{s}" for c in ("none", "random") for s in (0, 1))  # each job once, one run each
    assert {r.info.status for r in children} == {"FINISHED"}
    (resumed,) = [r for r in children if "clips.resumed_after" in r.data.tags]  # the handed-back child, continued
    assert resumed.data.tags["clips.earlier_failure"].startswith("pre-empted: SIGUSR1 received")
    assert "clips.failure" not in resumed.data.tags  # finished: not a failed run any more
    assert resumed.data.tags["clips.resumes"] == "1"
    assert (tmp_path / "report" / "comparison.csv").exists()
    import optuna  # the task's attempt was handed back (PRUNED, the reason kept), not failed by a stale heartbeat

    trials = optuna.load_study(study_name="queue:sl", storage=pg_url).trials
    handed = [t for t in trials if "handed_back" in t.user_attrs]
    assert len(handed) == 1 and handed[0].state == optuna.trial.TrialState.PRUNED
    assert not [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
