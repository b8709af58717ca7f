"""Studies on a real job queue: the Optuna storage (SQLite and PostgreSQL), real worker processes, a real kill."""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import optuna
import pytest
import torch

from clips.errors import ClipsError, ConfigError
from clips.scaling.devices import assign, check_cpu_budget, parse_gpus
from clips.scaling.queue import MAX_OWN_FAILURES, JobQueue

REPO = Path(__file__).resolve().parent.parent
TINY = {"model": "tiny", "epochs": "2", "steps_per_epoch": "2", "patch_size": "32", "spacing_mm": "10", "threads": "1"}


def test_gpu_and_thread_assignment():
    slots = assign(4, ["0", "1"], cpu_count=16)
    assert [s.gpu for s in slots] == ["0", "1", "0", "1"] and {s.threads for s in slots} == {4}
    assert slots[1].env == {"CUDA_VISIBLE_DEVICES": "1"}
    assert [s.gpu for s in assign(0, ["2", "3"], 16)] == ["2", "3"]  # default: one worker per GPU
    cpu = assign(0, [], cpu_count=2)
    assert len(cpu) == 1 and cpu[0].threads == 2 and cpu[0].env == {}  # CPU-only: one worker, every core
    assert [s.threads for s in assign(2, [], cpu_count=2)] == [1, 1]  # K workers share the cores
    assert [s.threads for s in assign(3, [], cpu_count=2)] == [1, 1, 1]
    assert parse_gpus("auto") is None and parse_gpus("none") == [] and parse_gpus("0, 2") == ["0", "2"]
    # Local CPU workers never oversubscribe the cores: 2 workers x 1 thread with the CPU's default of no
    # loader process fit 2 cores; with 2 loader processes each they would not, and are refused in one line.
    check_cpu_budget(assign(2, [], 2), -1, 2)
    with pytest.raises(ConfigError, match="6 processes busy on 2 cores"):
        check_cpu_budget(assign(2, [], 2), 2, 2)
    check_cpu_budget(assign(2, ["0", "1"], 2), 4, 2)  # GPU workers: their loaders feed the GPU
    with pytest.raises(ConfigError, match="--gpus"):
        parse_gpus("first")


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return request.getfixturevalue("pg_url")


def test_claims_are_atomic_and_a_done_job_never_runs_again(storage):
    queue = JobQueue("s", storage, grace_s=30, create=True)
    jobs = [f"none:{f}:0" for f in range(12)]
    assert queue.fill(jobs) == 12
    taken, lock = [], threading.Lock()

    def worker():
        q = JobQueue("s", storage, grace_s=30)  # its own connection, as another process has
        while (claim := q.claim(worker="w")) is not None:
            with lock:
                taken.append(claim.job)
            q.complete(claim)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(jobs)  # each job once, none twice
    assert set(queue.status().values()) == {"done"}
    assert queue.fill(jobs) == 0 and queue.claim() is None  # restarting the study queues nothing again


def test_a_job_failing_for_its_own_reason_is_retried_then_failed_for_good(tmp_path):
    queue = JobQueue("s", f"sqlite:///{tmp_path / 'q.db'}", grace_s=30, create=True)
    queue.fill(["bad:0", "good:0"])
    for attempt in range(1, MAX_OWN_FAILURES + 1):
        claim = queue.claim(lambda job: job == "bad:0")
        assert claim.job == "bad:0" and claim.attempt == attempt
        assert queue.fail(claim, "ValueError: bad data") == (attempt == MAX_OWN_FAILURES)
    assert queue.claim(lambda job: job == "bad:0") is None
    assert queue.status() == {"bad:0": "failed", "good:0": "waiting"}
    assert queue.errors("bad:0") == ["ValueError: bad data"] * MAX_OWN_FAILURES


def test_a_dead_workers_job_goes_back_to_the_queue(tmp_path):
    closed = []
    url = f"sqlite:///{tmp_path / 'q.db'}"
    queue = JobQueue("s", url, grace_s=3, on_dead_worker=closed.append, create=True)
    queue.fill(["none:0"])
    dead = JobQueue("s", url, grace_s=3).claim(worker="host:1")  # claims, beats once, then says nothing
    queue.set_attr(dead, "run_id", "abc")
    queue.reap()
    assert queue.status() == {"none:0": "running"}  # within its grace period it is alive
    time.sleep(4.5)  # SQLite's clock has whole seconds: more than the grace period for sure
    queue.reap()
    assert [a["run_id"] for a in closed] == ["abc"]
    again = queue.claim(worker="host:2")
    assert again.job == "none:0" and again.attempt == 2
    with queue.beating(again):  # a live worker's job is not reaped, however long it takes
        time.sleep(5)
        queue.reap()
    queue.complete(again)
    assert queue.status() == {"none:0": "done"}


def test_withdrawn_jobs_are_cancelled_a_claimed_one_runs_and_none_is_queued_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    queue = JobQueue("s", url, grace_s=30, create=True)
    jobs = [f"{c}:{f}:0" for c in ("none", "random") for f in range(3)]
    queue.fill(jobs)
    running = JobQueue("s", url).claim(lambda job: job == "random:0:0", worker="w")  # claimed before the withdrawal
    late = JobQueue("s", url)  # a worker that read the waiting list just before the withdrawal
    before = [t for t in late._trials() if t.user_attrs["job"].startswith("random:") and t.number > 0]
    cancelled = queue.withdraw(lambda job: job.startswith("random:"), "withdrawn now")
    assert sorted(cancelled) == ["random:1:0", "random:2:0"]
    status = queue.status()
    assert status["random:0:0"] == "running" and status["random:1:0"] == status["random:2:0"] == "withdrawn"
    assert queue.fill(jobs) == 0  # a restart does not queue them again
    late._trials = lambda states=None: before  # its claim finds those trials withdrawn: it skips them
    assert late.claim(worker="late") is None
    taken = []
    while (claim := queue.claim(worker="w")) is not None:
        taken.append(claim.job)
        queue.complete(claim)
    assert sorted(taken) == [f"none:{f}:0" for f in range(3)]
    assert queue.claim() is None
    queue.complete(running)
    assert queue.status()["random:0:0"] == "done"


def test_joining_an_unknown_study_says_so(tmp_path):
    with pytest.raises(ClipsError, match="no study 'nope'"):
        JobQueue("nope", f"sqlite:///{tmp_path / 'q.db'}")


def _clips(args, home, log, **extra_env):
    env = dict(os.environ, CLIPS_HOME=str(home), **extra_env)
    return subprocess.Popen([sys.executable, "-m", "clips", *args], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_two_machines_one_queue_and_a_worker_killed(tiny_cohort, pg_url, tmp_path):
    """Two workers with their own CLIPS_HOME (two machines) on one PostgreSQL queue; the joining one is SIGKILLed in
    its first child, after that child's first epoch (issue #44): the study still completes, the other worker
    finishes the killed child **from its checkpoint, in the same run** (tagged with the epoch it resumed after),
    ending exactly as the same child trained without interruption; each job has exactly one child, FINISHED, and
    the comparison is written once. A worker with other data refuses."""
    mlflow.search_experiments()  # create the local store's tables before two processes race to
    params = [x for k, v in (TINY | {"data_dir": str(tiny_cohort)}).items() for x in ("-P", f"{k}={v}")]
    # Six jobs, and the second worker starts as soon as the queue exists: tiny children take ~3 s on a fast
    # machine, and with three jobs the first worker had claimed them all before the second one was up (CI,
    # 2026-12-02), so the second had nothing to be killed in.
    start = ["study", "--curricula", "none,random,anti", "--seeds", "2", "--study-name", "q", "--storage", pg_url,
             "--heartbeat-grace-s", "6", "--workers", "1", "--out", str(tmp_path / "report"), *params]
    logs = {n: open(tmp_path / f"{n}.log", "w") for n in ("a", "b", "c")}
    a = _clips(start, tmp_path / "home_a", logs["a"])
    poll = optuna.storages.RDBStorage(pg_url)  # one pool for the whole poll

    def running_of(pid):
        try:
            study = optuna.load_study(study_name="queue:q", storage=poll)
        except KeyError:
            return []
        return [t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                if t.user_attrs.get("worker", "").endswith(f":{pid}") and "run_id" in t.user_attrs]

    def queue_exists():
        try:
            optuna.load_study(study_name="queue:q", storage=poll)
            return True
        except KeyError:
            return False

    deadline = time.time() + 300
    while not queue_exists():
        assert a.poll() is None and time.time() < deadline, (tmp_path / "a.log").read_text()[-3000:]
        time.sleep(0.3)
    # The joining worker dies by SIGKILL right after the first epoch of the first child it trains (checkpoint
    # written and uploaded; the fault injection of clips/training/failpoints.py, so the kill lands mid-child
    # however fast the machine is).
    # (A worker told to leave by SIGUSR1 instead: tests/test_slurm.py, on a real Slurm.)
    b = _clips(["study", "--join", "q", "--storage", pg_url, "--workers", "1", "-P", "threads=1"],
               tmp_path / "home_b", logs["b"], CLIPS_KILL_AT="epoch:0")
    while not running_of(b.pid):
        assert b.poll() is None and time.time() < deadline, (tmp_path / "b.log").read_text()[-3000:]
        time.sleep(0.1)
    killed = running_of(b.pid)[0]
    assert b.wait(timeout=300) == -signal.SIGKILL, (tmp_path / "b.log").read_text()[-3000:]
    assert a.wait(timeout=600) == 0, (tmp_path / "a.log").read_text()[-3000:]
    log_a = (tmp_path / "a.log").read_text()
    assert "[q] none:0 epoch 1/2: loss" in log_a and "left)" in log_a  # progress, with the time left
    assert "report: " in log_a and "report.html" in log_a

    client = mlflow.MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("clips").experiment_id], max_results=200)
    children = [r for r in runs if r.data.tags.get("clips.role") == "study_child"]
    finished = [r.data.tags["clips.study_key"] for r in children if r.info.status == "FINISHED"]
    assert sorted(finished) == [f"{c}:{s}" for c in ("anti", "none", "random") for s in (0, 1)]  # each once
    assert len(children) == 6 and not [r for r in runs if r.info.status == "RUNNING"]  # no second run for a job
    resumed = client.get_run(killed.user_attrs["run_id"])  # the killed child's own run, finished by worker a
    assert resumed.info.status == "FINISHED" and resumed.data.tags["clips.resumed_after"] == "0"
    assert resumed.data.tags["clips.resumes"] == "1" and "heartbeat" in resumed.data.tags["clips.earlier_failure"]
    assert "clips.failure" not in resumed.data.tags  # finished: not a failed run any more
    assert f"resuming {resumed.data.tags['clips.study_key']} in its run {resumed.info.run_id}" in log_a
    from clips.config import build_config
    from clips.study.config import Job, StudyConfig
    from clips.study.runner import child_params
    from clips.training.trainer import train

    curriculum, seed = resumed.data.tags["clips.study_key"].split(":")
    threads = torch.get_num_threads()
    try:
        whole = train(build_config(child_params(StudyConfig(curricula=[curriculum], train=TINY | {
            "data_dir": str(tiny_cohort)}), Job(curriculum, -1, int(seed)), {})), log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    assert client.get_run(whole.run_id).data.metrics["test_dice_mean"] == resumed.data.metrics["test_dice_mean"]
    assert (tmp_path / "report" / "comparison.csv").exists()
    (parent,) = [r for r in runs if r.data.tags.get("clips.role") == "study_parent"]
    assert parent.info.run_name == "q"  # named after the study, not adjective-animal-123
    assert {r.data.tags.get("mlflow.source.name") for r in children} == {parent.data.tags["mlflow.source.name"]}
    assert {r.info.run_name for r in children if r.info.status == "FINISHED"} == {
        f"{c} · seed {s}" for c in ("none", "random", "anti") for s in (0, 1)}  # curriculum first: truncation keeps it
    report = (tmp_path / "report" / "comparison.md").read_text().splitlines()
    assert report[0] == "# q: curriculum comparison" and report[2].startswith("Recipe: ") and "model=tiny" in report[2]

    other = tmp_path / "other"  # the same layout, one patient's lesion changed: another digest
    shutil.copytree(tiny_cohort, other)
    seg_path = next(other.glob("*/SEG.nii.gz"))
    seg = nib.load(seg_path)
    nib.save(nib.Nifti1Image(np.zeros(seg.shape, np.uint8) + (np.asarray(seg.dataobj) > 0), seg.affine), seg_path)
    data = np.asarray(nib.load(seg_path).dataobj)
    data[tuple(s // 2 for s in data.shape)] = 1
    nib.save(nib.Nifti1Image(data, seg.affine), seg_path)
    c = _clips(["study", "--join", "q", "--storage", pg_url, "-P", f"data_dir={other}"], tmp_path / "home_c",
               logs["c"])
    assert c.wait(timeout=300) != 0
    out = (tmp_path / "c.log").read_text()
    assert "digest" in out and "every worker must have the same data" in out and "Traceback" not in out


@pytest.mark.slow
def test_a_variant_that_needs_a_teacher_waits_for_its_baseline_and_is_taught_by_it(tiny_cohort, tmp_path):
    """Through the queue: transfer_teacher is claimed only once its fold's baseline is done, and learns from it."""
    from clips.study.config import StudyConfig
    from clips.study.runner import run_study

    scfg = StudyConfig(curricula=["transfer_teacher", "none"], seeds=1, study_name="taught", workers=1,
                       storage=f"sqlite:///{tmp_path / 'q.db'}", train=TINY | {"data_dir": str(tiny_cohort)})
    run_study(scfg, log=lambda *_: None, compare_out=tmp_path / "report")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string="tags.`clips.role` = 'study_child'")
    by_key = {r.data.tags["clips.study_key"]: r for r in runs}
    assert set(by_key) == {"none:0", "transfer_teacher:0"} and {r.info.status for r in runs} == {"FINISHED"}
    teacher = by_key["transfer_teacher:0"].data.params
    assert teacher["curriculum.teacher_uri"] == f"runs:/{by_key['none:0'].info.run_id}/model"
    assert by_key["none:0"].info.start_time < by_key["transfer_teacher:0"].info.start_time


def test_a_worker_with_a_deadline_claims_no_job_it_cannot_finish(tmp_path, monkeypatch):
    """Its deadline (ISO, +MINUTES, or Slurm's end time) against the median wall time of the study's finished
    children: 10 min left and 20 min children, nothing is claimed and the worker says why; an hour left, it works."""
    from clips.errors import ConfigError
    from clips.scaling.preemption import parse_deadline
    from clips.study.config import StudyConfig
    from clips.study.runner import _time_for_a_child

    now = time.time()
    assert abs(parse_deadline("+30") - (now + 1800)) < 5 and parse_deadline("") is None
    assert parse_deadline("2026-12-06T12:00:00") == parse_deadline("2026-12-06T12:00:00+00:00")
    monkeypatch.setenv("SLURM_JOB_END_TIME", "1800000000")
    assert parse_deadline("slurm") == 1800000000.0
    with pytest.raises(ConfigError, match="deadline 'tomorrow': \\+MINUTES, an ISO date-time, or slurm"):
        parse_deadline("tomorrow")
    client = mlflow.MlflowClient()
    exp = mlflow.set_experiment("clips").experiment_id
    parent = client.create_run(exp).info.run_id
    start = int(now * 1000) - 3_600_000
    for i, minutes in enumerate((18, 20, 25)):
        child = client.create_run(exp, start_time=start, tags={"mlflow.parentRunId": parent,
                                                                 "clips.study_key": f"none:{i}"}).info.run_id
        client.set_terminated(child, "FINISHED", end_time=start + minutes * 60_000)
    said = []
    scfg = StudyConfig(curricula=["none"], study_name="d")
    assert not _time_for_a_child(scfg, client, exp, parent, time.time() + 602, said.append)
    assert said == ["[d] not claiming another job: a child takes about 20.0 min (the median of 3 finished), "
                    "10.0 min are left before this worker's deadline"]
    assert _time_for_a_child(scfg, client, exp, parent, now + 3600, said.append) and len(said) == 1
