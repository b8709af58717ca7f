"""Checkpoints: written atomically to a local folder, mirrored to the run's artifacts."""
from __future__ import annotations

import os
from pathlib import Path

import mlflow
import torch

from clips.errors import ClipsError

ARTIFACT_DIR = "checkpoints"


def save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a process killed mid-write never leaves a broken checkpoint


def load(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ClipsError(f"cannot read checkpoint {path}: {exc}") from None


def find_last(local_dir: Path, run_id: str) -> dict | None:
    """The newest 'last' checkpoint of a run: the local copy if present, else the logged artifact."""
    local = local_dir / "last.pt"
    if local.exists():
        return load(local)
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{ARTIFACT_DIR}/last.pt",
                                                   dst_path=str(local_dir.parent / "download"))
    except Exception:  # noqa: BLE001 - MLflow raises several types for "no such artifact"
        return None
    return load(path)


def load_weights(source: str) -> dict:
    """A state dict from a checkpoint file or an MLflow model URI (``models:/...``, ``runs:/...``)."""
    if source.startswith(("models:/", "runs:/")):
        import mlflow.pytorch

        try:
            return mlflow.pytorch.load_model(source, map_location="cpu").state_dict()
        except Exception as exc:  # noqa: BLE001
            raise ClipsError(f"cannot load init_weights {source}: {exc}") from None
    if not Path(source).exists():
        raise ClipsError(f"init_weights {source}: no such file")
    state = load(source)
    return state.get("model", state)
