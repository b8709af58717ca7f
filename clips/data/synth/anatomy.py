"""The normal body: CT densities and the normal FDG biodistribution, with an organ map.

All random values are drawn at planning time (:func:`draw_anatomy`), so one patient is the same patient on any
voxel grid; :class:`Phantom` only rasterises. Sizes in mm, RAS+ (+x patient's right, +y anterior, +z superior).
"""
from __future__ import annotations

import numpy as np

from clips.data.synth.phantom import Grid, cylinder_z, ellipsoid, paint

# Organ map codes: what the disease, mimic and factor code needs to find again.
ORGANS = {"liver": 1, "spleen": 2, "kidney": 3, "bladder": 4, "heart": 5, "brain": 6, "bone": 7, "lung": 8,
          "bowel": 9}
LIVER_CENTER, LIVER_RADII = (72, 10, 500), (85, 75, 70)
SPLEEN_CENTER, SPLEEN_RADII = (-92, -35, 510), (35, 42, 50)
KIDNEY_CENTER, COLLECTING_CENTER = (72, -50, 440), (68, -48, 440)
BLADDER_CENTER = (0, 48, 172)
HEART_CENTER = (-22, 35, 615)


def draw_anatomy(rng: np.random.Generator) -> dict:
    """Per-patient densities and uptakes (SUV) of the normal biodistribution."""
    u = rng.uniform
    return {
        "muscle": u(0.6, 0.9), "fat_hu": u(-110, -80), "blood": u(1.4, 2.0), "lung": u(0.3, 0.5),
        "lung_hu": u(-870, -820), "myocardium": u(2.0, 14.0),  # myocardial FDG uptake varies that much
        "liver": u(2.0, 2.8), "spleen": u(1.7, 2.3), "kidney": u(3.0, 5.0), "collecting": u(8.0, 25.0),
        "bladder": u(10.0, 45.0), "brain": u(7.0, 12.0), "marrow": u(1.1, 1.8),
    }


class Phantom:
    """CT (HU), PET (SUV before the scanner), lesion label, organ map and mimic map of one patient."""

    def __init__(self, grid: Grid, scale: float):
        self.grid, self.s = grid, scale
        self.ct = np.full(grid.shape, -1000.0, np.float32)
        self.suv = np.zeros(grid.shape, np.float32)
        self.seg = np.zeros(grid.shape, np.uint8)
        self.organs = np.zeros(grid.shape, np.uint8)
        self.mimics = np.zeros(grid.shape, np.uint8)

    # Shapes in body coordinates: x and y scale with the body, z does not (height is the FOV).
    def scaled(self, center, radii=None):
        c = (center[0] * self.s, center[1] * self.s, center[2])
        if radii is None:
            return c
        return c, (radii[0] * self.s, radii[1] * self.s, radii[2])

    def ell(self, center, radii):
        c, r = self.scaled(center, radii)
        return ellipsoid(self.grid, c, r)[:2]

    def cyl(self, center_xy, radii_xy, z0, z1):
        s = self.s
        return cylinder_z(self.grid, (center_xy[0] * s, center_xy[1] * s), (radii_xy[0] * s, radii_xy[1] * s), z0, z1)

    def organ(self, shape, hu, suv, code: int | None = None):
        box, mask = shape
        paint(self.ct, box, mask, hu)
        paint(self.suv, box, mask, suv)
        if code is not None:
            paint(self.organs, box, mask, code)

    def draw(self, a: dict, spleen_scale: float = 1.0) -> "Phantom":
        o = ORGANS
        self._body(a)
        for side in (-1, 1):
            self.organ(self.ell((side * 75, 0, 660), (58, 72, 105)), a["lung_hu"], a["lung"], o["lung"])
        self.organ(self.ell(HEART_CENTER, (55, 50, 55)), 45, a["myocardium"], o["heart"])
        self.organ(self.ell(HEART_CENTER, (38, 34, 38)), 40, a["blood"])  # blood pool
        self.organ(self.cyl((-12, -35), (11, 11), 300, 660), 40, a["blood"])  # aorta
        self.organ(self.cyl((0, 10), (8, 8), 660, 800), -950, 0.2)  # trachea
        self.organ(self.ell(LIVER_CENTER, LIVER_RADII), 60, a["liver"], o["liver"])
        self.organ(self.ell(SPLEEN_CENTER, tuple(r * spleen_scale for r in SPLEEN_RADII)), 45, a["spleen"],
                   o["spleen"])
        for side in (-1, 1):
            kc, cc = KIDNEY_CENTER, COLLECTING_CENTER
            self.organ(self.ell((side * kc[0], kc[1], kc[2]), (26, 24, 50)), 30, a["kidney"], o["kidney"])
            self.organ(self.ell((side * cc[0], cc[1], cc[2]), (9, 8, 18)), 20, a["collecting"], o["kidney"])
        self.organ(self.ell(BLADDER_CENTER, (42, 35, 32)), 10, a["bladder"], o["bladder"])
        self._skeleton(a["marrow"])
        self.organ(self.ell((0, 0, 905), (72, 92, 98)), 900, 1.0, o["bone"])  # skull
        self.organ(self.ell((0, 0, 908), (64, 84, 88)), 35, a["brain"], o["brain"])
        return self

    def _body(self, a):
        g, s = self.grid, self.s
        # Torso: elliptic cross-section whose half-axes change with height.
        zk = [120, 300, 560, 700, 760, 790]
        ak = [160, 170, 160, 168, 190, 60]
        bk = [105, 110, 110, 115, 105, 55]
        z = g.axis_mm(2)
        ax, bx = np.interp(z, zk, ak) * s, np.interp(z, zk, bk) * s
        inside_z = (z >= zk[0]) & (z <= zk[-1])
        x, y = g.axis_mm(0)[:, None, None], g.axis_mm(1)[None, :, None]
        for shrink, hu, suv in ((0.0, a["fat_hu"], 0.35), (14.0, 45.0, a["muscle"])):  # fat layer, then muscle
            mask = ((x / (ax - shrink)) ** 2 + (y / (bx - shrink)) ** 2 <= 1.0) & inside_z[None, None, :]
            self.ct[mask] = hu
            self.suv[mask] = suv
        for side in (-1, 1):
            self.organ(self.cyl((side * 88, 0), (72, 72), 0, 150), a["fat_hu"], 0.35)  # thighs
            self.organ(self.cyl((side * 88, 0), (60, 60), 0, 150), 45, a["muscle"])
            self.organ(self.cyl((side * 218, -5), (38, 40), 380, 770), 45, a["muscle"])  # arms
        self.organ(self.cyl((0, -5), (52, 52), 780, 840), 45, a["muscle"])  # neck

    def _skeleton(self, marrow):
        bone = ORGANS["bone"]
        self.organ(self.cyl((0, -72), (19, 19), 120, 800), 450, marrow, bone)  # spine: cortex, then marrow
        self.organ(self.cyl((0, -72), (14, 14), 120, 800), 220, marrow, bone)
        for side in (-1, 1):
            self.organ(self.cyl((side * 92, 0), (15, 15), 0, 130), 700, marrow * 0.8, bone)  # femurs
            self.organ(self.ell((side * 88, 0, 140), (24, 24, 24)), 500, marrow, bone)  # femoral heads
            self.organ(self.ell((side * 100, -35, 265), (35, 38, 45)), 400, marrow, bone)  # iliac wings
            self.organ(self.cyl((side * 218, -5), (12, 12), 420, 760), 700, marrow * 0.8, bone)  # humeri
        self.organ(self.ell((0, 95, 640), (14, 8, 80)), 450, marrow, bone)  # sternum
