"""Peer arms in a study (``--peers nnunet``): another method trained on every fold and seed by its own trainer.

The study hands each (fold, seed) the recipe of a trained child of that fold and seed (its split, profile, batch
size, steps, device), so that the peer sees exactly the patients the curricula see; the peer (clips/peers) trains,
segments the fold's test patients and logs CLIPS's per-patient suite into the child, which the comparison then
reads like any arm's (the same tags, ``cfg.curriculum`` = the peer's name).
"""
from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from clips.config import build_config
from clips.curricula import BASELINE, REGISTRY
from clips.errors import ConfigError
from clips.paths import clips_home
from clips.peers import get_peer
from clips.peers.base import PeerJob, check_option_names, options_of
from clips.study.config import PEER, Job, StudyConfig
from clips.tracking import schema

# the baseline's training loop: what an equal-wall-time budget gives a peer (clips/training/timing.py)
LOOP_PHASES = tuple(f"{schema.TIME}{p}_s" for p in ("steps", "validation", "checkpoint"))  # the trainer's loop


def peer_of(scfg: StudyConfig, name: str):
    cls = get_peer(name)
    return cls(cls.parse_options(options_of(scfg.peer_options, name)))


def check_peers(scfg: StudyConfig) -> None:
    check_option_names(scfg.peer_options, scfg.peers)
    for name in scfg.peers:
        if name in REGISTRY or name in scfg.references:
            raise ConfigError(f"peer {name!r}: a curriculum or a reference has that name")
        peer = peer_of(scfg, name)
        peer.check_installed()
        if peer.needs_baseline_wall() and BASELINE not in scfg.curricula:
            raise ConfigError(f"peer {name}: its budget is the baseline's wall time; include the baseline {BASELINE}")


def waits_for(scfg: StudyConfig, job: Job) -> Job | None:
    """The child a peer's job waits for (the fold's baseline of the first seed, for a wall-time budget), else
    None."""
    if job.kind == PEER and peer_of(scfg, job.arm).needs_baseline_wall():
        return Job(BASELINE, job.fold, scfg.first_seed)
    return None


def run_peer(scfg: StudyConfig, job: Job, run_id: str, split_params: dict, baseline_run=None, log=print) -> None:
    """Train and score the peer for ``job`` into the child ``run_id``; ``split_params``: a trained child's
    parameters of the same fold and seed; ``baseline_run``: the finished baseline it waited for, if any."""
    peer = peer_of(scfg, job.arm)
    wall = 0.0
    if baseline_run is not None:
        metrics = baseline_run.data.metrics
        wall = sum(metrics.get(k, 0.0) for k in LOOP_PHASES)
    MlflowClient().set_tag(run_id, schema.PEER, job.arm)
    with mlflow.start_run(run_id=run_id, nested=True):  # the study's parent is the active run
        peer.run(PeerJob(cfg=build_config(split_params), run_id=run_id, selection=scfg.selection,
                         workdir=clips_home() / "peers" / peer.name / scfg.name(), baseline_wall_s=wall, log=log))
