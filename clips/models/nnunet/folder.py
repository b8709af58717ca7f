"""A trained nnU-Net v2 model folder, read and checked before anything is logged.

The folder is what ``nnUNetv2_train`` writes under ``nnUNet_results/DatasetXXX_Name/`` and what a model's release
unpacks (``nnUNetv2_install_pretrained_model_from_zip``)::

    <Trainer>__<Plans>__<configuration>/
        dataset.json          channel names, labels, file ending
        plans.json            preprocessing, spacing, architecture of every configuration
        fold_0/checkpoint_final.pth   (and checkpoint_best.pth; fold_1 ... fold_4; fold_all)

Every problem is one line naming the file: a missing or unreadable JSON, a missing fold or checkpoint, a
checkpoint of another configuration, a cascade stage (it needs the previous stage's masks), labels other than one
lesion class.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from clips.errors import ClipsError

CHECKPOINTS = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
FILES = ("dataset.json", "plans.json")  # what every model folder holds beside its folds


@dataclass
class ModelFolder:
    path: Path
    dataset: dict  # dataset.json
    plans: dict  # plans.json
    configuration: str  # the checkpoints' configuration (3d_fullres, ...)
    trainer: str  # the checkpoints' trainer class name
    folds: list[str]  # "0", "1", ..., "all"
    checkpoint: str  # checkpoint_final.pth | checkpoint_best.pth

    @property
    def channel_names(self) -> dict[int, str]:
        return {int(k): str(v) for k, v in self.dataset.get("channel_names", self.dataset.get("modality", {})).items()}

    @property
    def normalisation(self) -> list[str]:
        return list(self.plans["configurations"][self.configuration].get("normalization_schemes", []))

    def checkpoint_file(self, fold: str) -> Path:
        return self.path / f"fold_{fold}" / self.checkpoint

    @property
    def label(self) -> str:
        """The folder as one line: its name, folds and checkpoint."""
        return f"{self.path.name} (folds {','.join(self.folds)}, {self.checkpoint})"


def read_folder(path: str | Path, folds: str = "", checkpoint: str = "final") -> ModelFolder:
    """The model folder at ``path``. ``folds``: "" every ``fold_k`` that holds the checkpoint (as nnU-Net's
    predictor finds them); "0,1,2" those; "all" nnU-Net's ``fold_all`` (the model trained on every case, what
    ``nnUNetv2_predict -f all`` means)."""
    path = Path(path)
    if checkpoint not in CHECKPOINTS:
        raise ClipsError(f"--checkpoint {checkpoint!r}: one of {', '.join(CHECKPOINTS)}")
    if not path.is_dir():
        raise ClipsError(f"{path}: no such folder")
    if not (path / "plans.json").exists():
        inner = sorted(p.parent.name for p in path.glob("*/plans.json"))
        hint = f"; the model folders inside it: {', '.join(inner)} (give one, or several with --ensemble)" \
            if inner else " (a trained nnU-Net model folder holds dataset.json, plans.json and fold_k/)"
        raise ClipsError(f"{path / 'plans.json'}: missing{hint}")
    dataset, plans = (_json(path / name) for name in FILES)
    file = CHECKPOINTS[checkpoint]
    available = sorted(p.parent.name.removeprefix("fold_") for p in path.glob(f"fold_*/{file}"))
    if not folds:
        chosen = [f for f in available if f != "all"]
        if not chosen:
            raise ClipsError(f"{path}: no fold_k/{file} (present: "
                             f"{', '.join(sorted(p.name for p in path.glob('fold_*'))) or 'no fold'})")
    else:
        chosen = [f.strip() for f in folds.split(",") if f.strip()]
        for f in chosen:
            if not (path / f"fold_{f}").is_dir():
                what = " (nnU-Net's fold_all: the model trained on every case)" if f == "all" else ""
                raise ClipsError(f"{path / f'fold_{f}'}: missing{what}; folds with {file}: "
                                 f"{', '.join(available) or 'none'}")
            if not (path / f"fold_{f}" / file).exists():
                raise ClipsError(f"{path / f'fold_{f}' / file}: missing (--checkpoint best or final)")
    configuration, trainer = _from_checkpoints(path, chosen, file)
    configs = plans.get("configurations", {})
    if configuration not in configs:
        raise ClipsError(f"{path / 'plans.json'}: has no configuration {configuration!r}, which "
                         f"{path / f'fold_{chosen[0]}' / file} was trained with (it has {', '.join(configs)})")
    if _resolved(configs, configuration).get("previous_stage") or "cascade" in configuration:
        raise ClipsError(f"{path}: configuration {configuration} is a cascade stage (it needs the previous stage's "
                         "masks as input); import the 3d_fullres or 3d_lowres model folder instead")
    folder = ModelFolder(path, dataset, plans, configuration, trainer, chosen, file)
    foreground = {k: v for k, v in dataset.get("labels", {}).items() if v not in (0, [0])}
    if len(foreground) != 1:
        raise ClipsError(f"{path / 'dataset.json'}: labels {dataset.get('labels')}: CLIPS reads a model with one "
                         "lesion label beside background")
    return folder


def _json(file: Path) -> dict:
    try:
        return json.loads(file.read_text())
    except FileNotFoundError:
        raise ClipsError(f"{file}: missing (a trained nnU-Net model folder holds dataset.json and plans.json)") \
            from None
    except (OSError, ValueError) as exc:
        raise ClipsError(f"{file}: not readable JSON ({str(exc).splitlines()[0][:120]})") from None


def _from_checkpoints(path: Path, folds: list[str], file: str) -> tuple[str, str]:
    """(configuration, trainer) the checkpoints were trained with, the same in every fold."""
    import torch

    seen = set()
    for f in folds:
        ckpt = path / f"fold_{f}" / file
        try:
            head = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
            seen.add((head["init_args"]["configuration"], head["trainer_name"]))
        except (KeyError, TypeError):
            raise ClipsError(f"{ckpt}: not an nnU-Net v2 checkpoint (no init_args/trainer_name)") from None
        except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a truncated or foreign file
            raise ClipsError(f"{ckpt}: cannot read ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") \
                from None
    if len(seen) > 1:
        raise ClipsError(f"{path}: its folds were trained differently ({sorted(seen)}); import them as separate "
                         "folders")
    return seen.pop()


def _resolved(configs: dict, name: str) -> dict:
    """A configuration with what it inherits (nnU-Net's ``inherits_from``)."""
    own = dict(configs[name])
    parent = own.pop("inherits_from", None)
    return _resolved(configs, parent) | own if parent in configs else own
