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


def blob(grid: Grid, center, radii, bumps=()):
    """(box, mask, rho): an ellipsoid whose radius varies with direction, for lobulated and irregular lesions.

    ``bumps`` are (unit direction d, amplitude a, frequency k, phase p): the surface radius in direction u is
    scaled by 1 + sum a * cos(k * angle(u, d) + p). Everything is in mm, so the shape is the same on any grid.
    ``rho`` is the normalised radius (1 on the surface), for uptake profiles and necrotic cores.
    """
    c, r = np.asarray(center, float), np.asarray(radii, float)
    reach = r * (1.0 + sum(abs(b[1]) for b in bumps))
    box = grid.box(c - reach, c + reach)
    if box is None:
        return None, None, None
    x, y, z = grid.coords(box)
    dx, dy, dz = np.broadcast_arrays(x - c[0], y - c[1], z - c[2])
    rho = np.sqrt((dx / r[0]) ** 2 + (dy / r[1]) ** 2 + (dz / r[2]) ** 2)
    if bumps:
        norm = np.sqrt(dx**2 + dy**2 + dz**2) + 1e-6
        scale = np.ones_like(rho)
        for d, a, k, p in bumps:
            cos = (dx * d[0] + dy * d[1] + dz * d[2]) / norm
            scale += a * np.cos(k * np.arccos(np.clip(cos, -1, 1)) + p)
        rho = rho / np.maximum(scale, 0.3)
    return box, rho <= 1.0, rho


def tube(grid: Grid, points, radius: float):
    """(box, mask): a tube of ``radius`` mm along a polyline of points (mm): ureters, bowel, muscles."""
    pts = np.asarray(points, float)
    box = grid.box(pts.min(0) - radius, pts.max(0) + radius)
    if box is None:
        return None, None
    x, y, z = grid.coords(box)
    p = np.stack(np.broadcast_arrays(x, y, z), axis=-1)
    dist2 = np.full(p.shape[:3], np.inf)
    for a, b in zip(pts[:-1], pts[1:]):
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
        dist2 = np.minimum(dist2, (((a + t[..., None] * ab) - p) ** 2).sum(-1))
    return box, dist2 <= radius**2
