"""A peer arm: another method trained and scored inside a CLIPS study, next to the curricula.

A peer is not a curriculum: it brings its own trainer, network and preprocessing (nnU-Net plans its own), so it
does not go through clips/training. What it shares with every arm is what makes the comparison fair: the
study's folds (the same training, inner validation and test patients), the seeds as run labels, a budget stated
against the CLIPS recipe, and CLIPS's own metric suite on the fold's test patients, logged as a study child with
the same tags and tables, so that the comparison and its run-aware test treat it as one more arm.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from clips.config import TrainConfig
from clips.errors import ConfigError
from clips.values import apply_values


@dataclass
class PeerJob:
    """One (fold, seed) of a peer arm, as the study hands it over."""

    cfg: TrainConfig  # the study's recipe for this fold and seed: split, profile, budget, device
    run_id: str  # the study child to log into (created, RUNNING)
    workdir: Path  # this arm's folder for the study under $CLIPS_HOME (kept: a restart reuses it)
    selection: str  # the study's checkpoint rule (inner_val | last)
    baseline_wall_s: float  # the wall time of this fold's baseline child (seed 0); 0 when not needed
    log: object = print


class Peer(abc.ABC):
    """The base of every peer arm (one private module each, one entry in clips/peers/__init__.py:PEERS)."""

    name: str = ""

    @dataclass
    class Options:
        """The peer's own options (``--peer-option NAME.KEY=VALUE``); a subclass replaces it."""

    @classmethod
    def parse_options(cls, values: dict) -> "Peer.Options":
        opts = cls.Options()
        apply_values(opts, values, f"peer {cls.name} options")
        return opts

    def __init__(self, options: "Peer.Options"):
        self.options = options

    @classmethod  # noqa: B027 - a hook with nothing to do by default
    def check_installed(cls) -> None:
        """Called when a study is checked, before anything trains: raise a one-line ClipsError if the peer's
        software is missing."""

    def needs_baseline_wall(self) -> bool:
        """True when the budget is the baseline's wall time: the study then runs this fold's baseline (seed 0)
        first and hands its wall time over as ``PeerJob.baseline_wall_s``."""
        return False

    @abc.abstractmethod
    def run(self, job: PeerJob) -> None:
        """Called once per (fold, seed) inside the study's child run ``job.run_id`` (the active MLflow run):
        train on the fold's training patients, segment its test patients, log their per-patient table
        (clips.tracking.evaluation.log_evaluation, name "test") and what the run needs to be reproduced. Called
        again for a child whose earlier attempt failed; reuse what is finished on disk."""


def options_of(peer_options: dict[str, str], name: str) -> dict[str, str]:
    """The ``name.``-prefixed entries of a study's peer options, without the prefix."""
    return {k.split(".", 1)[1]: v for k, v in peer_options.items() if k.startswith(name + ".")}


def check_option_names(peer_options: dict[str, str], peers: list[str]) -> None:
    for key in peer_options:
        if "." not in key or key.split(".", 1)[0] not in peers:
            raise ConfigError(f"peer option {key!r}: NAME.KEY=VALUE with NAME one of the study's peers "
                              f"({', '.join(peers) or 'none given'})")

