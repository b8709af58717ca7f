"""The cohort of a training configuration, in one place: which folder (``data_dir``, or the example cohort,
generated once under $CLIPS_HOME), preprocessed once (the memory-mapped case cache) and split as the
configuration says (folds, fold, seeds, fractions). Training, studies (their reference arms and their check
before training), the nnU-Net arm and exporter and ``clips data difficulty`` all read a cohort through
:func:`load_data`, so that one configuration always means one split.
"""
from __future__ import annotations

from pathlib import Path

from clips.config import TrainConfig
from clips.data.cohort import Cohort, ensure_example_cohort, load_cohort
from clips.data.preprocess import PreprocessConfig
from clips.data.synth.version import GENERATOR_VERSION
from clips.paths import clips_home


def load_data(cfg: TrainConfig, log=print) -> tuple[Path, Cohort]:
    """The cohort (the example cohort, generated once, when no data_dir is given), preprocessed and split."""
    data_dir = resolve_data_dir(cfg, log)
    split_seed = cfg.split_seed if cfg.split_seed >= 0 else cfg.seed
    cohort = load_cohort(data_dir, cache_root=clips_home() / "cache", pre=PreprocessConfig(cfg.spacing_mm),
                         seed=split_seed, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                         skip_invalid=cfg.skip_invalid, log=log, folds=cfg.folds, fold=cfg.fold,
                         val_seed=cfg.val_split_seed if cfg.val_split_seed >= 0 else split_seed)
    log(f"cohort {data_dir}: " + ", ".join(f"{len(cohort.ids(s))} {s}" for s in ("train", "val", "test"))
        + " patients")
    return data_dir, cohort


def resolve_data_dir(cfg: TrainConfig, log=print) -> Path:
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser()
    ex = cfg.example
    return ensure_example_cohort(example_cohort_dir(cfg), ex.patients, ex.spacing_mm, ex.seed, log=log)


def example_cohort_dir(cfg: TrainConfig) -> Path:
    ex = cfg.example
    # the generator's version is in the name: a cohort from an older generator is never reused
    return clips_home() / f"example_cohort_{GENERATOR_VERSION}_n{ex.patients}_{ex.spacing_mm:g}mm_seed{ex.seed}"
