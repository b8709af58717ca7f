"""Optuna studies of a curriculum's schedule, every trial a child MLflow run of the ``tune`` run.

Layout: the ``tune`` run is the parent; each trial is a run created with an explicit
``mlflow.parentRunId`` tag (no implicit nesting, so parallel workers cannot mix them
up), tagged with the study name and trial number; the trial keeps the run id as a user
attribute. Pruned trials end KILLED, failed ones FAILED; both keep what they logged.
Workers: every ``clips tune`` command with the same study name and storage adds
workers to one study; ``--workers K`` starts K processes under one parent.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlflow
import optuna
from mlflow.tracking import MlflowClient

from clips.config import build_config
from clips.data.cohort import hard_ids
from clips.errors import ClipsError, ConfigError
from clips.progress import Progress
from clips.scaling.devices import local_slots
from clips.scaling.storage import default_storage, heartbeat_interval, open_storage, redact
from clips.scaling.worker_loop import spawn_on_slots
from clips.scaling.workers import machine_overrides, worker_name
from clips.tracking import schema
from clips.tracking.privacy import Privacy
from clips.tracking.runs import inherited_tags
from clips.tuning.config import PRUNERS, TuneConfig
from clips.tuning.objective import Objective
from clips.tuning.space import SearchSpace, load_space, ramp_epochs


def _storage(tcfg: TuneConfig, client: MlflowClient) -> optuna.storages.RDBStorage:
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=tcfg.retry_failed) if tcfg.retry_failed else None

    def stale(study, trial):  # a dead worker's trial: close its run, then maybe queue it again
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            try:
                schema.mark_failed(client, run_id, "worker died (heartbeat stale)")
            except Exception:  # noqa: BLE001 - best effort: the study must go on
                pass
        if retry:
            retry(study, trial)

    return open_storage(tcfg.storage, tcfg.heartbeat_grace_s, on_stale=stale)


def _pruner(tcfg: TuneConfig, warmup: int, epochs: int):
    if tcfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup)
    if tcfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=warmup + 1, max_resource=max(epochs, warmup + 2))
    return optuna.pruners.NopPruner()


@dataclass
class TuningSetup:
    """What every trial and worker of a tuning shares, checked before the first trial."""

    tcfg: TuneConfig
    space: SearchSpace
    objective: Objective
    warmup: int
    epochs: int


def prepare(tcfg: TuneConfig) -> TuningSetup:
    if tcfg.pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner {tcfg.pruner!r}; known: {', '.join(PRUNERS)}")
    if tcfg.n_trials < 1 or tcfg.workers < 0:
        raise ConfigError("n_trials must be at least 1, and workers at least 0 (0: one per GPU)")
    space = load_space(tcfg.curriculum, Path(tcfg.space_file) if tcfg.space_file else None, tcfg.tune_lr)
    objective = Objective.parse(tcfg.objective)
    base = build_config(dict(tcfg.train) | {"curriculum": tcfg.curriculum})  # fails now, not in trial 1
    warmup = tcfg.warmup_epochs if tcfg.warmup_epochs >= 0 else ramp_epochs(space, base.epochs)
    return TuningSetup(tcfg, space, objective, min(warmup, max(base.epochs - 1, 0)), base.epochs)


TrialFn = Callable[[optuna.Trial, dict, str, TuningSetup], float]


def train_trial(trial: optuna.Trial, params: dict, run_id: str, prep: TuningSetup) -> float:
    """The default trial: train with the suggested parameters; report and prune on each validation."""
    from clips.training.trainer import train

    tcfg = prep.tcfg
    cfg = build_config(dict(tcfg.train) | {"curriculum": tcfg.curriculum} | {k: str(v) for k, v in params.items()})

    def on_validation(epoch, evaluate_val, cohort_table):
        value = prep.objective.value(evaluate_val().table, hard_ids(cohort_table))
        mlflow.log_metric("objective", value, step=epoch)
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} with objective {value:.4f}")

    res = train(cfg, log=lambda *_: None, run_id=run_id, on_validation=on_validation)
    return prep.objective.value(res.val_table, hard_ids(res.cohort_table))


class _StopWhenDone:
    """Stop this worker once the study holds n finished trials (complete or pruned), or too many failures."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, study: optuna.Study, trial) -> None:
        states = [t.state for t in study.get_trials(deepcopy=False)]
        done = sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)
        failed = sum(s == optuna.trial.TrialState.FAIL for s in states)
        if done >= self.n or failed >= max(3, 2 * self.n):
            study.stop()


def sampler_seed(seed: int, worker_index: int, trials_held: int) -> int:
    """Reproducible from the study's seed, and never the same for two (worker, start) pairs of one study."""
    return seed + 1000 * worker_index + 1_000_003 * trials_held


def load_study(prep: TuningSetup, worker_index: int = 0, client: MlflowClient | None = None) -> optuna.Study:
    tcfg = prep.tcfg
    client = client or MlflowClient()
    study = optuna.create_study(
        study_name=tcfg.resolved_study_name(), storage=_storage(tcfg, client), load_if_exists=True,
        direction="maximize", pruner=_pruner(tcfg, prep.warmup, prep.epochs),
    )
    # Seeded by worker and by how many trials the study already holds: a restarted (or joining) worker with the
    # study's seed would otherwise replay the first worker's draws and train settings already tried.
    held = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(tcfg.seed, worker_index, held))
    known = study.user_attrs.get("curriculum")
    if known and known != tcfg.curriculum:
        raise ConfigError(f"study {study.study_name!r} tunes {known!r}, not {tcfg.curriculum!r}: "
                          "choose another study_name")
    if not known:
        study.set_user_attr("curriculum", tcfg.curriculum)
        study.set_user_attr("objective", str(prep.objective))
    return study


def run_worker(prep: TuningSetup, parent_run_id: str, worker_index: int = 0, trial_fn: TrialFn = train_trial,
               log=print) -> None:
    """Run trials of the study until it holds n_trials finished ones (or the timeout); one line per trial, with
    the count and the time left."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    study = load_study(prep, worker_index, client)
    worker = worker_name()
    progress = Progress(prep.tcfg.n_trials, f"[{study.study_name}] trials", log=lambda *_: None)

    def objective(trial: optuna.Trial) -> float:
        params = prep.space.suggest(trial)
        shown = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        run = client.create_run(parent.info.experiment_id, run_name=f"trial {trial.number} · {shown}"[:250], tags={
            **inherited_tags(parent), "mlflow.parentRunId": parent_run_id, schema.STUDY_NAME: study.study_name,
            schema.TRIAL_NUMBER: str(trial.number), schema.CURRICULUM: prep.tcfg.curriculum,
            schema.WORKER: worker, schema.ROLE: schema.TUNE_TRIAL})
        run_id = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("worker", worker)
        try:
            value = trial_fn(trial, params, run_id, prep)
        except optuna.TrialPruned:
            client.set_terminated(run_id, "KILLED")
            raise
        except BaseException as exc:  # an interrupt too: the trial's run ends FAILED with the reason, then it goes on
            schema.mark_failed(client, run_id, f"{type(exc).__name__}: {exc}")
            raise
        client.log_metric(run_id, "objective_final", value)
        client.set_terminated(run_id, "FINISHED")  # train() has ended it already; a custom trial_fn may not
        progress.done = min(progress.total, sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)) + 1)
        log(f"trial {trial.number} ({shown}): {prep.objective} {value:.4f}; {progress.line()}")
        return value

    timeout = tcfg_timeout(prep.tcfg)
    study.optimize(objective, n_trials=None, timeout=timeout, callbacks=[_StopWhenDone(prep.tcfg.n_trials)],
                   catch=(Exception,), gc_after_trial=True)
    # A worker that died mid-trial leaves it RUNNING; once its heartbeat is stale, fail it
    # (which closes its MLflow run and, if asked, queues it again) and run the retries.
    retries = _reap_dead_trials(study, prep.tcfg.heartbeat_grace_s)
    if retries:
        study.optimize(objective, n_trials=retries, catch=(Exception,), gc_after_trial=True)


def _reap_dead_trials(study: optuna.Study, grace_s: int) -> int:
    """Wait one grace period for RUNNING trials of dead workers; returns how many retries are waiting."""
    from optuna.storages import fail_stale_trials

    heartbeat_s = heartbeat_interval(grace_s)
    deadline = time.monotonic() + grace_s + heartbeat_s + 1  # the grace period and one beat of slack
    while time.monotonic() < deadline:
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if not running:
            break
        time.sleep(min(heartbeat_s, 5))
        fail_stale_trials(study)
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def tcfg_timeout(tcfg: TuneConfig) -> float | None:
    return tcfg.timeout_min * 60 if tcfg.timeout_min > 0 else None


def reevaluate(prep: TuningSetup, parent_run_id: str, log=print, train_fn=None) -> dict | None:
    """After the search: the re-evaluation jobs (clips/tuning/reevaluate.py), then their summary."""
    from clips.data.cohort import hard_ids as _hard
    from clips.tuning import reevaluate as re

    tcfg = prep.tcfg
    top, seeds, references = tcfg.reevaluation()
    if top < 1 or seeds < 1:
        return None
    study = load_study(prep)
    cands = re.candidates(study, top, tcfg.curriculum, references=references)
    if not any(c.key.startswith("trial") for c in cands):
        return None
    log(f"re-evaluation: {len(cands)} candidates ({', '.join(c.label for c in cands)}) x up to {seeds} fresh "
        "seeds, seed round by seed round")

    def hard() -> set[str] | None:
        if not prep.objective.hard_only:
            return None
        split = _split_of(parent_run_id)
        return _hard(split) if split is not None else None

    def drop(done: int) -> list[str]:  # after each round: trials that cannot catch up with the best
        return re.futile(cands, re.collect(parent_run_id, cands), prep.objective, hard(), done, seeds, log)

    re.run_jobs(prep, parent_run_id, cands, seeds, train_fn or re.train_candidate, log, drop=drop)
    return re.summarise(cands, re.collect(parent_run_id, cands), prep.objective, hard())


def _split_of(parent_run_id: str):
    """The cohort table (with its hard flags) of one finished child of the tuning parent."""
    import tempfile

    import pandas as pd

    client = MlflowClient()
    children = client.search_runs([client.get_run(parent_run_id).info.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'FINISHED'"), max_results=1)
    if not children:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return pd.read_csv(client.download_artifacts(children[0].info.run_id, schema.SPLIT, tmp))
        except Exception:  # noqa: BLE001 - no split file: no flags
            return None


def finalize(prep: TuningSetup, parent_run_id: str, reeval: dict | None = None) -> dict:
    """Log the study's outcome to the parent: best value and parameters (the re-evaluated winner's when there
    was a re-evaluation), the trials table, the re-evaluation table and verdict, figures, the best model."""
    client = MlflowClient()
    study = load_study(prep, 0, client)
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    summary = {"study_name": study.study_name, "trials": len(study.trials), "complete": len(done),
               "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
               "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)}
    active = mlflow.active_run()
    if active is None or active.info.run_id != parent_run_id:
        raise ClipsError("finalize() runs inside the parent (tune) run")
    mlflow.log_metrics({f"trials_{k}": v for k, v in summary.items() if k != "study_name"})
    if len(trials):
        trials["duration"] = trials["duration"].astype(str) if "duration" in trials else None
        mlflow.log_table(trials, schema.TRIALS)
    if not done:
        mlflow.set_tag(schema.TUNE_RESULT, "no completed trial")
        return summary
    best = study.best_trial
    if reeval and reeval.get("winner"):
        from clips.tuning.reevaluate import verdict_lines

        number = int(reeval["winner"].split()[-1])
        best = next(t for t in study.trials if t.number == number)
        lines = verdict_lines(reeval, prep.objective)
        mlflow.log_table(reeval["table"], schema.REEVALUATION)
        mlflow.log_metrics({"winners_curse": reeval["curse"],
                            "reeval_winner_mean": float(reeval["table"].set_index("candidate").loc[
                                reeval["winner"], "reeval_mean"])})
        mlflow.set_tags({schema.REEVAL_VERDICT: " | ".join(lines)[:5000],
                         "mlflow.note.content": _description(prep.tcfg, prep) + "\n\n**Re-evaluation**: "
                         + " ".join(f"{line}." for line in lines)})
        summary |= {"reevaluation": reeval["table"], "verdict": lines, "search_best_trial": study.best_trial.number}
    summary |= {"best_value": best.value, "best_params": best.params, "best_trial": best.number,
                "best_run_id": best.user_attrs.get("mlflow_run_id")}
    mlflow.log_metric("best_value", best.value)
    existing = client.get_run(parent_run_id).data.params
    new = {f"best.{k}": str(v) for k, v in best.params.items() if f"best.{k}" not in existing}
    if new:
        mlflow.log_params(new)
    mlflow.set_tags({schema.BEST_TRIAL: str(best.number), schema.BEST_RUN_ID: summary["best_run_id"] or ""}
                    | {f"{schema.BEST_PREFIX}{k}": str(v) for k, v in best.params.items()})
    _log_figures(study)
    if summary["best_run_id"]:
        _log_best_model(summary["best_run_id"])
    return summary


def _log_figures(study: optuna.Study) -> None:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"optimization_history": ovm.plot_optimization_history, "param_importances": ovm.plot_param_importances,
             "parallel_coordinate": ovm.plot_parallel_coordinate}
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore")
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            mlflow.log_figure(fig, f"figures/tune_{name}.png")
            plt.close(fig)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for this plot
            mlflow.set_tag(f"{schema.FIGURE_PREFIX}{name}", f"not drawn: {exc}"[:250])


def _log_best_model(best_run_id: str) -> None:
    import mlflow.pytorch

    from clips.tracking.model import log_segmentation_model, model_preprocessing

    uri = f"runs:/{best_run_id}/model"
    try:
        net = mlflow.pytorch.load_model(uri, map_location="cpu")
        prep = model_preprocessing(uri)
    except Exception as exc:  # noqa: BLE001 - a custom trial_fn logs no model
        mlflow.set_tag(schema.BEST_MODEL, f"not copied: {str(exc).splitlines()[0][:200]}")
        return
    log_segmentation_model(net, prep)
    mlflow.set_tag(schema.BEST_MODEL, uri)


def run_tuning(tcfg: TuneConfig, trial_fn: TrialFn = train_trial, log=print, reeval_fn=None) -> dict:
    """The ``tune`` command: parent run, worker(s), then the summary on the parent."""
    prep = prepare(tcfg)
    with mlflow.start_run() as parent:  # under `mlflow run` this is the run MLflow created
        mlflow.set_tags({schema.ROLE: schema.TUNE_PARENT, schema.STUDY_NAME: tcfg.resolved_study_name(),
                         "mlflow.runName": tcfg.resolved_study_name(),
                         "mlflow.note.content": _description(tcfg, prep),
                         schema.CURRICULUM: tcfg.curriculum, schema.OBJECTIVE: str(prep.objective)})
        existing = MlflowClient().get_run(parent.info.run_id).data.params
        params = {f"tune.{k}": str(v) for k, v in dataclasses.asdict(tcfg).items() if k != "train"}
        train = {schema.TRAIN + k: str(v) for k, v in tcfg.train.items()}
        params |= Privacy(tcfg.train.get("privacy", "auto")).params(train)
        params["tune.storage"] = redact(tcfg.storage or default_storage())
        params["tune.warmup_epochs_resolved"] = str(prep.warmup)
        mlflow.log_params({k: v for k, v in params.items() if k not in existing})
        study = load_study(prep)  # create it (and fail early on a bad storage) before any worker starts
        # what `clips tune --join NAME --storage URL` on another machine needs
        study.set_user_attr("config", dataclasses.asdict(tcfg) | {"storage": "", "workers": 1})
        study.set_user_attr("parent_run_id", parent.info.run_id)
        log(f"study {tcfg.resolved_study_name()}: {tcfg.n_trials} trials of {tcfg.curriculum}, "
            f"objective {prep.objective}, pruner {tcfg.pruner} (warm-up {prep.warmup} epochs), "
            f"storage {redact(tcfg.storage or default_storage())}; more workers: "
            f"clips tune --join {tcfg.resolved_study_name()} --storage <that storage>")
        if not spawn_on_slots(local_slots(tcfg.workers, tcfg.gpus, tcfg.train),
                              lambda i: worker_args(tcfg, parent.info.run_id, i)):
            run_worker(prep, parent.info.run_id, 0, trial_fn, log=log)
        reeval = reevaluate(prep, parent.info.run_id, log, reeval_fn)
        summary = finalize(prep, parent.info.run_id, reeval)
        for line in summary.get("verdict", []):
            log(line)
    return summary


def _description(tcfg: TuneConfig, prep: TuningSetup) -> str:
    """The tuning parent's description in the UI."""
    tuned = ", ".join(d.name for d in prep.space.dims)
    return (f"**Tuning {tcfg.resolved_study_name()}**: {tcfg.n_trials} trials of {tcfg.curriculum} ({tuned}), "
            f"objective {prep.objective}, pruner {tcfg.pruner}. Each trial is a child run; the best parameters, "
            "the trials table, the figures and the best model are on this run.")


def worker_args(tcfg: TuneConfig, parent_run_id: str, index: int) -> list[str]:
    """Command line of local trial worker ``index`` of this tuning."""
    return ["tune", "--worker-of", parent_run_id, "--worker-index", str(index), *to_args(tcfg)]


def join_tuning(name: str, storage: str, workers: int = 1, gpus: str = "auto", machine: dict | None = None) -> None:
    """Work on the tuning study ``name`` from this machine (its recipe is the study's) until it is done."""
    machine = machine_overrides(machine)
    try:
        attrs = optuna.load_study(study_name=name, storage=open_storage(storage, 180)).user_attrs
    except KeyError:
        raise ClipsError(f"no tuning study {name!r} in this storage: start it with 'clips tune' first") from None
    if "config" not in attrs:
        raise ClipsError(f"study {name!r} was not started by 'clips tune' (no recipe stored with it)")
    values = dict(attrs["config"]) | {"storage": storage, "workers": workers, "gpus": gpus}
    tcfg = TuneConfig(**values)
    tcfg.train = dict(tcfg.train) | machine
    if not spawn_on_slots(local_slots(tcfg.workers, tcfg.gpus, tcfg.train),
                          lambda i: worker_args(tcfg, attrs["parent_run_id"], i)):
        prep = prepare(tcfg)
        run_worker(prep, attrs["parent_run_id"], os.getpid() % 1000)
        from clips.tuning.reevaluate import join as join_reevaluation

        join_reevaluation(prep, attrs["parent_run_id"])


def to_args(tcfg: TuneConfig) -> list[str]:
    """Command-line form of a TuneConfig, for worker processes."""
    args = []
    for f in dataclasses.fields(tcfg):
        if f.name in ("train", "workers", "gpus"):
            continue
        args += [f"--{f.name.replace('_', '-')}", str(getattr(tcfg, f.name))]
    for k, v in tcfg.train.items():
        args += ["-P", f"{k}={v}"]
    return args
