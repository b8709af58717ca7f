"""Re-evaluation after a search: the winner's curse, measured, and settings chosen on fresh seeds.

One training per trial picks the luckiest trial as much as the best one: two trainings of the same settings
differ by about 0.1 Dice at the study profile, as much as good settings differ from each other, so the search
winner's objective overstates what its settings are worth. After the search, the ``reevaluate_top`` best
trials' settings, the curriculum's defaults and the baseline ``none`` are each trained again with
``reevaluate_seeds`` fresh seeds on the search's split, as jobs of a queue in the tuning's storage (workers on
several machines share them; a killed worker's job is trained again). The winner is the trial with the best
re-evaluated mean objective on the validation patients; the verdict, tuned settings against the defaults and
against the baseline, is the study's run-aware paired test (clips/stats/run_aware.py) on the *test* patients,
which no choice was made on.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from mlflow.tracking import MlflowClient

from clips.curricula import BASELINE
from clips.scaling.queue import JobQueue
from clips.scaling.worker_loop import close_dead_workers_runs, drain
from clips.scaling.workers import worker_name
from clips.stats.run_aware import pair_runs, run_aware_test
from clips.tracking import schema
from clips.tracking.runs import inherited_tags, never_left_running
from clips.tracking.tables import run_table

DEFAULTS = "defaults"
SEED_OFFSET = 1000  # fresh seeds: the search's seed + 1000 + s, never one a trial used


@dataclass(frozen=True)
class Candidate:
    key: str  # "trial7", "defaults", "none": the job prefix
    label: str  # "trial 7", "defaults", "none": in run names and tables
    curriculum: str
    params: dict = field(default_factory=dict)  # the trial's parameters (empty: the curriculum's defaults)
    search_value: float = float("nan")  # the search-time objective (trials only)


def candidates(study: optuna.Study, top: int, curriculum: str, references: bool = True) -> list[Candidate]:
    """The ``top`` best complete trials, and with ``references`` the curriculum's defaults and the baseline."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    best = sorted(done, key=lambda t: t.value, reverse=True)[:top]
    out = [Candidate(f"trial{t.number}", f"trial {t.number}", curriculum, dict(t.params), float(t.value))
           for t in best]
    if not references:
        return out
    out.append(Candidate(DEFAULTS, DEFAULTS, curriculum))
    if curriculum != BASELINE:
        out.append(Candidate(BASELINE, BASELINE, BASELINE))
    return out


def pick_winner(search: dict[str, float], reevaluated: dict[str, float]) -> str:
    """The re-evaluated best among the trials (ties: the search's better one)."""
    trials = [k for k in reevaluated if k in search and np.isfinite(reevaluated[k])]
    return max(trials, key=lambda k: (reevaluated[k], search[k]))


# ----------------------------------------------------------------------------- the work
def queue_name(study_name: str) -> str:
    return f"reeval:{study_name}"


def run_jobs(prep, parent_run_id: str, cands: list[Candidate], seeds: int, train_fn, log=print,
             poll_s: float = 2.0, drop=None) -> None:
    """Fill the re-evaluation queue seed round by seed round and train each round's jobs until none is left
    (waiting for other workers' jobs, and training again those a dead worker gave back); after each round,
    ``drop(seeds done)`` names the candidates that are not trained again."""
    tcfg = prep.tcfg
    client = MlflowClient()
    parent = client.get_run(parent_run_id)

    queue = JobQueue(queue_name(tcfg.resolved_study_name()), tcfg.storage, tcfg.heartbeat_grace_s,
                     on_dead_worker=close_dead_workers_runs, create=True)
    by_key = {c.key: c for c in cands}
    queue.set_meta(candidates=[dataclasses.asdict(c) for c in cands], seeds=seeds)  # for `clips tune --join`
    dropped: set[str] = set()
    for s in range(seeds):
        queue.fill([f"{c.key}:{s}" for c in cands if c.key not in dropped])
        _drain(queue, by_key, prep, parent, client, train_fn, log, poll_s)
        if drop is not None and s + 1 < seeds:
            dropped |= {c.key for c in cands if c.label in set(drop(s + 1))}


def _drain(queue: JobQueue, by_key: dict, prep, parent, client, train_fn, log, poll_s: float) -> None:
    """Train the queue's jobs until none is waiting or running (clips/scaling/worker_loop.py's loop)."""
    tcfg = prep.tcfg

    def run_job(claim) -> None:
        key, s = claim.job.split(":")
        cand = by_key[key]
        seed = base_seed(tcfg) + SEED_OFFSET + int(s)
        run = client.create_run(parent.info.experiment_id, run_name=f"reeval · {cand.label} · seed {seed}",
                                tags={**inherited_tags(parent), "mlflow.parentRunId": parent.info.run_id,
                                      schema.ROLE: schema.TUNE_REEVAL, schema.REEVAL_CANDIDATE: cand.label,
                                      schema.STUDY_NAME: tcfg.resolved_study_name(), schema.WORKER: worker_name()})
        queue.set_attr(claim, "run_id", run.info.run_id)
        with never_left_running(client, run.info.run_id):
            train_fn(cand, seed, run.info.run_id, prep)
        log(f"reeval {cand.label} · seed {seed}: done")

    drain(queue, run_job, ready=lambda: (lambda job: job.split(":")[0] in by_key), until_all_done=True,
          poll_s=poll_s, log=log, label="reeval ")


def join(prep, parent_run_id: str, log=print) -> None:
    """A joining worker (``clips tune --join``) helps with the re-evaluation's queued jobs; the tuning's own
    command fills the rounds (and drops candidates), so a joiner only takes what is there."""
    from clips.errors import ClipsError

    tcfg = prep.tcfg
    try:
        queue = JobQueue(queue_name(tcfg.resolved_study_name()), tcfg.storage, tcfg.heartbeat_grace_s)
        meta = queue.meta
    except ClipsError:
        return  # no re-evaluation (yet): nothing to help with
    cands = [Candidate(**c) for c in meta.get("candidates", [])]
    if cands:
        client = MlflowClient()
        _drain(queue, {c.key: c for c in cands}, prep, client.get_run(parent_run_id), client, train_candidate, log,
               2.0)


FUTILITY = dict(effect=0.05, futility_power=0.2)  # a trial is dropped when it cannot be shown 0.05 above the best


def futile(cands: list[Candidate], runs: dict, objective, hard, done: int, seeds: int, log=print) -> list[str]:
    """The trials to drop after ``done`` seed rounds of ``seeds``: each trial against the best so far (the highest
    re-evaluated mean) by the sequential machinery of studies (clips/stats/sequential.py), paired by seed, on the
    validation objective; a trial whose contrast with the best stops for futility or harm is not trained again.
    The defaults and the baseline are never dropped (the verdicts need them); the winner is still chosen on the
    re-evaluated means."""
    from clips.stats.run_aware import pair_runs, run_aware_test
    from clips.stats.sequential import SequentialPlan, decide

    if done < 2 or seeds < 2:
        return []
    plan = SequentialPlan(max_seeds=seeds, min_seeds=2, **FUTILITY)
    tables = {c.label: _per_run(runs[c.label], objective, hard, 1).rename(columns={"d": "m"})
              for c in cands if c.key.startswith("trial") and runs[c.label]}
    means = {k: float(t.groupby("seed")["m"].mean().mean()) for k, t in tables.items() if len(t)}
    if len(means) < 2:
        return []
    best = max(means, key=means.get)
    out = []
    for label in means:
        if label == best:
            continue
        r = run_aware_test(pair_runs(tables[label], tables[best], "m"), randomisation=False)
        look = decide(r.estimate, r.se, r.p_value, done, plan, r.design.patients, r.components)
        if look.decision in ("futility", "harm"):
            out.append(label)
            log(f"re-evaluation: {label} dropped after {done} seeds ({look.decision} against {best}: "
                f"{objective} {r.estimate:+.4f}, conditional power {look.conditional_power:.2f})")
    return out


def base_seed(tcfg) -> int:
    return int(tcfg.train.get("seed", 0))


def train_candidate(cand: Candidate, seed: int, run_id: str, prep) -> None:
    """The default job: train the candidate's settings with a fresh seed on the search's split."""
    from clips.config import build_config
    from clips.training.trainer import train

    tcfg = prep.tcfg
    search = build_config(dict(tcfg.train) | {"curriculum": tcfg.curriculum})
    split_seed = search.split_seed if search.split_seed >= 0 else search.seed  # the split every trial had
    params = dict(tcfg.train) | {"curriculum": cand.curriculum, "seed": str(seed), "split_seed": str(split_seed)}
    params |= {k: str(v) for k, v in cand.params.items()}
    train(build_config(params), log=lambda *_: None, run_id=run_id)


# ----------------------------------------------------------------------------- the answer
def collect(parent_run_id: str, cands: list[Candidate]) -> dict[str, list[tuple[int, pd.DataFrame, pd.DataFrame]]]:
    """candidate label -> [(seed, validation table, test table)] of its finished re-evaluation runs."""
    client = MlflowClient()
    runs = client.search_runs([client.get_run(parent_run_id).info.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent_run_id}' and {schema.tag_is(schema.ROLE, schema.TUNE_REEVAL)} and "
        "attributes.status = 'FINISHED'"), max_results=5000)
    out: dict[str, list] = {c.label: [] for c in cands}
    for r in runs:
        label = r.data.tags.get(schema.REEVAL_CANDIDATE)
        val, test = (run_table(client, r.info.run_id, t) for t in (schema.VAL_TABLE, schema.TEST_TABLE))
        if label in out and val is not None:
            out[label].append((int(r.data.params.get(schema.SEED_PARAM, 0)), val, test))
    return out


def _per_run(runs, objective, hard, which: int) -> pd.DataFrame:
    """patient_id, fold (-1: one split), seed (the run's rank), value: the objective's column, signed."""
    rows = []
    for rank, run in enumerate(sorted(runs, key=lambda r: r[0])):
        table = run[which]
        if table is None:
            continue
        if objective.hard_only and hard is not None:
            table = table[table["patient_id"].isin(hard)]
        rows.append(pd.DataFrame({"patient_id": table["patient_id"].astype(str), "fold": -1, "seed": rank,
                                  "d": objective.sign * table[objective.column].to_numpy(float)}))
    return pd.concat(rows, ignore_index=True).dropna() if rows else pd.DataFrame(columns=["patient_id", "fold",
                                                                                         "seed", "d"])


def summarise(cands: list[Candidate], runs: dict, objective, hard: set[str] | None) -> dict:
    """The re-evaluation table, the winner, the winner's curse, and the verdicts against defaults and baseline."""
    rows, reevaluated = [], {}
    for c in cands:
        d = _per_run(runs[c.label], objective, hard, 1)
        r = run_aware_test(d) if len(d) else None
        mean = float(d.groupby("seed")["d"].mean().mean()) if len(d) else float("nan")
        reevaluated[c.label] = mean
        rows.append({"candidate": c.label, "params": ", ".join(f"{k}={v}" for k, v in c.params.items()),
                     "search_objective": c.search_value, "runs": int(d["seed"].nunique()) if len(d) else 0,
                     "reeval_mean": mean, "ci_low": r.ci_low if r else float("nan"),
                     "ci_high": r.ci_high if r else float("nan")})
    table = pd.DataFrame(rows)
    trials = {c.label: c.search_value for c in cands if c.key.startswith("trial")}
    out = {"table": table, "winner": None, "search_winner": None, "curse": float("nan"), "verdicts": []}
    if not any(np.isfinite(reevaluated.get(k, np.nan)) for k in trials):
        return out
    winner = pick_winner(trials, reevaluated)
    search_winner = max(trials, key=trials.get)
    out |= {"winner": winner, "search_winner": search_winner,
            "curse": trials[search_winner] - reevaluated[search_winner]}
    for ref in (DEFAULTS, BASELINE):
        if ref not in runs or not runs[ref]:
            continue
        a, b = (_per_run(runs[x], objective, hard, 2).rename(columns={"d": "m"}) for x in (winner, ref))
        res = run_aware_test(pair_runs(a, b, "m")) if len(a) and len(b) else None
        out["verdicts"].append({"against": ref, "result": res})
    return out


def verdict_lines(summary: dict, objective) -> list[str]:
    lines = []
    w = summary["winner"]
    if w is None:
        return ["re-evaluation: no trial finished its re-evaluation runs"]
    t = summary["table"].set_index("candidate")
    sw = summary["search_winner"]
    lines.append(f"re-evaluated winner: {w} ({t.loc[w, 'params']}), validation {objective} "
                 f"{t.loc[w, 'reeval_mean']:.4f} over {t.loc[w, 'runs']} fresh seeds; search winner {sw}: search "
                 f"objective {t.loc[sw, 'search_objective']:.4f}, re-evaluated {t.loc[sw, 'reeval_mean']:.4f} "
                 f"(winner's curse {summary['curse']:+.4f})")
    for v in summary["verdicts"]:
        r = v["result"]
        if r is None or not r.testable:
            lines.append(f"tuned vs {v['against']} on the test patients: no run-aware test "
                         f"({r.note if r else 'no runs'}); descriptive only")
            continue
        better = r.p_value < 0.05 and r.p_randomisation < 0.05
        word = ("better than" if r.estimate > 0 else "worse than") if better else "not distinguishable from"
        lines.append(f"tuned settings are {word} {v['against']} on the test patients: {objective} difference "
                     f"{r.estimate:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}], p = {r.p_value:.3g}, sign-flip p = "
                     f"{r.p_randomisation:.3g} (run-aware test, {r.design.describe()})")
    return lines
