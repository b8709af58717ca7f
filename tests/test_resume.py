"""Exact resume (issue #44): a real training killed with SIGKILL (tiny network, real NIfTI cohort, the CLI in a
process of its own) and resumed ends exactly where the same training run without interruption ends: the same
parameters, bit for bit, and the same test Dice. And a checkpoint that cannot continue the run (truncated,
another run's, another configuration's) is refused in one line, never a traceback.

The uninterrupted reference and the resumption run in this process (`train`, as `clips train` calls it; the
checkpoint's configuration check proves they are the same training), the killed training in a process of its
own: half the cost of three processes, the same arithmetic (one thread everywhere)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from clips.training.failpoints import ENV

REPO = Path(__file__).resolve().parent.parent
# One thread: the same arithmetic in every process; 4 epochs, validation after each, so a kill after epoch 1 leaves
# every kind of state (curriculum, optimiser, scheduler, generators, the best checkpoint) mid-way.
TINY = {"model": "tiny", "epochs": "4", "steps_per_epoch": "3", "patch_size": "32", "spacing_mm": "10",
        "batch_size": "2", "threads": "1", "val_every": "1", "seed": "5"}

pytestmark = pytest.mark.slow


def _tiny(curriculum: str) -> dict:
    return TINY | WORKERS.get(curriculum, {})


def _train(cohort: Path, curriculum: str, kill_at: str = "", resume: str = "") -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "clips", "train", "--data-dir", str(cohort), "--curriculum", curriculum]
    args += [x for k, v in _tiny(curriculum).items() for x in ("-P", f"{k}={v}")]
    args += ["--resume", resume] if resume else []
    env = {k: v for k, v in os.environ.items() if k != ENV} | ({ENV: kill_at} if kill_at else {})
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # the trainings set one thread (TINY); the rest of the suite keeps its own


def _in_process(cohort: Path, curriculum: str, resume: str = "") -> tuple[str, list[str]]:
    from clips.config import build_config
    from clips.training.trainer import train

    mlflow.set_experiment("clips")
    lines: list[str] = []
    cfg = build_config({"data_dir": str(cohort), "curriculum": curriculum, **_tiny(curriculum)}
                       | ({"resume": resume} if resume else {}))
    return train(cfg, log=lines.append).run_id, lines


def _newest_run() -> str:
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list",
                              order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id


def _last(run_id: str) -> dict:
    return torch.load(Path(os.environ["CLIPS_HOME"]) / "runs" / run_id / "checkpoints" / "last.pt",
                      map_location="cpu", weights_only=False)


def _assert_same_training(a: str, b: str) -> None:
    la, lb = _last(a), _last(b)
    assert la["state"]["epoch"] == lb["state"]["epoch"] == int(TINY["epochs"]) - 1
    different = [k for k in la["model"] if not torch.equal(la["model"][k], lb["model"][k])]
    assert not different, f"parameters differ after resume: {different[:5]}"
    ma, mb = (mlflow.MlflowClient().get_run(r).data.metrics for r in (a, b))
    assert ma["test_dice_mean"] == mb["test_dice_mean"] and ma["best_epoch"] == mb["best_epoch"]
    for key in ("train_loss", "val_dice"):  # every epoch logged once, with the uninterrupted run's values
        ha, hb = ([(m.step, m.value) for m in sorted(mlflow.MlflowClient().get_metric_history(r, key),
                                                     key=lambda m: m.step)] for r in (a, b))
        assert ha == hb, key


# Where each is killed: after epoch 1 (checkpoint written, metrics logged), or inside epoch 2 after its second
# step (that epoch's steps are lost and done again from epoch 1's checkpoint, with the same random draws).
KILLS = {"none": "step:2:1", "self_paced": "epoch:1", "rl_teacher": "epoch:1", "smoothing": "epoch:1",
         "progressive_patch": "epoch:1"}
# rl_teacher (which plans each step from the steps before) with a loader worker, as a GPU training has: the next
# epoch begins before validation, its first batches planned before the checkpoint is written; the run resumed from
# that checkpoint must plan them again from where the killed one stood before it planned them.
WORKERS = {"rl_teacher": {"workers": "1"}}


@pytest.mark.parametrize("curriculum", list(KILLS))
def test_a_killed_training_resumed_ends_as_if_never_stopped(tiny_cohort, curriculum, one_thread):
    reference, _ = _in_process(tiny_cohort, curriculum)
    killed = _train(tiny_cohort, curriculum, kill_at=KILLS[curriculum])
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]  # SIGKILL, not an error
    run_id = _newest_run()
    local = Path(os.environ["CLIPS_HOME"]) / "runs" / run_id / "checkpoints" / "last.pt"
    if curriculum == "smoothing":  # a local copy cut short (a disk that filled up): the server's copy is used
        local.write_bytes(local.read_bytes()[:4096])
    _, lines = _in_process(tiny_cohort, curriculum, resume=run_id)
    assert f"resuming run {run_id} after epoch 1" in lines
    if curriculum == "smoothing":
        assert any(line.startswith(f"cannot read checkpoint {local}") for line in lines), lines
    _assert_same_training(reference, run_id)
    if curriculum == "none":  # another run's checkpoint, and garbage on the server: one line each, then a clear stop
        mlflow.MlflowClient().log_text(run_id, "not a checkpoint", "checkpoints/last.pt")
        local.write_bytes((Path(os.environ["CLIPS_HOME"]) / "runs" / reference / "checkpoints" / "last.pt")
                          .read_bytes())
        refused = _train(tiny_cohort, curriculum, resume=run_id)
        out = refused.stdout + refused.stderr
        assert refused.returncode == 2 and "Traceback" not in out, out[-3000:]
        assert f"checkpoint {local}: a checkpoint of run {reference}, not of {run_id}; not resumed from it" in out
        assert "cannot read checkpoint" in out and "no usable checkpoint to resume from" in out


def test_why_a_checkpoint_cannot_continue_a_run():
    from clips.training.checkpoint import unusable

    assert unusable({"model": {}}, "r1", {}).startswith("not a CLIPS training checkpoint")
    saved = {k: {} for k in ("model", "optimizer", "scheduler", "curriculum", "state")}
    assert unusable(saved | {"config": {"seed": "1"}, "run_id": "r2"}, "r1", {"seed": "1"}) == \
        "a checkpoint of run r2, not of r1"
    assert unusable(saved | {"config": {"seed": "1", "resume": ""}}, "r1", {"seed": "2", "resume": "r1"}) == \
        "trained with another configuration (seed: '1' -> '2')"
    assert unusable(saved | {"config": {"seed": "1", "resume": ""}, "run_id": "r1"}, "r1", {"seed": "1"}) == ""


def test_a_dead_study_child_without_a_checkpoint_is_trained_afresh_in_a_new_run_saying_why(tiny_cohort, one_thread):
    """Its worker died before the first checkpoint: the next attempt finds nothing to continue, says so in one line,
    marks the dead run, and trains the job in a new run (the report counts the finished one only)."""
    from clips.study.config import Job, StudyConfig
    from clips.study.runner import resumable_attempt, run_child
    from clips.tracking import schema

    client = mlflow.MlflowClient()
    exp = mlflow.set_experiment("clips").experiment_id
    scfg = StudyConfig(curricula=["none"], seeds=1, study_name="s", train=TINY | {"data_dir": str(tiny_cohort)})
    parent = client.create_run(exp, tags={schema.ROLE: schema.STUDY_PARENT}).info.run_id
    job = Job("none", -1, 0)
    dead = client.create_run(exp, tags={"mlflow.parentRunId": parent, schema.STUDY_KEY: job.key,
                                        schema.ROLE: schema.STUDY_CHILD}).info.run_id
    schema.mark_failed(client, dead, "worker w died (heartbeat stale)")
    assert resumable_attempt(client, exp, parent, job) == dead
    lines: list[str] = []
    new = run_child(scfg, parent, exp, job, {}, lines.append)
    assert new != dead and client.get_run(new).info.status == "FINISHED"
    assert any(f"run {dead} cannot be resumed (run {dead} has no usable checkpoint" in line for line in lines), lines
    assert "no usable checkpoint" in client.get_run(dead).data.tags[schema.NOT_RESUMABLE]
    assert resumable_attempt(client, exp, parent, job) is None  # the job's latest run finished
