"""Whole-volume prediction: sliding windows on the preprocessed grid, then back to the patient's own grid."""
from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from clips.data.io import PatientVolumes
from clips.data.preprocess import from_ras, ras_shape, resize
from clips.errors import ClipsError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one. A named device that is missing is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ClipsError(f"device {name!r} asked for, but torch sees no GPU on this machine")
    return torch.device(name)


@torch.no_grad()
def predict_probs(model, image: np.ndarray, patch_size, overlap: float = 0.25, sw_batch_size: int = 2,
                  device: str = "cpu") -> np.ndarray:
    """Lesion probability (X, Y, Z) float32 for a (5, X, Y, Z) preprocessed image."""
    model.eval()
    x = torch.from_numpy(np.asarray(image, dtype=np.float32))[None].to(device)
    logits = sliding_window_inference(x, patch_size, sw_batch_size, model, overlap=overlap, mode="gaussian")
    return logits.softmax(1)[0, 1].float().cpu().numpy()


def probs_to_original(probs: np.ndarray, vols: PatientVolumes) -> np.ndarray:
    """Resample RAS probabilities to the patient's RAS shape, reorient to its own axes, threshold at 0.5."""
    up = resize(probs[None], ras_shape(vols.pet.shape, vols.affine))[0]
    return from_ras((up >= 0.5).astype(np.uint8), vols.affine)


def predict_files(model, files, spacing_mm, patch_size, overlap: float = 0.25, sw_batch_size: int = 2,
                  device: str | torch.device = "cpu"):
    """Segment one case from its NIfTI files: (mask on the PET grid, the loaded volumes)."""
    from clips.data.io import load_patient
    from clips.data.preprocess import PreprocessConfig, preprocess_volumes

    vols = load_patient(files)
    case = preprocess_volumes(vols, PreprocessConfig(tuple(spacing_mm)))
    probs = predict_probs(model, case.image, tuple(patch_size), overlap, sw_batch_size, device)
    return probs_to_original(probs, vols), vols
