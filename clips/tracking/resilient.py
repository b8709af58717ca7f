"""Logging that survives a tracking server going away during training.

MLflow's client already retries each request (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
exponential back-off). When it gives up, :class:`Spool` keeps the operation in
``<run folder>/spool.jsonl`` with its original timestamp and training goes on; every
later call first replays what is pending, in order. If the server is still away at the
end, training waits for it (``outage_wait_min``), and otherwise stops with a message:
everything is on the local disk, and ``clips train --resume <run id>`` uploads it and
completes the run once the server is back.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from clips.tracking.server import health


class Spool:
    def __init__(self, run_id: str, folder: Path, log=print):
        self.run_id, self.path, self.log = run_id, Path(folder) / "spool.jsonl", log
        self.client = MlflowClient()
        self.down_since: float | None = None

    # ------------------------------------------------------------------ the calls the loop makes
    def log_metrics(self, metrics: dict, step: int) -> None:
        ts = int(time.time() * 1000)
        self._do({"op": "metrics", "metrics": {k: float(v) for k, v in metrics.items()}, "step": step, "ts": ts})

    def set_tag(self, key: str, value: str) -> None:
        self._do({"op": "tag", "key": key, "value": str(value)})

    def log_artifact(self, local_path: Path, artifact_path: str) -> None:
        self._do({"op": "artifact", "path": str(local_path), "artifact_path": artifact_path})

    # ------------------------------------------------------------------ machinery
    @property
    def pending(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def _apply(self, e: dict) -> None:
        if e["op"] == "metrics":
            metrics = [Metric(k, v, e["ts"], e["step"]) for k, v in e["metrics"].items()]
            self.client.log_batch(self.run_id, metrics=metrics)
        elif e["op"] == "tag":
            self.client.set_tag(self.run_id, e["key"], e["value"])
        elif e["op"] == "artifact":
            self.client.log_artifact(self.run_id, e["path"], e["artifact_path"])

    def _append(self, entries: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            for e in entries:
                fh.write(json.dumps(e) + "\n")

    def flush(self) -> bool:
        """Replay what is pending, in order; True when nothing is left."""
        entries = self.pending
        if not entries:
            return True
        for i, e in enumerate(entries):
            try:
                self._apply(e)
            except Exception:  # noqa: BLE001 - any failure: keep the rest for later
                self.path.write_text("".join(json.dumps(x) + "\n" for x in entries[i:]))
                return False
        self.path.unlink()
        if self.down_since is not None:
            self.log(f"tracking server back after {time.time() - self.down_since:.0f} s; "
                     f"{len(entries)} pending logging operation(s) uploaded")
            self.down_since = None
        return True

    def _do(self, entry: dict) -> None:
        if self.flush():
            try:
                self._apply(entry)
                return
            except Exception as exc:  # noqa: BLE001 - any failure of the server or the network: spool and go on
                if self.down_since is None:
                    self.down_since = time.time()
                    self.log(f"tracking server unreachable ({str(exc).splitlines()[0][:160]}); "
                             f"training goes on, logging is kept in {self.path}")
        self._append([entry])

    def wait_and_flush(self, minutes: float) -> bool:
        """At the end: wait up to ``minutes`` for the server, then upload everything pending."""
        deadline = time.time() + minutes * 60
        while not self.flush():
            if time.time() >= deadline:
                return False
            uri = mlflow.get_tracking_uri()
            if uri.startswith("http") and not health(uri, timeout=5):
                time.sleep(min(10.0, max(0.0, deadline - time.time())))
        return True
