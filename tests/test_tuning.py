"""Optuna tuning as nested MLflow runs: a real study, real pruning, a worker killed on a real PostgreSQL."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest

from clips.errors import ConfigError
from clips.tuning.objective import Objective
from clips.tuning.space import load_space, ramp_epochs
from clips.tuning.study import TuneConfig, load_study, prepare, run_tuning

REPO = Path(__file__).resolve().parent.parent
TINY = {"model": "tiny", "epochs": "2", "steps_per_epoch": "2", "patch_size": "32", "spacing_mm": "10"}


def test_spaces_are_checked_before_any_trial(tmp_path):
    for name in ("smoothing", "predefined", "random", "anti", "transfer_teacher", "self_paced", "rl_teacher"):
        assert load_space(name).dims
    bad = tmp_path / "s.yaml"
    bad.write_text("smoothing:\n  sigma0: {type: float, low: 2, high: 1}\n")
    with pytest.raises(ConfigError, match="low < high"):
        load_space("smoothing", bad)
    bad.write_text("smoothing:\n  sigma: {type: float, low: 1, high: 2}\n")
    with pytest.raises(ConfigError, match="sigma is neither an option"):
        load_space("smoothing", bad)
    bad.write_text("predefined:\n  pacing: {type: categorical, choices: [linear, cubic]}\n")
    with pytest.raises(ConfigError, match="cubic"):
        load_space("predefined", bad)
    with pytest.raises(ConfigError, match="no search space for curriculum 'none'"):
        load_space("none")
    with pytest.raises(ConfigError, match="not a column"):
        prepare(TuneConfig(curriculum="smoothing", objective="dicey"))


def test_warmup_covers_the_longest_ramp(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("predefined:\n  full_at: {type: float, low: 0.2, high: 0.6}\n"
                 "smoothing:\n  sigma0: {type: float, low: 0.5, high: 2.0}\n"
                 "  decay: {type: float, low: 0.5, high: 0.8}\n")
    assert ramp_epochs(load_space("predefined", f), 20) == 12  # 0.6 x 20
    # sigma 2.0 decaying by 0.8 per epoch falls below the floor 0.3 after ceil(log(0.15)/log(0.8)) = 9 epochs
    assert ramp_epochs(load_space("smoothing", f), 20) == 9


def test_objective_columns():
    import pandas as pd

    t = pd.DataFrame({"patient_id": ["a", "b", "c"], "dice": [0.2, 0.4, float("nan")],
                      "tmtv_abs_rel_error": [0.5, 0.1, 0.3]})
    assert Objective.parse("dice").value(t) == pytest.approx(0.3)
    assert Objective.parse("dice@hard").value(t, {"b"}) == pytest.approx(0.4)
    assert Objective.parse("-tmtv_abs_rel_error").value(t) == pytest.approx(-0.3)
    with pytest.raises(ConfigError, match="no 'hard' column"):
        Objective.parse("dice@hard").value(t, None)


@pytest.mark.slow
def test_real_study_parent_and_children(tiny_cohort):
    tcfg = TuneConfig(curriculum="smoothing", n_trials=3, pruner="none", seed=1, reevaluate_top=2,
                      reevaluate_seeds=1, train={"data_dir": str(tiny_cohort), **TINY})
    lines = []
    summary = run_tuning(tcfg, log=lines.append)
    assert summary["complete"] == 3
    trials = [line for line in lines if line.startswith("trial ")]  # progress: one line per trial
    assert len(trials) == 3 and "trials: 1/3 (about" in trials[0] and "trials: 3/3 (done in" in trials[-1]
    client = mlflow.MlflowClient()
    parents = mlflow.search_runs(search_all_experiments=True, filter_string="tags.`clips.role` = 'tune_parent'",
                                 output_format="list")
    (parent,) = parents
    assert parent.info.run_name == tcfg.resolved_study_name()  # named after the study, not adjective-animal
    children = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`clips.role` = 'tune_trial'"))
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    study = load_study(prepare(tcfg))
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in study.trials}
    for child in children:  # links both ways
        trial = by_run[child.info.run_id]
        assert child.data.tags["clips.trial_number"] == str(trial.number)
        assert child.info.run_name.startswith(f"trial {trial.number} · sigma0={trial.params['sigma0']:.3g} ")
        assert child.data.tags["clips.study_name"] == study.study_name
        assert child.data.params["curriculum.sigma0"] == str(trial.params["sigma0"])
    # Re-evaluation: the 2 best trials, the defaults and the baseline, a fresh seed each, children of the parent
    reeval = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`clips.role` = 'tune_reeval'"))
    top2 = sorted((t for t in study.trials if t.value is not None), key=lambda t: t.value, reverse=True)[:2]
    names = {f"trial {t.number}" for t in top2} | {"defaults", "none"}
    assert sorted(r.info.run_name for r in reeval) == sorted(f"reeval · {n} · seed {s}" for n in names
                                                             for s in (1000,))
    assert all(r.info.status == "FINISHED" and r.data.params["cfg.split_seed"] == "0" for r in reeval)
    table = summary["reevaluation"].set_index("candidate")
    assert set(table.index) == names and (table["runs"] == 1).all()
    winner = table.loc[[f"trial {t.number}" for t in top2], "reeval_mean"].idxmax()
    best = next(t for t in study.trials if f"trial {t.number}" == winner)  # chosen on the re-evaluation
    assert summary["best_trial"] == best.number
    assert parent.data.params["best.sigma0"] == str(best.params["sigma0"])
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.tags["clips.best_run_id"] == best.user_attrs["mlflow_run_id"]
    search_best = study.best_trial
    assert parent.data.metrics["winners_curse"] == pytest.approx(
        search_best.value - table.loc[f"trial {search_best.number}", "reeval_mean"])
    assert "tuned settings are" in parent.data.tags["clips.reeval_verdict"] or "no run-aware test" in (
        parent.data.tags["clips.reeval_verdict"])
    assert "Re-evaluation" in parent.data.tags["mlflow.note.content"]
    logged = client.load_table(parent.info.experiment_id, "tables/reevaluation.json", run_ids=[parent.info.run_id])
    assert len(logged) == 4
    figs = {a.path for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert "figures/tune_optimization_history.png" in figs and "figures/tune_parallel_coordinate.png" in figs
    trials = client.load_table(parent.info.experiment_id, "tables/trials.json", run_ids=[parent.info.run_id])
    assert len(trials) == 3
    model = mlflow.pytorch.load_model(f"runs:/{parent.info.run_id}/model")  # the best trial's model
    assert type(model).__name__ == "SegNet"


def test_clearly_worse_trial_is_pruned_and_keeps_its_log(tmp_path):
    """A deterministic objective through the real machinery: Optuna's MedianPruner decides, nothing is mocked."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tcfg = TuneConfig(curriculum="predefined", n_trials=3, storage=storage, study_name="forced", pruner="median",
                      warmup_epochs=0, reevaluate_top=0, train=dict(TINY))
    prep = prepare(tcfg)
    study = load_study(prep)
    for start in (0.3, 0.4, 0.5, 0.05):  # 0.5 fails, 0.05 is clearly worse
        study.enqueue_trial({"pacing": "linear", "start_fraction": start, "full_at": 0.5})
    client = mlflow.MlflowClient()

    def trial_fn(trial, params, run_id, prep):
        value = params["start_fraction"] if params["start_fraction"] > 0.1 else -1.0
        for epoch in range(3):
            client.log_metric(run_id, "objective", value, step=epoch)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if params["start_fraction"] == 0.5:
            raise RuntimeError("this trial fails on purpose")
        return value

    summary = run_tuning(tcfg, trial_fn=trial_fn, log=lambda *_: None)
    states = {t.params["start_fraction"]: t.state for t in load_study(prep).trials}
    assert states[0.05] == optuna.trial.TrialState.PRUNED
    assert states[0.3] == states[0.4] == optuna.trial.TrialState.COMPLETE
    assert states[0.5] == optuna.trial.TrialState.FAIL
    runs = {r.data.tags["clips.trial_number"]: r for r in mlflow.search_runs(
        search_all_experiments=True, filter_string="tags.`clips.role` = 'tune_trial'", output_format="list")}
    by_number = {t.number: t for t in load_study(prep).trials}
    for number, run in runs.items():
        trial = by_number[int(number)]
        expected = {optuna.trial.TrialState.PRUNED: "KILLED", optuna.trial.TrialState.FAIL: "FAILED",
                    optuna.trial.TrialState.COMPLETE: "FINISHED"}[trial.state]
        assert run.info.status == expected
    pruned_run = next(r for n, r in runs.items() if by_number[int(n)].state == optuna.trial.TrialState.PRUNED)
    assert [m.value for m in client.get_metric_history(pruned_run.info.run_id, "objective")] == [-1.0]
    failed_run = next(r for n, r in runs.items() if by_number[int(n)].state == optuna.trial.TrialState.FAIL)
    assert "fails on purpose" in failed_run.data.tags["clips.failure"]
    assert summary["best_params"]["start_fraction"] == 0.4


def test_a_restarted_tuning_draws_new_settings(tmp_path):
    """A tuning stopped and started again (same study, same seed) goes on with new draws; with the study's seed
    alone its sampler replayed the first start's settings and trained them a second time."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def trial_fn(trial, params, run_id, prep):
        return params["start_fraction"]

    for n_trials in (2, 4):  # the second call is the restart: it adds two trials to the two held
        tcfg = TuneConfig(curriculum="predefined", n_trials=n_trials, storage=storage, study_name="restarted",
                          pruner="none", reevaluate_top=0, train=dict(TINY))
        run_tuning(tcfg, trial_fn=trial_fn, log=lambda *_: None)
    trials = load_study(prepare(tcfg)).trials
    assert len(trials) == 4
    first, second = [t.params for t in trials[:2]], [t.params for t in trials[2:]]
    assert not any(p == q for p in first for q in second), (first, second)


@pytest.mark.slow
def test_two_workers_on_postgresql_and_one_killed(tiny_cohort, pg_url, tmp_path):
    args = [sys.executable, "-m", "clips", "tune", "--curriculum", "predefined", "--n-trials", "4", "--storage", pg_url,
            "--study-name", "shared", "--heartbeat-grace-s", "6", "--workers", "1", "--pruner", "none",
            "--reevaluate-top", "0",
            "-P", f"data_dir={tiny_cohort}"]
    args += [x for k, v in TINY.items() for x in ("-P", f"{k}={v}")]
    mlflow.search_experiments()  # create the local store's tables before two processes race to
    logs = [open(tmp_path / f"w{i}.log", "w") for i in range(2)]
    workers = [subprocess.Popen(args + ["--seed", str(i)], cwd=REPO, stdout=logs[i], stderr=subprocess.STDOUT)
               for i in range(2)]
    victim = workers[0]
    prep = prepare(TuneConfig(curriculum="predefined", storage=pg_url, study_name="shared", heartbeat_grace_s=6,
                              train=dict(TINY)))
    deadline = time.time() + 300
    # One storage (one connection pool) for the whole poll: a storage per call leaks a pool each
    # time, and a slow machine polls long enough to exhaust PostgreSQL's max_connections.
    poll_storage = optuna.storages.RDBStorage(pg_url)

    def trials_of(pid, state):
        try:
            study = optuna.load_study(study_name="shared", storage=poll_storage)
        except KeyError:  # not created yet
            return []
        return [t for t in study.trials if t.user_attrs.get("worker", "").endswith(f":{pid}") and t.state == state]

    while time.time() < deadline:  # let the victim finish one trial and start the next
        states = optuna.trial.TrialState
        if trials_of(victim.pid, states.COMPLETE) and trials_of(victim.pid, states.RUNNING):
            break
        assert victim.poll() is None, (tmp_path / "w0.log").read_text()[-2000:]
        time.sleep(0.3)
    else:
        pytest.fail("the first worker never started a second trial")
    killed_trial = trials_of(victim.pid, optuna.trial.TrialState.RUNNING)[0]
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert workers[1].wait(timeout=300) == 0, (tmp_path / "w1.log").read_text()[-3000:]

    study = load_study(prep)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) >= 4
    assert study.trials[killed_trial.number].state == optuna.trial.TrialState.FAIL
    workers_seen = {t.user_attrs["worker"].split(":")[1] for t in study.trials
                    if t.state == optuna.trial.TrialState.COMPLETE}
    assert {str(victim.pid), str(workers[1].pid)} <= workers_seen  # both workers' trials in one study
    killed_run = mlflow.MlflowClient().get_run(killed_trial.user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "FAILED" and "heartbeat" in killed_run.data.tags["clips.failure"]
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed_trial.number]
    assert retried and retried[0].state == optuna.trial.TrialState.COMPLETE  # the dead worker's trial was re-run


@pytest.mark.slow
def test_tune_entry_point(tiny_cohort):
    import mlflow.projects

    sub = mlflow.projects.run(str(REPO), entry_point="tune", env_manager="local", experiment_name="tune",
                              parameters={"curriculum": "smoothing", "n_trials": "2", "data_dir": str(tiny_cohort),
                                          "pruner": "none", "reevaluate_top": "0", **TINY})
    assert sub.wait()
    parent = mlflow.get_run(sub.run_id)
    assert parent.data.tags["clips.role"] == "tune_parent" and "best.sigma0" in parent.data.params
    assert parent.data.params["train.epochs"] == "2"  # undeclared -P values reach training
    children = mlflow.search_runs(experiment_names=["tune"], output_format="list",
                                  filter_string=f"tags.`mlflow.parentRunId` = '{sub.run_id}'")
    assert len(children) == 2 and {c.data.params["cfg.epochs"] for c in children} == {"2"}


@pytest.mark.slow
def test_join_a_tuning_study_from_another_machine(tiny_cohort, tmp_path):
    """`clips tune --join NAME --storage URL`: the recipe comes from the study, the trial joins its parent."""
    from clips.errors import ClipsError
    from clips.tuning.study import join_tuning

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    tcfg = TuneConfig(curriculum="smoothing", n_trials=1, storage=storage, study_name="joined", pruner="none",
                      reevaluate_top=0, train={"data_dir": str(tiny_cohort), **TINY})
    run_tuning(tcfg, trial_fn=lambda trial, params, run_id, prep: 0.25, log=lambda *_: None)
    with pytest.raises(ConfigError, match="only data_dir"):
        join_tuning("joined", storage, machine={"epochs": "50"})  # the recipe is the study's
    with pytest.raises(ClipsError, match="no tuning study 'other'"):
        join_tuning("other", storage)
    join_tuning("joined", storage, workers=1, gpus="none", machine={"threads": "1"})
    study = optuna.load_study(study_name="joined", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    joined = mlflow.MlflowClient().get_run(study.trials[1].user_attrs["mlflow_run_id"])
    assert joined.data.tags["mlflow.parentRunId"] == study.user_attrs["parent_run_id"]
    assert joined.data.params["cfg.curriculum"] == "smoothing" and joined.info.status == "FINISHED"


def test_a_killed_reevaluation_job_is_trained_again_through_the_queue(tmp_path):
    from clips.scaling.queue import JobQueue
    from clips.tuning.reevaluate import Candidate, queue_name, run_jobs

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    prep = prepare(TuneConfig(curriculum="predefined", storage=storage, study_name="rq", heartbeat_grace_s=3,
                              train=dict(TINY)))
    cands = [Candidate("trial0", "trial 0", "predefined", {"start_fraction": 0.3}, 0.5),
             Candidate("defaults", "defaults", "predefined")]
    client = mlflow.MlflowClient()
    trained = []

    def job(cand, seed, run_id, prep):  # a stand-in for training: this test is about the queue
        trained.append((cand.key, seed))
        client.set_terminated(run_id, "FINISHED")

    with mlflow.start_run() as parent:
        JobQueue(queue_name("rq"), storage, 3, create=True).fill(["trial0:0", "trial0:1", "defaults:0", "defaults:1"])
        dead = JobQueue(queue_name("rq"), storage, 3).claim(lambda j: j == "trial0:0", worker="gone:1")
        assert dead is not None  # claimed by a worker that then died: it beats no more
        run_jobs(prep, parent.info.run_id, cands, 2, job, log=lambda *_: None, poll_s=0.5)
    assert sorted(trained) == [("defaults", 1000), ("defaults", 1001), ("trial0", 1000), ("trial0", 1001)]
    assert set(JobQueue(queue_name("rq"), storage).status().values()) == {"done"}


def test_the_reevaluated_winner_is_truer_than_the_search_winner():
    """A fast stand-in for training with known true values and a known run-to-run noise: over many replicates the
    re-evaluated winner's true value is closer to the best true value than the search winner's."""
    from clips.tuning.reevaluate import pick_winner

    rng = np.random.default_rng(30)
    gaps_search, gaps_reeval, curse = [], [], []
    for _ in range(400):
        true = rng.uniform(0.40, 0.55, 20)  # 20 trials whose settings differ by up to 0.15 Dice
        search = true + rng.normal(0, 0.10, 20)  # one training each, run SD 0.1
        top = np.argsort(search)[::-1][:3]
        reeval = {f"t{i}": float(np.mean(true[i] + rng.normal(0, 0.10, 3))) for i in top}
        winner = int(pick_winner({f"t{i}": float(search[i]) for i in top}, reeval)[1:])
        gaps_search.append(true.max() - true[top[0]])
        curse.append(search[top[0]] - true[top[0]])
        gaps_reeval.append(true.max() - true[winner])
    assert np.mean(gaps_reeval) < np.mean(gaps_search)
    assert np.mean(curse) > 0.05  # the winner's curse: the search winner's objective overstates its true value


def test_the_reevaluation_goes_seed_round_by_seed_round_and_drops_a_futile_trial(tmp_path):
    """A trial clearly behind the best after two rounds is not trained again; the defaults always are. The job
    is a stand-in that logs a validation table with known values: this test is about the rounds and the rule."""
    import pandas as pd

    from clips.tuning.reevaluate import Candidate, collect, futile, run_jobs

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    prep = prepare(TuneConfig(curriculum="predefined", storage=storage, study_name="rounds", train=dict(TINY)))
    cands = [Candidate("trial0", "trial 0", "predefined", {"start_fraction": 0.3}, 0.6),
             Candidate("trial1", "trial 1", "predefined", {"start_fraction": 0.8}, 0.5),
             Candidate("defaults", "defaults", "predefined")]
    level = {"trial0": 0.6, "trial1": 0.1, "defaults": 0.4}
    client = mlflow.MlflowClient()
    trained, lines = [], []
    rng = np.random.default_rng(0)

    def job(cand, seed, run_id, prep):
        trained.append((cand.key, seed - 1000))
        table = pd.DataFrame({"patient_id": [f"P{i}" for i in range(6)],
                              "dice": level[cand.key] + rng.normal(0, 0.03, 6)})
        client.log_table(run_id, table, "tables/val_per_patient.json")
        client.set_terminated(run_id, "FINISHED")

    with mlflow.start_run() as parent:
        pid = parent.info.run_id
        run_jobs(prep, pid, cands, 4, job, log=lines.append, poll_s=0.2,
                 drop=lambda done: futile(cands, collect(pid, cands), prep.objective, None, done, 4, lines.append))
    assert sorted(s for k, s in trained if k == "trial1") == [0, 1]  # dropped after round 2
    assert sorted(s for k, s in trained if k == "trial0") == [0, 1, 2, 3]
    assert sorted(s for k, s in trained if k == "defaults") == [0, 1, 2, 3]
    assert any(line.startswith("re-evaluation: trial 1 dropped after 2 seeds") for line in lines)
    order = [s for _, s in trained]
    assert order == sorted(order)  # round by round


def test_the_reevaluation_is_sized_by_the_profile():
    assert TuneConfig(train={"profile": "smoke"}).reevaluation() == (1, 1, False)  # a quick check: the winner once
    assert TuneConfig(train={"profile": "study"}).reevaluation() == (3, 3, True)
    assert TuneConfig(reevaluate_top=2, train={"profile": "smoke"}).reevaluation() == (2, 1, True)
