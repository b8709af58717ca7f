"""Search spaces (experiments/search_spaces.yaml): validated before any trial, sampled per trial."""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

from clips.config import TrainConfig
from clips.curricula import get_curriculum
from clips.errors import ConfigError
from clips.paths import EXPERIMENTS_DIR


@dataclass(frozen=True)
class Dimension:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: tuple | None = None

    def suggest(self, trial: optuna.Trial):
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.choices))


def _dimension(name: str, spec, where: str) -> Dimension:
    if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
        raise ConfigError(f"{where}: {name} needs type float, int or categorical")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices"}
    if unknown:
        raise ConfigError(f"{where}: {name} has unknown keys {sorted(unknown)}")
    if spec["type"] == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise ConfigError(f"{where}: {name} needs a non-empty list of choices")
        return Dimension(name, "categorical", choices=tuple(spec["choices"]))
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where}: {name} needs numeric low and high") from None
    log = bool(spec.get("log", False))
    if not low < high or (log and low <= 0):
        raise ConfigError(f"{where}: {name} needs low < high (and low > 0 on a log scale), got {low}, {high}")
    return Dimension(name, spec["type"], low, high, log, spec.get("step"))


@dataclass
class SearchSpace:
    curriculum: str
    dims: list[Dimension]

    def suggest(self, trial: optuna.Trial) -> dict:
        return {d.name: d.suggest(trial) for d in self.dims}


def load_space(curriculum: str, path: Path | None = None, with_common: bool = False) -> SearchSpace:
    """The curriculum's space, checked against its options and the training parameters."""
    path = Path(path or EXPERIMENTS_DIR / "search_spaces.yaml")
    try:
        spaces = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read search spaces {path}: {exc}") from None
    if curriculum not in spaces:
        known = ", ".join(k for k in spaces if k != "common")
        raise ConfigError(f"no search space for curriculum {curriculum!r} in {path} (spaces: {known})")
    raw = dict(spaces[curriculum] or {})
    if with_common:
        raw = dict(spaces.get("common") or {}) | raw
    if not raw:
        raise ConfigError(f"the search space of {curriculum!r} in {path} is empty")
    cls = get_curriculum(curriculum)
    option_names = {f.name for f in dataclasses.fields(cls.Options)}
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    dims = []
    for name, spec in raw.items():
        if name not in option_names | train_names:
            raise ConfigError(f"{path}: {curriculum}.{name} is neither an option of {curriculum!r} "
                              f"({', '.join(sorted(option_names))}) nor a training parameter")
        dims.append(_dimension(name, spec, f"{path}: {curriculum}"))
    space = SearchSpace(curriculum, dims)
    _check_values(space, cls)
    return space


def _check_values(space: SearchSpace, cls) -> None:
    """Every extreme value of the space must be a valid option, so no trial fails on a typo."""
    option_names = {f.name for f in dataclasses.fields(cls.Options)}
    for d in space.dims:
        if d.name not in option_names:
            continue
        for v in d.choices if d.type == "categorical" else (d.low, d.high):
            try:
                cls.parse_options({d.name: v} | cls.stand_in_values())
            except ConfigError as exc:
                raise ConfigError(f"search space {space.curriculum}.{d.name}={v}: {exc}") from None


def ramp_epochs(space: SearchSpace, epochs: int) -> int:
    """The longest curriculum ramp the space allows, in epochs: pruning waits at least this long.

    The curriculum says how long its ramp is for given options (``Curriculum.ramp_epochs``);
    the longest is sought over the corners of the space (each dimension at its low or high
    end, every choice of a categorical one), where a ramp that grows with a value is longest.
    """
    cls = get_curriculum(space.curriculum)
    option_names = {f.name for f in dataclasses.fields(cls.Options)}
    dims = [d for d in space.dims if d.name in option_names]
    longest = 0.0
    for corner in itertools.product(*[d.choices if d.type == "categorical" else (d.low, d.high) for d in dims]):
        values = {d.name: v for d, v in zip(dims, corner)} | cls.stand_in_values()
        try:
            options = cls.parse_options(values)
        except ConfigError:  # a combination the variant refuses is never sampled into a run
            continue
        longest = max(longest, cls.ramp_epochs(options, epochs))
    return int(math.ceil(longest - 1e-9))
