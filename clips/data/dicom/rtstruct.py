"""RTSTRUCT contours to a mask on the PET grid: each closed planar contour filled on the slice it lies on.

Written here rather than through rt-utils, which needs OpenCV (tens of MB) for what is a point-in-polygon test
that matplotlib (already a dependency) does. Contours of one ROI on one slice are combined by XOR, so an inner
contour is a hole, as planning systems draw them; ROIs are combined by union.
"""
from __future__ import annotations

import numpy as np
import pydicom
from matplotlib.path import Path as Polygon


def read_rtstruct_on(path, frame_of_reference: str, affine_ras: np.ndarray, shape) -> np.ndarray:
    """The union of every ROI of the RTSTRUCT at ``path`` on the grid (affine, shape), [column, row, slice] uint8."""
    ds = pydicom.dcmread(path)
    frames = {str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])}
    if frames and frame_of_reference not in frames:
        raise ValueError("RTSTRUCT of another frame of reference")
    to_voxel = np.linalg.inv(affine_ras)
    out = np.zeros(shape, np.uint8)
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    centres = np.column_stack([ii.ravel(), jj.ravel()])
    for roi in ds.get("ROIContourSequence", []):
        roi_mask = np.zeros(shape, bool)
        for contour in roi.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            lps = np.asarray(contour.ContourData, float).reshape(-1, 3)
            ras = np.column_stack([-lps[:, 0], -lps[:, 1], lps[:, 2], np.ones(len(lps))])
            vox = (to_voxel @ ras.T).T[:, :3]
            k = int(round(float(np.median(vox[:, 2]))))
            if not 0 <= k < shape[2] or len(vox) < 3:
                continue
            inside = Polygon(vox[:, :2]).contains_points(centres).reshape(shape[:2])
            roi_mask[:, :, k] ^= inside
        out |= roi_mask
    return out
