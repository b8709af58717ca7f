"""What a study is: its options and their defaults, the one place they are written
(``clips study --help`` and the ``study`` entry point of MLproject read them from here)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StudyConfig:
    curricula: list[str] = field(default_factory=list)  # empty: every registered curriculum
    seeds: int = 3
    study_name: str = ""  # default clips-study-<profile>
    split_seed: int = 0
    workers: int = 1
    from_study: dict[str, str] = field(default_factory=dict)  # curriculum -> Optuna study name (best params)
    storage: str = ""  # Optuna storage of from_study (default: beside the MLflow store)
    train: dict = field(default_factory=dict)  # the shared recipe: profile, data_dir, epochs, teacher_uri, ...

    def __post_init__(self):
        from clips.curricula import (
            REGISTRY,  # here: the command line reads the defaults without torch
        )

        self.curricula = list(self.curricula) or list(REGISTRY)

    def name(self) -> str:
        return self.study_name or f"clips-study-{self.train.get('profile') or 'smoke'}"

    def jobs(self) -> list[tuple[str, int]]:
        from clips.curricula import BASELINE

        jobs = [(c, s) for c in self.curricula for s in range(self.seeds)]
        return sorted(jobs, key=lambda j: j != (BASELINE, 0))  # the baseline first: it may be the teacher
