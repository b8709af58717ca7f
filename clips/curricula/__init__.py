"""Curriculum strategies behind one registry. Add a variant: one module, one entry in REGISTRY."""
from clips.curricula._none import NoCurriculum
from clips.curricula.base import Curriculum, CurriculumContext
from clips.errors import ConfigError

REGISTRY: dict[str, type[Curriculum]] = {
    NoCurriculum.name: NoCurriculum,
}


def get_curriculum(name: str) -> type[Curriculum]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown curriculum {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


__all__ = ["REGISTRY", "Curriculum", "CurriculumContext", "NoCurriculum", "get_curriculum"]
