"""What a tuning study is: its options and their defaults, the one place they are written
(``clips tune --help`` and the ``tune`` entry point of MLproject read them from here)."""
from __future__ import annotations

from dataclasses import dataclass, field

from clips.paths import DEFAULT_PROFILE

PRUNERS = ("median", "hyperband", "none")
# The re-evaluation's size by profile: (top trials, most fresh seeds, the defaults and the baseline too). 3 x 3: with
# a run-to-run spread of ~0.1 Dice, 3 seeds bring one candidate's noise to ~0.06, enough to tell a lucky trial
# from a good one among the top 3 (docs/tuning.md). A smoke tuning is a quick check: its winner once, alone.
REEVALUATION = {DEFAULT_PROFILE: (1, 1, False), "default": (3, 3, True)}


@dataclass
class TuneConfig:
    curriculum: str = "smoothing"
    n_trials: int = 10
    storage: str = ""  # empty: a SQLite file next to the MLflow store
    study_name: str = ""  # empty: clips-<curriculum>-<profile>
    timeout_min: float = 0.0  # 0: no limit
    objective: str = "dice"
    pruner: str = "median"
    warmup_epochs: int = -1  # -1: the longest curriculum ramp of the space
    seed: int = 0
    workers: int = 0  # local worker processes; 0: one per GPU (gpus), one on a CPU-only machine
    gpus: str = "auto"  # auto: every visible GPU; none: CPU; or "0,1"
    tune_lr: bool = False
    retry_failed: int = 1  # re-run a trial whose worker died, at most this often
    heartbeat_grace_s: int = 180  # a worker silent this long is dead
    space_file: str = ""
    # After the search: the best trials' settings, the defaults and the baseline trained again with fresh seeds
    # (clips/tuning/reevaluate.py), seed round by seed round; a trial clearly behind the best is dropped for
    # futility and not trained again. -1: sized by the profile (REEVALUATION); 0: off.
    reevaluate_top: int = -1
    reevaluate_seeds: int = -1
    train: dict = field(default_factory=dict)  # training parameters: profile, data_dir, epochs, ...

    def reevaluation(self) -> tuple[int, int, bool]:
        """(top trials, most fresh seeds, with the defaults and the baseline) of the re-evaluation: as given
        (the defaults and the baseline then always), or the profile's (REEVALUATION)."""
        profile = self.train.get("profile") or DEFAULT_PROFILE
        top, seeds, references = REEVALUATION.get(profile, REEVALUATION["default"])
        if self.reevaluate_top >= 0 or self.reevaluate_seeds >= 0:
            references = True
        return (top if self.reevaluate_top < 0 else self.reevaluate_top,
                seeds if self.reevaluate_seeds < 0 else self.reevaluate_seeds, references)

    def resolved_study_name(self) -> str:
        return self.study_name or f"clips-{self.curriculum}-{self.train.get('profile') or DEFAULT_PROFILE}"
