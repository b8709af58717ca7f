"""What a study is: its options and their defaults, the one place they are written
(``clips study --help`` and the ``study`` entry point of MLproject read them from here)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import NamedTuple

from clips.paths import DEFAULT_PROFILE

# Contrasts named before the results are seen (variant:reference). The primary family answers the
# study's questions: does smoothing help, does ordering by difficulty help (predefined against random,
# the same pacing in a random order), does self-paced learning help, does growing the patch help.
PRIMARY_CONTRASTS = ("smoothing:none", "predefined:random", "self_paced:none", "progressive_patch:none")


# What a study's arm is, and so how its child fills its run (clips/study/runner.py, ARM_RUNNERS): a curriculum
# trained by CLIPS's trainer, a fixed reference model evaluated (clips/study/reference.py), or a peer method trained
# by its own trainer (clips/study/peer_arm.py). Every kind logs the same per-patient suite, read alike by compare.
CURRICULUM, REFERENCE, PEER = "curriculum", "reference", "peer"


class Job(NamedTuple):
    """One child of a study: an arm (of ``kind`` CURRICULUM, REFERENCE or PEER) with a seed, tested on a fold (-1:
    the single split)."""

    arm: str
    fold: int
    seed: int
    kind: str = CURRICULUM

    @property
    def key(self) -> str:  # tag clips.study_key
        return f"{self.arm}:{self.fold}:{self.seed}" if self.fold >= 0 else f"{self.arm}:{self.seed}"


SELECTIONS = ("inner_val", "last")  # how a child picks its checkpoint (StudyConfig.selection)


@dataclass
class StudyConfig:
    curricula: list[str] = field(default_factory=list)  # empty: every registered curriculum
    seeds: int = 3  # per fold, the same for every arm; a primary contrast needs at least 3 (inference.MIN_SEEDS)
    # The first seed: a chunk of a long study (`--seeds 4-7`: first_seed 4, seeds 4) trains only its own seeds, on
    # any machine or store; `clips compare --per-patient a.csv,b.csv` analyses the chunks' union (docs/study.md).
    first_seed: int = 0
    # The baseline's seeds, when more than ``seeds``: seeds up to 2 x ``seeds`` give the A/A calibration check as
    # many seeds per side as the contrasts have (with ``seeds`` only, it splits them in halves). 0: as ``seeds``.
    # The contrasts pair runs by (fold, seed), so they use the seeds every arm has, never the extra ones.
    baseline_seeds: int = 0
    folds: int = 0  # > 1: cross-validation, every patient tested once per curriculum and seed; 0: one split
    selection: str = "inner_val"  # checkpoint: best on an inner validation split of the training folds, or "last"
    study_name: str = ""  # default clips-study-<profile>
    split_seed: int = 0  # the outer folds (fixed for every child, so each fold's runs are crossed with its patients)
    # The inner validation split follows the child's seed (Bouthillier et al. 2021: randomise every source of
    # variance you can); the outer folds stay fixed by split_seed.
    vary_inner_split: bool = False
    workers: int = 0  # local worker processes; 0: one per GPU (--gpus), one on a CPU-only machine
    gpus: str = "auto"  # auto: every visible GPU; none: CPU; or "0,1"
    heartbeat_grace_s: int = 180  # a worker silent this long is dead: its job goes back to the queue
    # This machine's deadline (clips/scaling/preemption.py: ISO date-time, +MINUTES, or slurm): no job is claimed
    # that the study's median child could not finish by then
    deadline: str = ""
    from_study: dict[str, str] = field(default_factory=dict)  # curriculum -> Optuna study name (best params)
    storage: str = ""  # Optuna storage of the job queue and of from_study (default: SQLite beside the MLflow store)
    train: dict = field(default_factory=dict)  # the shared recipe: profile, data_dir, epochs, teacher_uri, ...
    contrasts: list[str] = field(default_factory=lambda: list(PRIMARY_CONTRASTS))  # primary, variant:reference
    # Fixed models evaluated (not trained) in every fold, name -> model URI (clips/study/reference.py)
    references: dict[str, str] = field(default_factory=dict)
    # Peer arms: other methods trained on the same folds and seeds by their own trainer (clips/peers: nnunet),
    # and their options, NAME.KEY -> VALUE (e.g. nnunet.budget: wall)
    peers: list[str] = field(default_factory=list)
    peer_options: dict[str, str] = field(default_factory=dict)
    # A group-sequential plan (clips/stats/sequential.py: SequentialPlan's fields; empty: a fixed design): seed rounds
    # looked at from min_seeds on, each primary contrast stopped at its spending boundary or for futility.
    sequential: dict = field(default_factory=dict)
    # Per-patient tables of this study's earlier chunks, trained on other machines or stores (their committed
    # per_patient.csv): their children are not trained again, and every look and the report analyse them with this
    # chunk's, so a study outlives the machine that started it (docs/study.md, 'A long study runs in chunks').
    earlier_chunks: list[str] = field(default_factory=list)

    def __post_init__(self):
        # imported here: the command line reads the defaults without importing torch
        from clips.curricula import REGISTRY

        self.curricula = list(self.curricula) or list(REGISTRY)

    def to_dict(self) -> dict:
        """What a joining worker needs to rebuild the study (JSON-able; stored with the queue)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("storage", "workers", "gpus", "deadline")}

    @classmethod
    def from_dict(cls, values: dict) -> "StudyConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def plan(self):
        """The SequentialPlan, or None for a fixed design."""
        if not self.sequential:
            return None
        from clips.stats.sequential import SequentialPlan

        return SequentialPlan(**self.sequential)

    def name(self) -> str:
        return self.study_name or f"clips-study-{self.train.get('profile') or DEFAULT_PROFILE}"

    def seeds_of(self, curriculum: str) -> int:
        from clips.curricula import BASELINE

        return max(self.seeds, self.baseline_seeds) if curriculum == BASELINE else self.seeds

    def seed_range(self, curriculum: str) -> range:
        """The seeds this study (or chunk) trains ``curriculum`` with."""
        return range(self.first_seed, self.first_seed + self.seeds_of(curriculum))

    def seeds_through(self) -> int:
        """Seeds per fold once this chunk is in (0 to its last): what a primary contrast will have (a sequential
        study: its maximum)."""
        return self.sequential["max_seeds"] if self.sequential else self.first_seed + self.seeds

    def jobs(self) -> list[Job]:
        """Every child; the baseline's first-seed children first (they may teach), then seed by seed (every arm and
        fold of seed 1, then of seed 2, ...), so that a study stopped early holds whole seeds of every arm:
        balanced run pairs for the run-aware test."""
        from clips.curricula import BASELINE
        from clips.data.splits import cross_validated

        folds = range(self.folds) if cross_validated(self.folds) else [-1]
        first = self.first_seed
        jobs = [Job(c, f, s) for c in self.curricula for f in folds for s in self.seed_range(c)]
        jobs += [Job(p, f, s, PEER) for p in self.peers for f in folds for s in self.seed_range(p)]
        # a fixed model: one evaluation a fold
        jobs += [Job(r, f, first, REFERENCE) for r in self.references for f in folds]
        return sorted(jobs, key=lambda j: (not (j.arm == BASELINE and j.seed == first), j.seed))

    def arms(self) -> set[str]:
        """Every arm of the study, of every kind."""
        return set(self.curricula) | set(self.references) | set(self.peers)
