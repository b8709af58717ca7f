"""Read and validate one patient's NIfTI files, with one-line errors that name the file.

:func:`read_patient` collects every problem it finds (``clips data check`` prints them
all); :func:`load_patient` raises the first one (training and evaluation refuse the
patient). Nothing here lets a nibabel or NumPy traceback reach the user.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from clips.data.layout import AFFINE_TOLERANCE_MM, PatientFiles
from clips.errors import DataError

SUV_MAX_PLAUSIBLE = 150.0  # above this the PET is almost surely Bq/ml, not SUV
HU_RANGE = (-3100.0, 5000.0)


@dataclass
class PatientVolumes:
    """One case on its own grid: CT in HU (None when not read), PET in SUV, SEG as uint8 0/1 (None if unlabelled)."""

    patient_id: str
    ct: np.ndarray | None
    pet: np.ndarray
    seg: np.ndarray | None
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def voxel_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0


def _read(pid: str, kind: str, path: Path | None, problems: list[DataError]):
    if path is None:
        return None
    if not path.exists():
        problems.append(DataError(pid, path.name, "missing file"))
        return None
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel, gzip and zlib raise many types for a broken file
        problems.append(DataError(pid, path.name, f"cannot read NIfTI ({type(exc).__name__}: {exc})"))
        return None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        problems.append(DataError(pid, path.name, f"expected a 3-D volume, found shape {data.shape}"))
        return None
    if np.iscomplexobj(data):
        problems.append(DataError(pid, path.name, f"complex data type {data.dtype}"))
        return None
    return data, img.affine


def read_volume(patient_id: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One real-valued 3-D volume and its affine, or the DataError that names the file."""
    problems: list[DataError] = []
    loaded = _read(patient_id, "volume", path, problems)
    if problems:
        raise problems[0]
    return loaded


def read_patient(files: PatientFiles, affine_tol: float = AFFINE_TOLERANCE_MM):
    """(volumes or None, problems). Volumes are returned only when there are no problems."""
    pid, problems = files.patient_id, []
    loaded = {k: _read(pid, k, p, problems) for k, p in files.items()}
    if any(v is None for k, v in loaded.items() if getattr(files, k) is not None):
        return None, problems
    pet, pet_affine = loaded["pet"]
    spacing = np.linalg.norm(pet_affine[:3, :3], axis=0)
    if not np.all(np.isfinite(pet_affine)) or np.any(spacing <= 0):
        problems.append(DataError(pid, files.pet.name, f"invalid voxel spacing {spacing.round(4).tolist()}"))
    for kind in ("ct", "seg"):
        if loaded.get(kind) is None:
            continue
        data, affine = loaded[kind]
        name = getattr(files, kind).name
        if data.shape != pet.shape:
            problems.append(DataError(pid, name, f"shape {data.shape} differs from {files.pet.name} {pet.shape}"))
        elif not np.allclose(affine, pet_affine, rtol=0, atol=affine_tol):
            diff = float(np.abs(affine - pet_affine).max())
            problems.append(DataError(pid, name, f"affine differs from {files.pet.name} by {diff:.3g} mm "
                                      f"(tolerance {affine_tol} mm)"))
    ct = np.asarray(loaded["ct"][0], dtype=np.float32) if loaded.get("ct") is not None else None
    pet = np.asarray(pet, dtype=np.float32)
    problems += _check_values(files, ct, pet)
    seg = None
    if loaded.get("seg") is not None:
        seg, seg_problem = as_binary(loaded["seg"][0])
        if seg_problem:
            problems.append(DataError(pid, files.seg.name, seg_problem))
    if problems:
        return None, problems
    return PatientVolumes(pid, ct, pet, seg, pet_affine), []


def _check_values(files: PatientFiles, ct, pet) -> list[DataError]:
    pid, out = files.patient_id, []
    for arr, path in ((ct, files.ct), (pet, files.pet)):
        if arr is None:  # evaluation reads no CT
            continue
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            out.append(DataError(pid, path.name, f"{bad} voxels are NaN or infinite"))
    if out:
        return out
    pmin, pmax = float(pet.min()), float(pet.max())
    if pmax <= 0:
        out.append(DataError(pid, files.pet.name, "PET is all zeros (or negative): not an SUV image"))
    elif pmax > SUV_MAX_PLAUSIBLE:
        out.append(DataError(pid, files.pet.name, f"max {pmax:.0f} is not a plausible SUV "
                             "(raw Bq/ml? convert to SUV first)"))
    elif pmin < -1.0:
        out.append(DataError(pid, files.pet.name, f"min {pmin:.2f} is not a plausible SUV"))
    if ct is None:
        return out
    cmin, cmax = float(ct.min()), float(ct.max())
    if cmin < HU_RANGE[0] or cmax > HU_RANGE[1] or cmax - cmin < 500:
        out.append(DataError(pid, files.ct.name, f"values {cmin:.0f}..{cmax:.0f} do not look like CT in HU"))
    return out


def as_binary(data: np.ndarray):
    """(uint8 0/1 mask, None) or (None, the problem). A label file must hold integers 0 and 1.

    Floating-point labels are refused even when every value is 0 or 1: a float label is
    usually a resampled or thresholded one (interpolated edges, probabilities), and the
    exact-0/1 case is fixed once, losslessly, by ``clips data fix-labels``.
    """
    values = np.unique(data)
    if not np.all(np.isin(values, (0, 1))):
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
        return None, f"label is not binary 0/1 (values: {shown})"
    if not (np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
        return None, (f"label stored as {data.dtype}, not an integer type; its values are exactly 0/1, "
                      "so `clips data fix-labels` can rewrite it as uint8 without loss")
    return (data == 1).astype(np.uint8), None


def load_patient(files: PatientFiles, affine_tol: float = AFFINE_TOLERANCE_MM) -> PatientVolumes:
    """Load one case or raise :class:`DataError` naming the first problem found."""
    vols, problems = read_patient(files, affine_tol)
    if problems:
        raise problems[0]
    return vols


def save_mask(mask: np.ndarray, affine: np.ndarray, path: str | Path) -> None:
    img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
