"""The one loop of a queue worker, for every caller (a study's children, tuning's re-evaluation), and the two
things around it that every caller needs: closing the run of a worker that died, and starting one worker
process per local slot.

When each hook runs, in :func:`drain`'s loop:

- ``keep_going()`` before each claim: False ends the loop (pre-emption asked, a deadline too close);
- ``ready()`` before each claim: a predicate over job keys (a job whose prerequisite is unsettled waits);
- ``run_job(claim)`` with the claim's heartbeat recorded in the background; it returns normally (the attempt is
  COMPLETE), raises :class:`Preempted` (the job is handed back at once, not failed, and the loop ends by
  re-raising) or raises anything else (the attempt fails; the job is queued again unless it failed for good);
- ``on_wait(waiting, running)`` once per wait, when nothing can be claimed but jobs are queued or running;
- ``on_done(claim)`` after a job's attempt is recorded COMPLETE.
"""
from __future__ import annotations

import time
from typing import Callable

from clips.errors import Preempted
from clips.scaling.devices import Slot
from clips.scaling.queue import Claim, JobQueue
from clips.scaling.workers import spawn_clips_workers, worker_name


def drain(queue: JobQueue, run_job: Callable[[Claim], None], *,
          ready: Callable[[], Callable[[str], bool]] | None = None, until_all_done: bool = False,
          poll_s: float = 2.0, keep_going: Callable[[], bool] = lambda: True,
          on_wait: Callable[[int, int], None] = lambda waiting, running: None,
          on_done: Callable[[Claim], None] = lambda claim: None, log=print, label: str = "") -> None:
    """Take the queue's jobs and run them until nothing is left to take (``until_all_done``: also until no job
    runs elsewhere, taking those a dead worker gave back). ``label`` prefixes the loop's own lines."""
    waited = False
    while keep_going():
        queue.reap()
        claim = queue.claim(ready() if ready else (lambda job: True), worker=worker_name())
        if claim is None:
            waiting, running = queue.pending()
            if not waiting and (not running or not until_all_done):
                return
            if not waited:
                on_wait(waiting, running)
                waited = True
            time.sleep(poll_s)
            continue
        waited = False
        with queue.beating(claim):
            try:
                run_job(claim)
            except Preempted as exc:  # told to leave: the job waits again at once, its run resumes elsewhere
                queue.hand_back(claim, str(exc))
                log(f"{label}{claim.job}: {exc}; handed back to the queue")
                raise
            except Exception as exc:  # noqa: BLE001 - one failed job must not stop the others
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                final = queue.fail(claim, reason)
                log(f"{label}{claim.job} failed (attempt {claim.attempt}): {reason}"
                    + ("; failed for good" if final else "; queued again"))
                continue
        queue.complete(claim)
        on_done(claim)


def close_dead_workers_runs(attrs: dict) -> None:
    """A queue's ``on_dead_worker``: the run of an attempt whose worker died (its ``run_id`` attribute) ends FAILED
    instead of RUNNING for ever."""
    from mlflow import MlflowClient

    from clips.tracking import schema

    client, run_id = MlflowClient(), attrs.get("run_id")
    if run_id and client.get_run(run_id).info.status == "RUNNING":
        schema.mark_failed(client, run_id, f"worker {attrs.get('worker', '?')} died (heartbeat stale)")


def spawn_on_slots(slots: list[Slot], args_of: Callable[[int], list[str]]) -> bool:
    """With more than one local slot, one ``clips`` worker process per slot (``args_of(i)``: its command line) and
    True when they have ended; with one slot, False: the caller works in this process."""
    if len(slots) <= 1:
        return False
    spawn_clips_workers([args_of(i) for i in range(len(slots))], slots)
    return True
