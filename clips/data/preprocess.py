"""From NIfTI files to network inputs: canonical orientation, resampling, five channels, a disk cache.

The five input channels are those of the released TMTV-Net, each clipped to its
window and scaled to [0, 1]:

====  ============  ===============
  0   CT            [-150, 300] HU
  1   SUV           [0, 30]
  2   CT lung       [-1000, -200] HU
  3   CT soft       [-100, 100] HU
  4   SUV hot       [2, 10]
====  ============  ===============

Preprocessed cases are written once to ``<cache>/<key>/<patient>/`` as ``.npy`` files
that are memory-mapped, so an epoch never re-reads NIfTI and a cohort larger than
RAM still trains. The key covers the preprocessing settings and each file's size and
modification time, so a changed file is preprocessed again.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from clips.data.io import PatientVolumes, load_patient
from clips.data.layout import PatientFiles

CHANNEL_WINDOWS = (
    ("ct", -150.0, 300.0),
    ("pet", 0.0, 30.0),
    ("ct", -1000.0, -200.0),
    ("ct", -100.0, 100.0),
    ("pet", 2.0, 10.0),
)
SUV_CHANNEL = 1
N_CHANNELS = len(CHANNEL_WINDOWS)
_RAS = nib.orientations.axcodes2ornt(("R", "A", "S"))


@dataclass(frozen=True)
class PreprocessConfig:
    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0)

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass
class Case:
    """One preprocessed case: ``image`` (5, X, Y, Z) float16, ``label`` (X, Y, Z) uint8, both RAS at the
    target spacing."""

    patient_id: str
    image: np.ndarray
    label: np.ndarray | None
    tmtv_ml: float  # on the original grid, the reference for every TMTV comparison


def make_channels(ct: np.ndarray, pet: np.ndarray) -> np.ndarray:
    """(5, ...) float32 in [0, 1] from CT (HU) and PET (SUV) of the same shape."""
    src = {"ct": ct, "pet": pet}
    out = np.empty((N_CHANNELS, *ct.shape), np.float32)
    for c, (name, lo, hi) in enumerate(CHANNEL_WINDOWS):
        np.clip(src[name], lo, hi, out=out[c])
        out[c] -= lo
        out[c] /= hi - lo
    return out


def to_ras(arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Reorient a (..., X, Y, Z) array to RAS voxel axes (a permutation and flips, no interpolation)."""
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), _RAS)
    return _apply(arr, ornt)


def from_ras(arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_ras`: back to the voxel axes of ``affine``."""
    ornt = nib.orientations.ornt_transform(_RAS, nib.orientations.io_orientation(affine))
    return _apply(arr, ornt)


def _apply(arr, ornt):
    lead = arr.ndim - 3
    full = np.vstack([[[i, 1] for i in range(lead)], ornt + [lead, 0]]) if lead else ornt
    return np.ascontiguousarray(nib.orientations.apply_orientation(arr, full))


def ras_spacing(affine: np.ndarray) -> np.ndarray:
    ornt = nib.orientations.io_orientation(affine)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    out = np.empty(3)
    out[ornt[:, 0].astype(int)] = spacing
    return out


def ras_shape(shape, affine: np.ndarray) -> tuple[int, int, int]:
    """Shape of a volume of ``shape`` once reoriented by :func:`to_ras`."""
    axes = nib.orientations.io_orientation(affine)[:, 0].astype(int)
    out = [0, 0, 0]
    for i, ax in enumerate(axes):
        out[ax] = shape[i]
    return tuple(out)


def target_shape(shape, spacing, target_spacing) -> tuple[int, int, int]:
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing))


def resize(arr: np.ndarray, shape, mode: str = "trilinear") -> np.ndarray:
    """Resample a (C, X, Y, Z) float array to ``shape`` (voxel centres aligned at the corners of the field of view)."""
    if tuple(arr.shape[1:]) == tuple(shape):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None]
    kw = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(t, size=tuple(shape), mode=mode, **kw)[0].numpy()


def preprocess_volumes(vols: PatientVolumes, cfg: PreprocessConfig) -> Case:
    ct, pet = to_ras(vols.ct, vols.affine), to_ras(vols.pet, vols.affine)
    shape = target_shape(ct.shape, ras_spacing(vols.affine), cfg.spacing_mm)
    image = resize(make_channels(ct, pet), shape).astype(np.float16)
    label = None
    if vols.seg is not None:
        seg = to_ras(vols.seg, vols.affine).astype(np.float32)[None]
        label = (resize(seg, shape)[0] >= 0.5).astype(np.uint8)
    tmtv = float(vols.seg.sum() * vols.voxel_ml) if vols.seg is not None else float("nan")
    return Case(vols.patient_id, image, label, tmtv)


class CaseCache:
    """Preprocess each case once; later reads are memory maps of ``.npy`` files."""

    def __init__(self, root: str | Path, cfg: PreprocessConfig):
        self.cfg = cfg
        self.root = Path(root) / cfg.key()

    def _dir(self, files: PatientFiles) -> Path:
        stamp = []
        for _, p in files.items():
            if p is not None and p.exists():
                st = p.stat()
                stamp.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
        digest = hashlib.sha1("|".join(stamp).encode()).hexdigest()[:12]
        return self.root / f"{files.patient_id}-{digest}"

    def has(self, files: PatientFiles) -> bool:
        """Whether this case is preprocessed already (nothing to compute)."""
        return (self._dir(files) / "meta.json").exists()

    def get(self, files: PatientFiles) -> Case:
        d = self._dir(files)
        meta_path = d / "meta.json"
        if not meta_path.exists():
            case = preprocess_volumes(load_patient(files), self.cfg)
            tmp = d.with_name(d.name + f".tmp{os.getpid()}")
            tmp.mkdir(parents=True, exist_ok=True)
            np.save(tmp / "image.npy", case.image)
            if case.label is not None:
                np.save(tmp / "label.npy", case.label)
            (tmp / "meta.json").write_text(json.dumps({"patient_id": case.patient_id, "tmtv_ml": case.tmtv_ml}))
            try:
                tmp.rename(d)  # atomic: a killed process never leaves half a case behind
            except OSError:  # another process finished the same case first
                pass
        meta = json.loads(meta_path.read_text())
        label_path = d / "label.npy"
        return Case(
            meta["patient_id"],
            np.load(d / "image.npy", mmap_mode="r"),
            np.load(label_path, mmap_mode="r") if label_path.exists() else None,
            meta["tmtv_ml"],
        )
