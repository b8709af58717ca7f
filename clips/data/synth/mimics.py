"""Unlabelled hot structures that look like disease: the false positives of lymphoma segmentation.

Each kind has the share of patients that show it and whether it is *disease-like* (focal, avid, where nodes
sit: what the ``many_mimics`` factor counts) or physiological (present in nearly everyone). Structures are
planned in mm and drawn into PET (and CT, where the tissue differs) and into the mimic map, never into SEG.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clips.data.synth.anatomy import ORGANS, Phantom
from clips.data.synth.disease import NODAL_STATIONS
from clips.data.synth.phantom import ellipsoid, tube


@dataclass
class Structure:
    kind: str
    shape: str  # "ellipsoid" (geometry = center, radii) or "tube" (geometry = points, radius)
    geometry: tuple
    suv: float
    hu: float | None = None  # None: keep the CT of the tissue underneath (uptake without a CT finding)


def _pair(x, y, z):
    return [(x, y, z), (-x, y, z)]


def bowel(rng, s, young):
    """2-6 segments of bowel wall, SUV 1.5-5."""
    out = []
    for _ in range(int(rng.integers(2, 7))):
        p0 = np.array([rng.uniform(-80, 80) * s, rng.uniform(-10, 50) * s, rng.uniform(260, 440)])
        pts = [p0]
        for _ in range(3):
            pts.append(pts[-1] + rng.normal(0, 25, 3))
        radius = float(rng.uniform(7, 13))
        out.append(Structure("bowel", "tube", (np.array(pts), radius), float(rng.uniform(1.5, 5.0)), 25))
    return out


def ureters(rng, s, young):
    """Urine in parts of one or both ureters, SUV 3-15."""
    out = []
    for side in rng.choice([-1, 1], size=int(rng.integers(1, 3)), replace=False):
        path = np.array([(68, -48, 425), (45, -40, 330), (40, -10, 240), (25, 35, 195)], float)
        path[:, 0] *= side * s
        path[:, 1] *= s
        i = int(rng.integers(0, 2))
        radius = float(rng.uniform(3, 4.5))
        out.append(Structure("ureters", "tube", (path[i:i + 3], radius), float(rng.uniform(3, 15)), 20))
    return out


def tonsils(rng, s, young):
    suv = float(rng.uniform(2.5, 7.0))
    return [Structure("tonsils", "ellipsoid", ((x * s, y * s, z), (7, 7, 10)), suv, 40)
            for x, y, z in _pair(15, 25, 832)]


def salivary(rng, s, young):
    suv = float(rng.uniform(1.5, 3.5))
    parotid = [Structure("salivary", "ellipsoid", ((x * s, y * s, z), (14, 12, 20)), suv, 30)
               for x, y, z in _pair(48, 10, 850)]
    return parotid + [Structure("salivary", "ellipsoid", ((x * s, y * s, z), (10, 9, 9)), suv * 0.9, 30)
                      for x, y, z in _pair(30, 30, 815)]


def brown_fat(rng, s, young):
    """Symmetric cervical, supraclavicular and paravertebral foci, SUV 3-15, fat density on CT (the tell)."""
    suv, out = float(rng.uniform(3, 15)), []
    for _ in range(int(rng.integers(3, 7))):
        c = (rng.uniform(40, 75) * s, rng.uniform(-15, 10) * s, rng.uniform(760, 800))
        out += [Structure("brown_fat", "ellipsoid", (p, tuple(rng.uniform(6, 12, 3))), suv, -70) for p in _pair(*c)]
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(2, 5))):
            c = (30 * s, -70 * s, rng.uniform(560, 720))
            out += [Structure("brown_fat", "ellipsoid", (p, (6, 6, 12)), suv * 0.8, -70) for p in _pair(*c)]
    return out


def reactive_nodes(rng, s, young):
    """1-3 small inflammatory nodes (0.3-1.5 ml, SUV 2-4): not lymphoma, and not labelled."""
    out = []
    for site in rng.choice(list(NODAL_STATIONS), size=int(rng.integers(1, 4)), replace=False):
        x, y, z = NODAL_STATIONS[site]
        r = (3 * rng.uniform(0.3, 1.5) * 1000 / (4 * np.pi)) ** (1 / 3)
        c = (x * s + rng.normal(0, 8), y * s + rng.normal(0, 8), z + rng.normal(0, 8))
        out.append(Structure("reactive_nodes", "ellipsoid", (c, (r, r, r * 1.2)), float(rng.uniform(2, 4)), 35))
    return out


def injection_site(rng, s, young):
    """Tracer extravasated at the injection site in one arm (SUV 5-40) and its lymphatic track."""
    side = rng.choice([-1, 1])
    z = rng.uniform(540, 620)
    c = (side * 218 * s, -5 * s, z)
    out = [Structure("injection_site", "ellipsoid", (c, tuple(rng.uniform(4, 9, 3))), float(rng.uniform(5, 40)))]
    track = np.array([c, (side * 205 * s, -5 * s, z + 70), (side * 170 * s, -8 * s, 700)])
    return out + [Structure("injection_site", "tube", (track, 3.0), float(rng.uniform(2, 4)))]


def muscle(rng, s, young):
    """Activated muscle groups after exercise or tension, bilateral, SUV 2-5."""
    groups = {"sternocleidomastoid": ((35, 15, 790), (8, 8, 35)), "psoas": ((45, -45, 330), (16, 16, 70)),
              "thigh": ((88, 0, 70), (25, 25, 50)), "trapezius": ((80, -45, 770), (40, 10, 15))}
    out = []
    for g in rng.choice(list(groups), size=int(rng.integers(1, 3)), replace=False):
        (x, y, z), radii = groups[g]
        suv = float(rng.uniform(2, 5))
        out += [Structure("muscle", "ellipsoid", ((px * s, py * s, pz), radii), suv) for px, py, pz in _pair(x, y, z)]
    return out


def thymus(rng, s, young):
    """Thymic uptake (young patients), anterior mediastinum, SUV 2-4: next to where mediastinal disease sits."""
    return [Structure("thymus", "ellipsoid", ((0, 55 * s, 700), (25, 12, 30)), float(rng.uniform(2, 4)), 40)]


def reactive_marrow(rng, s, young):
    """Diffusely raised marrow uptake (after chemotherapy or G-CSF, anaemia), SUV 2.2-3.5: not lymphoma."""
    return [Structure("reactive_marrow", "marrow", (), float(rng.uniform(2.2, 3.5)))]


# kind -> (planner, share of patients (old, young), disease-like)
MIMICS = {
    "bowel": (bowel, (1.0, 1.0), False),
    "ureters": (ureters, (0.6, 0.6), False),
    "tonsils": (tonsils, (0.9, 0.95), False),
    "salivary": (salivary, (0.9, 0.9), False),
    "brown_fat": (brown_fat, (0.05, 0.2), True),
    "reactive_nodes": (reactive_nodes, (0.35, 0.35), True),
    "injection_site": (injection_site, (0.12, 0.12), True),
    "muscle": (muscle, (0.15, 0.15), True),
    "thymus": (thymus, (0.0, 0.45), True),
    "reactive_marrow": (reactive_marrow, (0.08, 0.08), True),
}
DISEASE_LIKE = tuple(k for k, (_, _, like) in MIMICS.items() if like)
CODES = {k: i + 1 for i, k in enumerate(MIMICS)}  # values of the mimic map
MANY = 3  # disease-like kinds from which a patient counts as `many_mimics`


def plan_mimics(rng, scale: float, young: bool, many: bool) -> list[Structure]:
    """The kinds each patient shows by their shares; `many` forces 3-5 disease-like kinds, otherwise at most
    MANY - 1 are kept so that the factor stays a property of the planned hard patients."""
    present = [k for k, (_, share, _) in MIMICS.items() if rng.random() < share[int(young)]]
    like = [k for k in present if k in DISEASE_LIKE]
    if many:
        pool = [k for k in DISEASE_LIKE if k != "thymus" or young]
        extra = [k for k in pool if k not in like]
        want = int(rng.integers(MANY, min(MANY + 2, len(pool)) + 1))
        like += list(rng.choice(extra, size=max(0, want - len(like)), replace=False))
    elif len(like) >= MANY:
        like = list(rng.choice(like, size=MANY - 1, replace=False))
    kinds = [k for k in MIMICS if k in like or (k in present and k not in DISEASE_LIKE)]
    return [st for k in kinds for st in MIMICS[k][0](rng, scale, young)]


def draw_mimic(ph: Phantom, st: Structure) -> None:
    code = CODES[st.kind]
    if st.shape == "marrow":
        mask = (ph.organs == ORGANS["bone"]) & (ph.ct < 800)  # marrow, not the skull's cortex
        ph.suv[mask] = np.maximum(ph.suv[mask], st.suv)
        ph.mimics[mask] = code
        return
    if st.shape == "tube":
        box, mask = tube(ph.grid, *st.geometry)
    else:
        box, mask, _ = ellipsoid(ph.grid, *st.geometry)
    if box is None:
        return
    mask = mask & (ph.ct[box] > -990)
    view = ph.suv[box]
    view[mask] = np.maximum(view[mask], st.suv)
    if st.hu is not None:
        ph.ct[box][mask] = st.hu
    ph.mimics[box][mask] = code
