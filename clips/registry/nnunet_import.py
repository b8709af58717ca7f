"""``clips model import-nnunet``: trained nnU-Net v2 model folders (one, or an ensemble) as one registered MLflow
model that ``clips predict``, ``clips evaluate --model-uri`` and ``clips study --reference`` use like any other.

Before anything is logged each folder is read and checked (clips/models/nnunet/folder.py), the cohort's CT and SUV
are mapped to its channels (channels.py) and every chosen fold's weights are loaded into the network nnU-Net builds
for it (predictor.py), so a folder that cannot predict is refused in one line. Logged: the chosen files only
(dataset.json, plans.json, fold_k/checkpoint), their SHA-256 digests, the mapping and the settings as parameters,
the provenance on the registered model and its version (clips/registry/provenance.py).
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import mlflow

from clips.errors import ClipsError
from clips.models.nnunet import KIND, mlflow_model
from clips.models.nnunet import channels as channel_map
from clips.models.nnunet.folder import FILES, read_folder
from clips.models.nnunet.predictor import ENSEMBLES, Settings, load, network_source
from clips.registry.provenance import Provenance, register_version
from clips.tracking import schema

CODE = Path(mlflow_model.__file__)


def import_nnunet(folders: list[str], name: str, folds: str = "", checkpoint: str = "final", channels: str = "",
                  settings: Settings | None = None, provenance: Provenance | None = None, log=print) -> dict:
    import torch

    settings, provenance = settings or Settings(), provenance or Provenance()
    if not folders:
        raise ClipsError("give at least one nnU-Net model folder")
    if settings.ensemble not in ENSEMBLES:
        raise ClipsError(f"--ensemble {settings.ensemble!r}: one of {', '.join(ENSEMBLES)}")
    given = channel_map.parse(channels)
    read = [read_folder(f, folds, checkpoint) for f in folders]
    specs, notes = [], []
    for folder in read:
        images, said = channel_map.resolve(folder, given)
        notes += [f"{folder.path.name}: {n}" for n in said]
        source = network_source(folder)
        load(folder, torch.device("cpu"), settings, source)  # every fold's weights into the network, or one line
        specs.append({"name": folder.path.name, "folds": folder.folds, "checkpoint": checkpoint,
                      "configuration": folder.configuration, "trainer": folder.trainer, "channels": images,
                      "network": source})
    labels = {tuple(sorted(f.dataset["labels"].items())) for f in read}
    if len(labels) > 1:
        raise ClipsError(f"the folders label differently ({[f.dataset['labels'] for f in read]}): not one ensemble")
    config = {"folders": specs, "settings": asdict(settings)}
    meta = {"kind": KIND, **config}
    description = _description(specs, settings)
    with tempfile.TemporaryDirectory(prefix="clips-nnunet-") as tmp, \
            mlflow.start_run(run_name=f"{name} · import") as run:
        staged, digests = {}, {}
        for i, folder in enumerate(read):
            dst = Path(tmp) / f"model{i}"
            for file in FILES:
                _copy(folder.path / file, dst / file)
            for f in folder.folds:
                _copy(folder.checkpoint_file(f), dst / f"fold_{f}" / folder.checkpoint)
                digests[f"model{i}.fold_{f}"] = _sha256(folder.checkpoint_file(f))
            staged[f"model{i}"] = str(dst)
        mlflow.set_tags({schema.ROLE: schema.MODEL_IMPORT, "mlflow.note.content": description + "\n\n"
                         + provenance.text()})
        mlflow.log_params({"nnunet.folders": len(read), "nnunet.ensemble": settings.ensemble,
                           "nnunet.mirroring": settings.mirroring, "nnunet.tile_step_size": settings.tile_step_size}
                          | {f"nnunet.model{i}.{k}": (",".join(v) if isinstance(v, list) else v)
                             for i, s in enumerate(specs) for k, v in s.items()}
                          | {f"nnunet.{k}.sha256": v for k, v in digests.items()})
        with warnings.catch_warnings():  # MLflow asks for type hints on predict: its input is two file paths
            warnings.simplefilter("ignore", UserWarning)
            info = mlflow.pyfunc.log_model(name="model", python_model=str(CODE), artifacts=staged,
                                           model_config=config, pip_requirements=_requirements(),
                                           metadata={"clips": meta})
        version = register_version(mlflow.MlflowClient(), name, info.model_uri, run.info.run_id, provenance,
                                   description, model_id=info.model_id) if name else None
    uri = f"models:/{name}/{version}" if version else info.model_uri
    for note in notes:
        log(f"note: {note}")
    log(f"imported {len(read)} nnU-Net model folder(s) ({'; '.join(f.label for f in read)}"
        f"{', ensemble ' + settings.ensemble if len(read) > 1 else ''}) as {uri} (run {run.info.run_id})")
    return {"run_id": run.info.run_id, "model_uri": uri, "sha256": digests, "notes": notes}


def _description(specs: list[dict], settings: Settings) -> str:
    parts = [f"{s['name']} ({s['configuration']}, trainer {s['trainer']}, folds {','.join(s['folds'])}, "
             f"{s['checkpoint']} checkpoint; channels {', '.join(f'{k}={c}' for k, c in enumerate(s['channels']))})"
             for s in specs]
    merge = f" merged by {settings.ensemble}" if len(specs) > 1 else ""
    return (f"nnU-Net v2 model folder(s){merge}: " + "; ".join(parts) + ". Imported by clips model import-nnunet "
            f"and run with nnU-Net's own predictor (mirroring {'on' if settings.mirroring else 'off'}, tile step "
            f"{settings.tile_step_size:g}).")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "nnunetv2", "numpy", "nibabel")] + ["clips"]
