"""Drawing primitives for the synthetic whole-body phantom.

Everything is expressed in millimetres on a :class:`Grid`, so the same anatomy
can be rasterised at any voxel size. Shapes are evaluated only inside their
bounding box, which keeps a whole-body phantom at 4 mm under a second.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A voxel grid in RAS+ millimetres: voxel (i, j, k) sits at origin + spacing * (i, j, k)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        a = np.diag([*self.spacing, 1.0])
        a[:3, 3] = self.origin
        return a

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def axis_mm(self, axis: int) -> np.ndarray:
        return self.origin[axis] + self.spacing[axis] * np.arange(self.shape[axis])

    def box(self, lo_mm, hi_mm) -> tuple[slice, ...] | None:
        """Voxel slices covering the millimetre box [lo, hi], or None if it misses the grid."""
        out = []
        for ax in range(3):
            i0 = int(np.floor((lo_mm[ax] - self.origin[ax]) / self.spacing[ax]))
            i1 = int(np.ceil((hi_mm[ax] - self.origin[ax]) / self.spacing[ax])) + 1
            i0, i1 = max(i0, 0), min(i1, self.shape[ax])
            if i0 >= i1:
                return None
            out.append(slice(i0, i1))
        return tuple(out)

    def coords(self, box: tuple[slice, ...]):
        """Broadcastable millimetre coordinates (x, y, z) of the voxels in ``box``."""
        x = self.axis_mm(0)[box[0]][:, None, None]
        y = self.axis_mm(1)[box[1]][None, :, None]
        z = self.axis_mm(2)[box[2]][None, None, :]
        return x, y, z


def ellipsoid(grid: Grid, center, radii):
    """(box, mask, r2): voxels inside an axis-aligned ellipsoid and their normalised squared radius."""
    c, r = np.asarray(center, float), np.asarray(radii, float)
    box = grid.box(c - r, c + r)
    if box is None:
        return None, None, None
    x, y, z = grid.coords(box)
    r2 = ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2
    return box, r2 <= 1.0, r2


def cylinder_z(grid: Grid, center_xy, radii_xy, z0: float, z1: float):
    """(box, mask): an elliptic cylinder along the z axis between z0 and z1 (mm)."""
    cx, cy = center_xy
    rx, ry = radii_xy
    box = grid.box((cx - rx, cy - ry, z0), (cx + rx, cy + ry, z1))
    if box is None:
        return None, None
    x, y, z = grid.coords(box)
    mask = (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0) & (z >= z0) & (z <= z1)
    return box, mask


def paint(volume: np.ndarray, box, mask, value) -> None:
    """Set ``volume[box][mask] = value`` (value may be an array shaped like the box)."""
    if box is None:
        return
    view = volume[box]
    if np.ndim(value) == 0:
        view[mask] = value
    else:
        view[mask] = np.broadcast_to(value, mask.shape)[mask]


def gaussian_sigma_vox(fwhm_mm: float, spacing) -> tuple[float, ...]:
    """Per-axis Gaussian sigma in voxels for a point-spread function of the given FWHM."""
    return tuple(fwhm_mm / 2.3548 / s for s in spacing)
