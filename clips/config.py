"""Typed configuration of a training run: a profile from ``experiments/profiles.yaml``, then overrides.

MLflow passes every ``-P`` value as a string and does not check types, so every value
goes through :func:`build_config`, which casts it to the field's type and rejects
unknown names and out-of-range values with one clear line.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clips.curricula import get_curriculum
from clips.data.augment import PLACES as AUGMENT_PLACES
from clips.data.augment import PRESETS as AUGMENTATIONS
from clips.data.sampling import FG_RULES
from clips.data.splits import FOLDS_RULE, cross_validated, folds_allowed
from clips.errors import ConfigError
from clips.models import RELEASED_PRESET
from clips.models.unet import MIN_PATCH, PATCH_MULTIPLE, PRESETS, RENAMED
from clips.paths import DEFAULT_PROFILE, EXPERIMENTS_DIR
from clips.values import apply_values


@dataclass
class ExampleCohort:
    """The generated cohort used when no ``data_dir`` is given."""

    patients: int = 24  # example cohort: number of patients
    spacing_mm: float = 4.0  # example cohort: voxel size of the generated NIfTI files
    seed: int = 0  # example cohort: generator seed


@dataclass
class TrainConfig:
    """Every training parameter. The defaults are the ``smoke`` profile: a run of a couple of
    minutes on 2 CPU cores that proves the pipeline; the other profiles override sizes."""

    # What to train
    curriculum: str = "none"  # a name of clips/curricula's REGISTRY (docs/curricula.md)
    profile: str = DEFAULT_PROFILE  # sizes of a run: experiments/profiles.yaml
    data_dir: str = ""  # empty: the example cohort, generated once under $CLIPS_HOME
    seed: int = 0  # network initialisation, patch sampling, curriculum randomness
    split_seed: int = -1  # seed of the train/val/test split; -1: the same as seed (a study fixes it across seeds)
    val_split_seed: int = -1  # with folds: seed of the inner validation split only; -1: split_seed
    # Data
    spacing_mm: tuple[float, float, float] = (8.0, 8.0, 8.0)  # resampling grid, mm (one value or x,y,z)
    patch_size: tuple[int, int, int] = (48, 48, 48)  # training patch and sliding window, voxels (multiples of 8)
    pos_ratio: float = 0.67  # fraction of patches centred on a lesion voxel
    fg_sampling: str = "patch"  # patch: each patch lesion-centred with probability pos_ratio; batch: nnU-Net's rule
    # (the first round(batch_size * pos_ratio) patches of every batch, at least one; clips/data/sampling.py)
    val_fraction: float = 0.2  # share of (training) patients for validation (checkpoint selection); 0: last epoch
    test_fraction: float = 0.2  # share of patients held out for the final evaluation (without folds)
    folds: int = 0  # cross-validation: > 1 splits the cohort into this many folds (stratified by hard flag, TMTV)
    fold: int = 0  # with folds: the fold that is the test set
    skip_invalid: bool = False  # leave invalid patients out (logged as data/skipped.json) instead of stopping
    augmentation: str = "none"  # none | default | strong | physical (scales in mm, SUV kept): clips/data/augment.py
    # where augmentation runs: loader (the workers, on the CPU) | device (the training device after the upload,
    # a GPU's: workers then only crop and hand over float16 images and uint8 labels)
    augment_on: str = "loader"
    workers: int = -1  # loader processes preparing patches during the step; -1: GPU the cores but one, CPU 0
    # Model and optimisation
    model: str = "small"  # network preset: tiny, small, large (clips/models/unet.py), or tmtv_net_released
    finetune: str = "stacking"  # tmtv_net_released: what trains: stacking, members, members:0,2, all, or refiner
    epochs: int = 5
    steps_per_epoch: int = 20  # optimisation steps per epoch
    batch_size: int = 2  # patches per step
    lr: float = 2e-3  # AdamW learning rate, cosine-annealed to 0 over the run
    weight_decay: float = 1e-5  # AdamW
    # Variance reducers (issue #25; off until measured, docs/results.md):
    ema_decay: float = 0.0  # > 0: validation, checkpoint and final model use a moving average of the weights
    grad_clip: float = 0.0  # > 0: clip the gradient norm to this
    warmup_steps: int = 0  # > 0: linear learning-rate warm-up over these steps, then the cosine
    # Loss, L = alpha * L_MS + beta * L_Dice + lambda * L_CE (TMTV-Net, Eq. 1)
    loss_alpha: float = 1e-5  # weight of the Mumford-Shah term
    loss_beta: float = 1.0  # weight of the Dice term
    loss_lambda: float = 2.0  # weight of the cross-entropy term
    ms_eta: float = 1.0  # Mumford-Shah length weight
    batch_dice: bool = False  # the Dice term pooled over the batch (nnU-Net's batch_dice), curriculum weights inside
    # Validation and checkpoints
    val_every: int = 1  # validate (and maybe save the best checkpoint) every N epochs and at the end
    collapse_after: int = 3  # validations in a row that find no lesion, after one that found some: clips.collapsed
    sw_overlap: float = 0.25  # sliding-window overlap at inference
    sw_batch_size: int = 2  # windows per forward pass at inference
    init_weights: str = ""  # a checkpoint path or a models:/ URI
    resume: str = ""  # "", "true" (the run MLflow hands us), or a run id
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    device: str = "auto"  # auto (the GPU if there is one), cpu, cuda, cuda:1, ...
    amp: bool = True  # bfloat16 autocast of the forward pass on a GPU (the CPU always trains in float32)
    compile: bool = False  # torch.compile the training forward pass (a GPU option; slow to start)
    table_every: int = 5  # log the curriculum's long table every N epochs (and at the end)
    outage_wait_min: float = 30.0  # at the end, wait this long for a lost tracking server (clips/tracking/resilient.py)
    privacy: str = "auto"  # auto | pseudonymize | real: patient ids sent to a shared server (clips/tracking/privacy.py)
    example: ExampleCohort = field(default_factory=ExampleCohort)  # -P example.patients=60, ...
    # The curriculum's own hyperparameters (docs/curricula.md), checked by its Options dataclass.
    curriculum_options: dict = field(default_factory=dict)  # -P name=value; see clips params --curriculum NAME

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
    "val_every": (1, None), "sw_overlap": (0, 0.95), "ema_decay": (0, 0.9999), "grad_clip": (0, None),
    "warmup_steps": (0, None), "sw_batch_size": (1, None), "threads": (0, None),
    "workers": (-1, 64),
    "table_every": (1, None), "collapse_after": (1, None),
}


def _validate(cfg: TrainConfig):
    get_curriculum(cfg.curriculum).parse_options(cfg.curriculum_options)
    if cfg.fg_sampling not in FG_RULES:
        raise ConfigError(f"unknown fg_sampling {cfg.fg_sampling!r}; known: {', '.join(FG_RULES)}")
    if cfg.augmentation not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {cfg.augmentation!r}; known: {', '.join(AUGMENTATIONS)}")
    if cfg.augment_on not in AUGMENT_PLACES:
        raise ConfigError(f"unknown augment_on {cfg.augment_on!r}; known: {', '.join(AUGMENT_PLACES)}")
    if cfg.model in RENAMED:
        raise ConfigError(f"model preset {cfg.model!r} is now {RENAMED[cfg.model]!r}: a DynUNet with TMTV-Net's "
                          "channel widths, not the released TMTV-Net (docs/tmtv_net.md)")
    if cfg.model == RELEASED_PRESET:
        from clips.models.tmtv_net.finetune import check_trainable

        check_trainable(cfg.finetune)
    elif cfg.model not in PRESETS:
        raise ConfigError(f"unknown model preset {cfg.model!r}; known: {', '.join(PRESETS)}, {RELEASED_PRESET}")
    for name, (lo, hi) in _RANGES.items():
        v = getattr(cfg, name)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ConfigError(f"parameter {name}={v} is out of range [{lo}, {hi if hi is not None else 'inf'}]")
    if any(p < MIN_PATCH or p % PATCH_MULTIPLE for p in cfg.patch_size):
        raise ConfigError(f"patch_size {cfg.patch_size}: each side must be a multiple of {PATCH_MULTIPLE} "
                          f"(the U-Net downsamples 3 times) and at least {MIN_PATCH}")
    if any(s <= 0 for s in cfg.spacing_mm):
        raise ConfigError(f"spacing_mm {cfg.spacing_mm} must be positive")
    if not folds_allowed(cfg.folds) or (cross_validated(cfg.folds) and not 0 <= cfg.fold < cfg.folds):
        raise ConfigError(f"folds={cfg.folds}, fold={cfg.fold}: {FOLDS_RULE}, and 0 <= fold < folds")
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


def describe_parameters(curriculum: str | None = None, profile: str | None = None, peer=None) -> list[str]:
    """One line per training parameter (name, value, the comment beside its field in this file),
    per option of ``curriculum`` and per option of the peer arm ``peer`` (a class of clips/peers, which build on
    this module; set with ``--peer-option NAME.KEY=VALUE``): ``clips params``. The code is the one place they
    are written."""
    import inspect
    import re

    cfg = build_config({"profile": profile} if profile else {})
    rows = []
    for cls, prefix, obj in [(TrainConfig, "", cfg), (ExampleCohort, "example.", cfg.example)] + (
            [(get_curriculum(curriculum).Options, "", get_curriculum(curriculum).Options())] if curriculum else []) + (
            [(peer.Options, f"{peer.name}.", peer.Options())] if peer else []):
        for line in inspect.getsource(cls).splitlines():
            m = re.match(r"\s+(\w+): [^=]+=[^#]*(?:#\s*(.*))?$", line)
            if m and m.group(1) in {f.name for f in dataclasses.fields(cls)} and m.group(1) != "example":
                value = getattr(obj, m.group(1))
                shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
                rows.append((prefix + m.group(1), str(shown), m.group(2) or ""))
    width = max(len(r[0]) for r in rows)
    return [f"{n:<{width}}  {v:<12}  {c}".rstrip() for n, v, c in rows]
