"""A study's jobs as enqueued trials of an Optuna study: the queue every worker, on any machine, draws from.

Why Optuna's storage: the project already runs it (SQLite locally, PostgreSQL to share), and it has what a job
queue needs: enqueued (WAITING) trials, an atomic claim (a row-locked WAITING -> RUNNING update, as
``Study.ask`` itself does), heartbeats of running trials, and failing of stale ones. One trial is one attempt at
one job (``user_attrs["job"]``). A job is done when an attempt is COMPLETE, and is never run again; an attempt
whose worker died (heartbeat stale) goes back to the queue; a job whose attempts failed ``MAX_OWN_FAILURES`` times
for their own reason (an exception, recorded in ``user_attrs["error"]``) is failed for good.
"""
from __future__ import annotations

import threading
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState

from clips.errors import ClipsError
from clips.scaling.storage import open_storage

WITHDRAWN = "withdrawn"  # user attr of a cancelled attempt, and the status of its job
HANDED_BACK = "handed_back"  # user attr of an attempt whose worker left (pre-empted): why; not a failure
MAX_OWN_FAILURES = 2  # an exception twice: the job's own fault (bad data, a crash), not bad luck
MAX_DEAD_WORKERS = 3  # killed this often: stop retrying (it may be what kills the worker, e.g. memory)
PREFIX = "queue:"


@dataclass(frozen=True)
class Claim:
    trial_id: int
    number: int
    job: str
    attempt: int


class JobQueue:
    def __init__(self, name: str, storage: str = "", grace_s: int = 180,
                 on_dead_worker: Callable[[dict], None] | None = None, create: bool = False):
        """Open (or with ``create`` make) the queue of study ``name``. ``on_dead_worker(user_attrs)`` runs for an
        attempt whose worker died, before the job goes back to the queue (to close its MLflow run)."""
        self.name, self._on_dead = name, on_dead_worker
        self.storage = open_storage(storage, grace_s, on_stale=self._stale)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would drown the study's own
        try:
            if create:
                self.study = optuna.create_study(study_name=PREFIX + name, storage=self.storage, load_if_exists=True)
            else:
                self.study = optuna.load_study(study_name=PREFIX + name, storage=self.storage)
        except KeyError:
            raise ClipsError(f"no study {name!r} in this storage: start it with 'clips study' first") from None

    # ------------------------------------------------------------------ the study's description
    @property
    def meta(self) -> dict:
        return self.study.user_attrs

    def set_meta(self, **values) -> None:
        for k, v in values.items():
            self.study.set_user_attr(k, v)

    # ------------------------------------------------------------------ filling and reading
    def _trials(self, states=None):
        return self.study.get_trials(deepcopy=False, states=states)

    def fill(self, jobs: list[str], done_elsewhere: set[str] = frozenset()) -> int:
        """Enqueue each job that is neither done, queued, running nor failed for good; returns how many."""
        status = self.status()
        added = 0
        for job in jobs:
            if job in done_elsewhere or status.get(job) in ("done", "waiting", "running", "failed", WITHDRAWN):
                continue
            self.study.enqueue_trial({}, user_attrs={"job": job, "attempt": self._attempts(job) + 1})
            added += 1
        return added

    def _attempts(self, job: str) -> int:
        return sum(t.user_attrs.get("job") == job for t in self._trials())

    def status(self) -> dict[str, str]:
        """job -> done | running | waiting | withdrawn | failed (for good) | retry (failed, not yet queued again)."""
        by_job: dict[str, list] = {}
        for t in self._trials():
            if "job" in t.user_attrs:
                by_job.setdefault(t.user_attrs["job"], []).append(t)
        out = {}
        for job, trials in by_job.items():
            states = {t.state for t in trials}
            if TrialState.COMPLETE in states:
                out[job] = "done"
            elif TrialState.RUNNING in states:
                out[job] = "running"
            elif TrialState.WAITING in states:
                out[job] = "waiting"
            elif any(WITHDRAWN in t.user_attrs for t in trials):
                out[job] = WITHDRAWN
            else:
                out[job] = "failed" if self._failed_for_good(trials) else "retry"
        return out

    @staticmethod
    def _failed_for_good(trials) -> bool:
        kinds = Counter("own" if "error" in t.user_attrs else "dead" for t in trials if t.state == TrialState.FAIL)
        return kinds["own"] >= MAX_OWN_FAILURES or kinds["dead"] >= MAX_DEAD_WORKERS

    def errors(self, job: str) -> list[str]:
        return [t.user_attrs.get("error", "worker died") for t in self._trials((TrialState.FAIL,))
                if t.user_attrs.get("job") == job]

    # ------------------------------------------------------------------ working
    def claim(self, ready: Callable[[str], bool] = lambda job: True, worker: str = "") -> Claim | None:
        """Atomically take the first waiting job that is ``ready`` (e.g. its teacher is done), or None."""
        for t in self._trials((TrialState.WAITING,)):
            job = t.user_attrs.get("job")
            if job is None or not ready(job):
                continue
            if not self._take(t):
                continue
            self.storage.record_heartbeat(t._trial_id)  # stale-detectable from the first second
            self.storage.set_trial_user_attr(t._trial_id, "worker", worker)
            return Claim(t._trial_id, t.number, job, int(t.user_attrs.get("attempt", 1)))
        return None

    def _take(self, trial) -> bool:
        """Atomically WAITING -> RUNNING; False when another worker was first, or the trial was withdrawn
        (finished) or is gone since the list was read."""
        try:
            return bool(self.storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING))
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            return False

    def withdraw(self, match: Callable[[str], bool], reason: str) -> list[str]:
        """Cancel every waiting attempt of the jobs ``match`` accepts; returns those jobs. Each is first taken
        like a claim (atomic WAITING -> RUNNING), so a job a worker claimed a moment before is left to run."""
        cancelled = []
        for t in self._trials((TrialState.WAITING,)):
            job = t.user_attrs.get("job")
            if job is None or not match(job):
                continue
            if not self._take(t):
                continue
            self.storage.set_trial_user_attr(t._trial_id, WITHDRAWN, reason)
            self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            cancelled.append(job)
        return cancelled

    @contextmanager
    def beating(self, claim: Claim):
        """Record the claim's heartbeat in the background while the job runs."""
        stop = threading.Event()
        interval = self.storage.get_heartbeat_interval()

        def beat():
            while not stop.wait(interval):
                try:
                    self.storage.record_heartbeat(claim.trial_id)
                except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                    pass

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def set_attr(self, claim: Claim, key: str, value) -> None:
        self.storage.set_trial_user_attr(claim.trial_id, key, value)

    def complete(self, claim: Claim, value: float = 0.0) -> None:
        self.storage.set_trial_state_values(claim.trial_id, state=TrialState.COMPLETE, values=[value])

    def hand_back(self, claim: Claim, reason: str) -> None:
        """The worker leaves (pre-empted) before finishing: the attempt ends without counting as a failure and the
        job is waiting again at once, for any worker (no heartbeat grace to wait out)."""
        self.storage.set_trial_user_attr(claim.trial_id, HANDED_BACK, reason[:500])
        self.storage.set_trial_state_values(claim.trial_id, state=TrialState.PRUNED)
        self.study.enqueue_trial({}, user_attrs={"job": claim.job, "attempt": self._attempts(claim.job) + 1})

    def fail(self, claim: Claim, reason: str) -> bool:
        """Record the attempt's own failure; queue the job again unless it failed for good (returns True then)."""
        self.storage.set_trial_user_attr(claim.trial_id, "error", reason[:500])
        self.storage.set_trial_state_values(claim.trial_id, state=TrialState.FAIL)
        return self._requeue(claim.job)

    def _requeue(self, job: str) -> bool:
        trials = [t for t in self._trials() if t.user_attrs.get("job") == job]
        if self._failed_for_good(trials):
            return True
        self.study.enqueue_trial({}, user_attrs={"job": job, "attempt": len(trials) + 1})
        return False

    def reap(self) -> None:
        """Fail the attempts of workers whose heartbeat stopped (their jobs go back to the queue)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)

    def _stale(self, study, trial) -> None:  # called by fail_stale_trials, once per dead attempt
        job = trial.user_attrs.get("job")
        if job is None:
            return
        if self._on_dead:
            try:
                self._on_dead(dict(trial.user_attrs))
            except Exception:  # noqa: BLE001 - closing a run is best effort: the job must go back
                pass
        self._requeue(job)

    def pending(self) -> tuple[int, int]:
        """(waiting, running) attempts."""
        states = Counter(t.state for t in self._trials((TrialState.WAITING, TrialState.RUNNING)))
        return states[TrialState.WAITING], states[TrialState.RUNNING]
