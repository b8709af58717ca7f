"""Curriculum strategies behind one registry. Add a variant: one module, one entry in REGISTRY.

The shape follows Optuna's samplers: a small abstract base (``base.Curriculum``), one
private module per strategy, the public names exported here.
"""
from clips.curricula._none import NoCurriculum
from clips.curricula._paced import AntiCurriculum, Predefined, RandomOrder, TransferTeacher
from clips.curricula._progressive_patch import PatchMix, ProgressivePatch
from clips.curricula._rl_teacher import RLTeacher
from clips.curricula._self_paced import SelfPaced
from clips.curricula._smoothing import Smoothing
from clips.curricula.base import Curriculum, CurriculumContext, StepInfo
from clips.errors import ConfigError

REGISTRY: dict[str, type[Curriculum]] = {
    c.name: c
    for c in (NoCurriculum, RandomOrder, AntiCurriculum, Predefined, SelfPaced, TransferTeacher, RLTeacher, Smoothing,
              ProgressivePatch, PatchMix)
}

BASELINE = NoCurriculum.name  # the arm every other is compared with


def get_curriculum(name: str) -> type[Curriculum]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown curriculum {name!r}; available: {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = ["BASELINE", "REGISTRY", "AntiCurriculum", "Curriculum", "CurriculumContext", "NoCurriculum", "PatchMix",
           "Predefined", "ProgressivePatch", "RLTeacher", "RandomOrder", "SelfPaced", "Smoothing", "StepInfo",
           "TransferTeacher", "get_curriculum"]
