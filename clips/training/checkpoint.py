"""Checkpoints: written atomically to a local folder, mirrored to the run's artifacts."""
from __future__ import annotations

import copy
import dataclasses
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from clips.errors import ClipsError
from clips.models import RELEASED_PRESET
from clips.scaling.machine import MACHINE_KEYS
from clips.tracking import schema
from clips.values import cast


@dataclass
class LoopState:
    """Where the epoch loop stands; saved in every 'last' checkpoint."""

    epoch: int = -1  # the last finished epoch
    samples_seen: int = 0
    best_val_dice: float = -1.0
    best_epoch: int = -1
    validations: list = field(default_factory=list)  # [epoch, found a lesion] per validation (collapse rule)
    collapsed_at: int = -1  # the first epoch of the streak that made the run collapsed; -1: not collapsed


def save_last(path: Path, t, metrics: dict) -> None:
    """Everything a killed run needs to continue exactly: ``t`` is the training
    (:class:`clips.training.trainer.Training`), ``metrics`` the epoch's, logged on resume if they were not.

    The file is mirrored to the run's artifacts, so it holds no patient id and no cohort path when the run's ids
    are pseudonymised: the curriculum rows name patients by their index, the config's paths go through the
    run's privacy."""
    save({
        "model": t.model.state_dict(), "preset": t.cfg.model, "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(), **(t.resume_point or resume_point(t)),
        "state": dataclasses.asdict(t.state), "config": t.privacy.params(t.cfg.as_params()),
        "curriculum_rows": t.clog.indexed_rows(),
        "metrics": metrics, "ema": t.ema.state_dict() if t.ema is not None else None, "run_id": t.run_id,
    }, path)


def resume_point(t) -> dict:
    """What the next epoch begins from, beyond the network and optimiser: the curriculum's state and the training's
    generators, copied (the trainer takes it before it begins the next epoch early, and saves it after validation)."""
    return {"curriculum": copy.deepcopy(t.curriculum.state_dict()), "numpy_rng": t.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state()}


LAST_KEYS = ("model", "optimizer", "scheduler", "curriculum", "state", "config")
# What differs legitimately between the first start and the resumed one: resume itself, and the machine (a study job
# resumed by another worker); the result is exact on the same machine and thread count (docs/reliability.md).
NOT_CONFIG = ("resume", *MACHINE_KEYS)


def unusable(saved, run_id: str, config: dict) -> str:
    """Why a loaded 'last' checkpoint cannot continue run ``run_id`` trained with ``config`` ("" if it can): not a
    training checkpoint, another run's, or another configuration's (a resumed training must be the same one)."""
    if not isinstance(saved, dict) or any(k not in saved for k in LAST_KEYS):
        return "not a CLIPS training checkpoint (a 'last.pt' holds " + ", ".join(LAST_KEYS) + ")"
    if saved.get("run_id") not in (None, run_id):
        return f"a checkpoint of run {saved['run_id']}, not of {run_id}"
    old = {k: v for k, v in saved["config"].items() if k not in NOT_CONFIG}
    new = {k: v for k, v in config.items() if k not in NOT_CONFIG}
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:3])
        return f"trained with another configuration ({shown}{', ...' if len(changed) > 3 else ''})"
    return ""


def restore_last(saved: dict, t) -> dict | None:
    """Put a 'last' checkpoint back into the training ``t``; returns the checkpointed epoch's metrics."""
    t.model.load_state_dict(saved["model"])
    t.optimizer.load_state_dict(saved["optimizer"])
    t.scheduler.load_state_dict(saved["scheduler"])
    t.curriculum.load_state_dict(saved["curriculum"])
    t.rng.bit_generator.state = saved["numpy_rng"]
    torch.set_rng_state(saved["torch_rng"])
    t.state = LoopState(**saved["state"])
    t.clog.restore_rows(saved.get("curriculum_rows", []))
    if t.ema is not None and saved.get("ema") is not None:
        t.ema.load_state_dict(saved["ema"])
    return saved.get("metrics")


def save(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a process killed mid-write never leaves a broken checkpoint


def load(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:  # truncated, not torch's
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ClipsError(f"cannot read checkpoint {path}: {reason}") from None


def find_last(local_dir: Path, run_id: str, config: dict, log=print) -> dict | None:
    """The newest usable 'last' checkpoint of run ``run_id`` trained with ``config``: the local copy, else the copy
    logged to the run's artifacts (written at the same epoch; the server's survives a local disk that did not).
    Each unusable one (unreadable, truncated, another run's or another configuration's) is said in one line and
    skipped; None when neither can continue the run."""
    for where in ("local", "artifact"):
        path = local_dir / "last.pt" if where == "local" else _downloaded_last(local_dir, run_id)
        if path is None or not Path(path).exists():
            continue
        try:
            saved = load(path)
        except ClipsError as exc:
            log(f"{exc}; not resumed from it")
            continue
        why = unusable(saved, run_id, config)
        if not why:
            return saved
        log(f"checkpoint {path}: {why}; not resumed from it")
    return None


def _downloaded_last(local_dir: Path, run_id: str) -> str | None:
    import mlflow  # here, not at the top: benchmarks on machines without MLflow import this module

    try:
        return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{schema.CHECKPOINTS}/last.pt",
                                                   dst_path=str(local_dir.parent / "download"))
    except Exception:  # noqa: BLE001 - MLflow raises several types for "no such artifact"
        return None


def _open(source: str, role: str):
    """An MLflow model URI gives the network itself; a path gives the checkpoint dict."""
    if source.startswith(("models:/", "runs:/")):
        import mlflow.pytorch

        try:
            return mlflow.pytorch.load_model(source, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI
            raise ClipsError(f"cannot load {role} {source}: {exc}") from None
    if not Path(source).exists():
        raise ClipsError(f"{role} {source}: no such file")
    return load(source)


def load_weights(source: str) -> dict:
    """A state dict from a checkpoint file or an MLflow model URI (``models:/...``, ``runs:/...``)."""
    opened = _open(source, "init_weights")
    if isinstance(opened, torch.nn.Module):
        return opened.state_dict()
    return opened.get("model", opened)


def is_released(source: str) -> bool:
    """The released TMTV-Net ensemble: an imported model (``clips model import-tmtvnet``) or its file."""
    if source.startswith(("models:/", "runs:/")):
        try:
            import mlflow

            meta = (mlflow.models.get_model_info(source).metadata or {}).get("clips", {})
        except Exception:  # noqa: BLE001 - not a model we can read: not the released one
            return False
        return meta.get("kind") == RELEASED_PRESET
    try:
        sd = torch.load(source, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a CLIPS checkpoint (pickled dicts) or no file: not a released file
        return False
    return isinstance(sd, dict) and "staking_blocks.weight" in sd


def load_network(source: str):
    """A whole network (for a teacher): an MLflow model URI, a CLIPS checkpoint that names its preset, or the
    released TMTV-Net ensemble (imported, or its file)."""
    from clips.models import build_network

    if is_released(source):
        net = build_network(RELEASED_PRESET)
        net.load_released(source)
        return net.eval()
    opened = _open(source, "teacher")
    if isinstance(opened, torch.nn.Module):
        return opened.eval()
    config = opened.get("config", {})
    preset = opened.get("preset") or config.get("model")
    if not preset:
        raise ClipsError(f"teacher {source}: the checkpoint does not say which model preset it holds")
    # a fine-tuned refiner is rebuilt with its own finetune value and spacing
    spacing = cast("spacing_mm", tuple[float, float, float], config.get("spacing_mm", "6"))
    net = build_network(preset, config.get("finetune", "stacking"), spacing)
    net.load_state_dict(opened["model"])
    return net.eval()
