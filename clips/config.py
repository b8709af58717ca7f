"""Typed configuration of a training run: a profile from ``experiments/profiles.yaml``, then overrides.

MLflow passes every ``-P`` value as a string and does not check types, so every value
goes through :func:`build_config`, which casts it to the field's type and rejects
unknown names and out-of-range values with one clear line.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clips.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = Path(os.environ.get("CLIPS_EXPERIMENTS", REPO_ROOT / "experiments"))


def clips_home() -> Path:
    """Where generated cohorts, caches and local checkpoints live (``$CLIPS_HOME``, default ``~/.cache/clips``)."""
    return Path(os.environ.get("CLIPS_HOME", Path.home() / ".cache" / "clips"))


@dataclass
class ExampleCohort:
    """The generated cohort used when no ``data_dir`` is given."""

    patients: int = 24
    spacing_mm: float = 4.0
    seed: int = 0


@dataclass
class TrainConfig:
    # What to train
    curriculum: str = "none"
    profile: str = "smoke"
    data_dir: str = ""  # empty: the example cohort, generated once under $CLIPS_HOME
    seed: int = 0
    split_seed: int = -1  # seed of the train/val/test split; -1: the same as seed (a study fixes it across seeds)
    # Data
    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0)
    patch_size: tuple[int, int, int] = (64, 64, 64)
    pos_ratio: float = 0.67  # fraction of patches centred on a lesion voxel
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    skip_invalid: bool = False
    # Model and optimisation
    model: str = "small"
    epochs: int = 2
    steps_per_epoch: int = 10
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-5
    # Loss, L = alpha * L_MS + beta * L_Dice + lambda * L_CE (TMTV-Net, Eq. 1)
    loss_alpha: float = 1e-5
    loss_beta: float = 1.0
    loss_lambda: float = 2.0
    ms_eta: float = 1.0
    # Validation and checkpoints
    val_every: int = 1
    sw_overlap: float = 0.25
    sw_batch_size: int = 2
    init_weights: str = ""  # a checkpoint path or a models:/ URI
    resume: str = ""  # "", "true" (the run MLflow hands us), or a run id
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    device: str = "auto"  # auto (the GPU if there is one), cpu, cuda, cuda:1, ...
    table_every: int = 5  # log the curriculum's long table every N epochs (and at the end)
    outage_wait_min: float = 30.0  # at the end, wait this long for a lost tracking server (clips/tracking/resilient.py)
    privacy: str = "auto"  # auto | pseudonymize | real: patient ids sent to a shared server (clips/tracking/privacy.py)
    example: ExampleCohort = field(default_factory=ExampleCohort)
    # The curriculum's own hyperparameters (docs/curricula.md), checked by its Options dataclass.
    curriculum_options: dict = field(default_factory=dict)

    def as_params(self) -> dict[str, str]:
        """Flat string params for MLflow (nested sections become ``section.key``)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if dataclasses.is_dataclass(v):
                out.update({f"{f.name}.{k}": str(x) for k, x in dataclasses.asdict(v).items()})
            elif isinstance(v, dict):
                out.update({f"{f.name}.{k}": str(x) for k, x in v.items()})
            elif isinstance(v, tuple):
                out[f.name] = ",".join(str(x) for x in v)
            else:
                out[f.name] = str(v)
        return out


_RANGES = {
    "epochs": (1, None), "steps_per_epoch": (1, None), "batch_size": (1, None), "lr": (0, None),
    "weight_decay": (0, None), "pos_ratio": (0, 1), "val_fraction": (0, 0.5), "test_fraction": (0, 0.5),
    "loss_alpha": (0, None), "loss_beta": (0, None), "loss_lambda": (0, None), "ms_eta": (0, None),
    "val_every": (1, None), "sw_overlap": (0, 0.95), "sw_batch_size": (1, None), "threads": (0, None),
    "table_every": (1, None),
}


def _cast(name: str, typ, value):
    """Cast a YAML or command-line value to the annotated type of field ``name``."""
    origin = typing.get_origin(typ)
    try:
        if origin is tuple:
            inner = typing.get_args(typ)[0]
            if isinstance(value, str):
                items = value.replace("x", ",").split(",")
            else:
                items = list(value) if isinstance(value, (list, tuple)) else [value]
            items = [inner(float(x)) if inner is int else inner(x) for x in items if str(x).strip() != ""]
            if len(items) == 1:
                items = items * 3
            if len(items) != 3:
                raise ValueError("expected 1 or 3 values")
            return tuple(items)
        if typ is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        if typ is int:
            f = float(value)
            if f != int(f):
                raise ValueError("expected a whole number")
            return int(f)
        if typ is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"parameter {name}={value!r}: {exc}") from None


def apply_values(obj, values: dict, where: str, extras: dict | None = None):
    """Set dataclass fields from YAML or string values, cast to each field's type.

    Unknown names raise, unless ``extras`` is given: then they are collected there
    (training puts them in the curriculum's options).
    """
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            if extras is not None:
                extras[key.removeprefix("curriculum.")] = value
                continue
            close = ", ".join(sorted(n for n in names if n[:3] == key[:3])) or "see clips/config.py"
            raise ConfigError(f"unknown parameter {key!r} in {where} (did you mean: {close})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) or isinstance(current, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} must be a mapping")
            if isinstance(current, dict):
                current.update(value)
            else:
                apply_values(current, value, f"{where}:{key}")
            continue
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue  # an empty -P value means "keep the profile's value"
        setattr(obj, key, _cast(key, hints[key], value))


def _validate(cfg: TrainConfig):
    from clips.curricula import get_curriculum  # noqa: PLC0415 - checked here so a typo fails before any data work
    from clips.models.unet import PRESETS  # noqa: PLC0415

    get_curriculum(cfg.curriculum).parse_options(cfg.curriculum_options)
    if cfg.model not in PRESETS:
        raise ConfigError(f"unknown model preset {cfg.model!r}; known: {', '.join(PRESETS)}")
    for name, (lo, hi) in _RANGES.items():
        v = getattr(cfg, name)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(f"parameter {name}={v} is out of range [{lo}, {hi if hi is not None else 'inf'}]")
    if any(p < 8 or p % 8 for p in cfg.patch_size):
        raise ConfigError(f"patch_size {cfg.patch_size}: each side must be a multiple of 8 (the U-Net downsamples 3 times)")
    if any(s <= 0 for s in cfg.spacing_mm):
        raise ConfigError(f"spacing_mm {cfg.spacing_mm} must be positive")
    if cfg.val_fraction + cfg.test_fraction >= 0.9:
        raise ConfigError("val_fraction + test_fraction leaves too few training patients")


def load_profiles(path: Path | None = None) -> dict:
    path = path or EXPERIMENTS_DIR / "profiles.yaml"
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read profiles from {path}: {exc}") from None


def build_config(overrides: dict | None = None, config_file: str | None = None) -> TrainConfig:
    """Profile, then an optional YAML file, then explicit overrides (command line or ``-P``)."""
    overrides = dict(overrides or {})
    cfg = TrainConfig()
    profile = overrides.get("profile") or cfg.profile
    profiles = load_profiles()
    if profile not in profiles:
        raise ConfigError(f"unknown profile {profile!r}; known: {', '.join(sorted(profiles))}")
    apply_values(cfg, profiles[profile] or {}, f"profile {profile}")
    cfg.profile = profile
    if config_file:
        try:
            extra = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {config_file}: {exc}") from None
        apply_values(cfg, extra, config_file)
    extras: dict = {}
    apply_values(cfg, {k: v for k, v in overrides.items() if k != "profile"}, "parameters", extras)
    cfg.curriculum_options.update({k: v for k, v in extras.items() if str(v).strip() != ""})
    _validate(cfg)
    return cfg


def example_cohort_dir(cfg: TrainConfig) -> Path:
    ex = cfg.example
    return clips_home() / f"example_cohort_n{ex.patients}_{ex.spacing_mm:g}mm_seed{ex.seed}"


