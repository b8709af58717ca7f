"""Finding DICOM series in a folder tree, and stacking a series into a volume with its RAS affine."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom


@dataclass
class Series:
    uid: str
    modality: str
    patient_id: str
    study_uid: str
    study_date: str
    description: str
    frame_of_reference: str
    files: list[Path] = field(default_factory=list)
    headers: list = field(default_factory=list)  # pydicom datasets without pixel data

    @property
    def first(self):
        return self.headers[0]


def scan(root: Path) -> tuple[list[Series], list[tuple[Path, str]]]:
    """Every DICOM series under ``root`` in any order and nesting; (series, [(file, why it was not read)])."""
    series: dict[str, Series] = {}
    unreadable = []
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns about vendors' small liberties
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM (a DICOMDIR's friends, a README): skipped, listed
            unreadable.append((path, "not a DICOM file"))
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            unreadable.append((path, "no SeriesInstanceUID"))
            continue
        s = series.get(uid)
        if s is None:
            s = series[uid] = Series(uid, str(ds.get("Modality", "")), str(ds.get("PatientID", "")),
                                     str(ds.get("StudyInstanceUID", "")), str(ds.get("StudyDate", "")),
                                     str(ds.get("SeriesDescription", "")), str(ds.get("FrameOfReferenceUID", "")))
        s.files.append(path)
        s.headers.append(ds)
    return list(series.values()), unreadable


def is_axial_volume(s: Series) -> tuple[bool, str]:
    """(usable as a volume, why not): localisers/scouts, single slices and non-axial reformats are not."""
    image_type = [str(v).upper() for v in s.first.get("ImageType", [])]
    if "LOCALIZER" in image_type:
        return False, "localiser (ImageType LOCALIZER)"
    if len(s.headers) < 2:
        return False, "a single slice"
    iop = np.asarray(s.first.get("ImageOrientationPatient", [0, 0, 0, 0, 0, 0]), float)
    normal = np.cross(iop[:3], iop[3:])
    if abs(normal[2]) < 0.9:
        return False, "not axial"
    return True, ""


class GeometryError(ValueError):
    pass


def order_slices(s: Series) -> np.ndarray:
    """Indices of the slices sorted along the slice normal, from their positions (never from file names)."""
    iop = np.asarray(s.first.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    return np.argsort([np.asarray(h.ImagePositionPatient, float) @ normal for h in s.headers], kind="stable")


def affine_and_order(s: Series) -> tuple[np.ndarray, np.ndarray]:
    """(RAS affine of the stacked array indexed [column, row, slice], slice order)."""
    first = s.first
    iop = np.asarray(first.ImageOrientationPatient, float)
    for h in s.headers:
        if not np.allclose(np.asarray(h.ImageOrientationPatient, float), iop, atol=1e-4):
            raise GeometryError("slices with different orientations")
        if (h.Rows, h.Columns) != (first.Rows, first.Columns):
            raise GeometryError("slices of different sizes")
    order = order_slices(s)
    normal = np.cross(iop[:3], iop[3:])
    pos = np.array([np.asarray(s.headers[i].ImagePositionPatient, float) for i in order])
    gaps = np.diff(pos @ normal)
    if np.any(gaps <= 1e-3):
        raise GeometryError("two slices at the same position (duplicate or mixed series)")
    if gaps.max() - gaps.min() > 0.01 * gaps.mean() + 1e-3:
        raise GeometryError(f"slices unevenly spaced ({gaps.min():.3f} to {gaps.max():.3f} mm)")
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_spacing  # index 0 runs along a row (the columns)
    lps[:3, 1] = iop[3:] * row_spacing  # index 1 runs down a column (the rows)
    lps[:3, 2] = (pos[-1] - pos[0]) / (len(pos) - 1)
    lps[:3, 3] = pos[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, order  # DICOM's patient axes are LPS; NIfTI's are RAS


def read_volume(s: Series, order: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Pixel data in real-world units (each slice's own rescale slope and intercept), [column, row, slice]."""
    first = s.first
    out = np.empty((first.Columns, first.Rows, len(order)), dtype)
    for k, i in enumerate(order):
        ds = pydicom.dcmread(s.files[i])
        slope, intercept = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
        out[:, :, k] = (ds.pixel_array.astype(np.float64) * slope + intercept).T
    return out
