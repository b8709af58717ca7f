"""``clips predict``: segment patients with a logged or registered model; a mask and a short report each."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
from scipy import ndimage

from clips.data.io import load_patient, save_mask
from clips.data.layout import PatientFiles, discover, patient_folder
from clips.errors import ClipsError, DataError
from clips.inference.sliding_window import predict_files, resolve_device
from clips.metrics.settings import EvalSettings
from clips.models import RELEASED_PRESET as RELEASED_KIND
from clips.models.nnunet import KIND as NNUNET_KIND
from clips.progress import Progress
from clips.tracking.model import model_preprocessing


def _patients(path: Path) -> tuple[list[PatientFiles], bool]:
    """(cases, single): a patient folder is one case; anything else is read as a cohort. SEG is optional."""
    single = patient_folder(path)
    cases = [single] if single else discover(path)
    return [dataclasses.replace(c, seg=c.seg if c.seg and c.seg.exists() else None) for c in cases], bool(single)


def _describe(model_uri: str) -> str:
    if model_uri.startswith("models:/") and "@" in model_uri:
        name, alias = model_uri[len("models:/"):].split("@", 1)
        v = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
        return f"{model_uri} (version {v.version}, run {v.run_id})"
    return model_uri


def report(pid: str, mask: np.ndarray, vols, model: str) -> str:
    voxel_ml = vols.voxel_ml
    n = int(ndimage.label(mask)[1])
    threshold = EvalSettings().suv_threshold or 0.0  # the metric suite's SUV threshold, one place
    hot = mask.astype(bool) & (vols.pet > threshold)
    lines = [f"CLIPS prediction: patient {pid}", f"model: {model}",
             f"TMTV (predicted mask): {mask.sum() * voxel_ml:.2f} ml in {n} connected components",
             f"TMTV (voxels with SUV > {threshold:g}): {hot.sum() * voxel_ml:.2f} ml",
             f"SUVmax in the mask: {float(vols.pet[mask.astype(bool)].max()) if mask.any() else 0.0:.2f}",
             f"grid: {vols.pet.shape}, voxel {voxel_ml * 1000:.2f} mm^3 (the PET grid)"]
    if vols.seg is not None:
        from clips.metrics.overlap import dice

        lines.append(f"Dice against the SEG.nii.gz found beside it: {dice(vols.seg, mask):.4f}")
    return "\n".join(lines) + "\n"


def segmenter(model_uri: str, device):
    """files -> (mask on the PET grid, volumes) for a CLIPS model, the imported released TMTV-Net or imported
    nnU-Net model folders."""
    prep = model_preprocessing(model_uri)
    if prep.get("kind") == NNUNET_KIND:  # nnU-Net's own predictor over the imported folders
        import warnings

        with warnings.catch_warnings():  # MLflow asks for type hints on the model's predict (two file paths)
            warnings.simplefilter("ignore", UserWarning)
            return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().segmenter(device)
    if prep.get("kind") == RELEASED_KIND:  # the released two-stage pipeline, as its authors run it
        from clips.models.tmtv_net.pipeline import predict_volumes

        net = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().net.to(device)
        return lambda files: predict_volumes(net, load_patient(files), device)
    model = mlflow.pytorch.load_model(model_uri, map_location="cpu").to(device)
    return lambda files: predict_files(model, files, prep["spacing_mm"], prep["patch_size"],
                                       prep.get("sw_overlap", 0.25), device=device)


def predict_path(model_uri: str, path: Path, out: Path, dicom_seg: bool = False):
    """Yield one line per patient; masks and reports are written as they are done."""
    try:
        segment = segmenter(model_uri, resolve_device("auto"))  # the GPU when there is one
    except ClipsError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI
        raise ClipsError(f"cannot load model {model_uri}: {str(exc).splitlines()[0]}") from None
    described = _describe(model_uri)
    cases, single = _patients(path)
    if not single:
        out.mkdir(parents=True, exist_ok=True)
    progress = Progress(len(cases), "predicting", log=lambda *_: None)  # its count and time left end each line
    for files in cases:
        progress.done += 1
        target = out if single else out / f"{files.patient_id}.nii.gz"
        try:
            mask, vols = segment(files)
        except DataError as exc:
            yield f"error: {exc}"
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        save_mask(mask, vols.affine, target)
        text = report(files.patient_id, mask, vols, described)
        target.with_name(target.name.replace(".nii.gz", "") + "_report.txt").write_text(text)
        line = f"{files.patient_id}: {target} ({mask.sum() * vols.voxel_ml:.1f} ml) [{progress.line()}]"
        if dicom_seg:
            from clips.data.dicom import write_dicom_seg

            seg_path = target.with_name(target.name.replace(".nii.gz", "") + "_seg.dcm")
            try:
                write_dicom_seg(mask, files.pet.parent, seg_path, float(mask.sum() * vols.voxel_ml), described)
                line += f", DICOM SEG {seg_path}"
            except (FileNotFoundError, ValueError) as exc:
                yield f"error: {files.patient_id}: DICOM SEG not written: {exc}"
                continue
        yield line
