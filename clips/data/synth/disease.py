"""Lymphoma as it looks on FDG PET/CT: where it sits, its shapes and uptake, and the hard presentations.

A patient has one *presentation* (``PRESENTATIONS``): the usual disease, or one of the ways that fools a network
(small and faint nodes, disease touching high physiological uptake, diffuse organ involvement, disseminated
small nodes). A hard presentation *replaces* the usual disease rather than adding to it, so that hard patients
do not simply carry more (and easier) tumour. Every lesion is planned in mm (grid-independent) and drawn by
:func:`draw_lesion`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clips.data.synth.anatomy import (
    BLADDER_CENTER,
    COLLECTING_CENTER,
    HEART_CENTER,
    KIDNEY_CENTER,
    ORGANS,
    SPLEEN_CENTER,
    Phantom,
)
from clips.data.synth.phantom import blob

# Nodal stations: name -> centre (x, y, z) in mm for a body of scale 1.
NODAL_STATIONS = {
    "cervical_r": (38, 5, 800), "cervical_l": (-38, 5, 800),
    "supraclavicular_r": (62, 0, 768), "supraclavicular_l": (-62, 0, 768),
    "axillary_r": (150, -10, 705), "axillary_l": (-150, -10, 705),
    "mediastinal": (0, 35, 690), "paratracheal": (-14, 10, 735),
    "hilar_r": (42, 0, 655), "hilar_l": (-42, 0, 655),
    "para_aortic_upper": (-22, -32, 480), "para_aortic_lower": (22, -32, 390),
    "mesenteric": (10, 25, 430),
    "iliac_r": (55, -15, 255), "iliac_l": (-55, -15, 255),
    "inguinal_r": (82, 40, 150), "inguinal_l": (-82, 40, 150),
}
HIGH_UPTAKE_SUV = 3.0  # physiological uptake above any liver: where a touching lesion blends in
# Sites of high physiological uptake a lesion can touch: (organ centre, organ radii) at body scale 1.
HIGH_UPTAKE_ORGANS = {
    "kidney_l": ((-KIDNEY_CENTER[0], *KIDNEY_CENTER[1:]), (26, 24, 50)),
    "kidney_r": (KIDNEY_CENTER, (26, 24, 50)),
    "renal_pelvis_l": ((-COLLECTING_CENTER[0], *COLLECTING_CENTER[1:]), (9, 8, 18)),
    "bladder": (BLADDER_CENTER, (42, 35, 32)),
    "heart": (HEART_CENTER, (55, 50, 55)),
    "brain_base": ((0, 0, 908), (64, 84, 88)),
}


@dataclass
class Lesion:
    """One lesion in mm: lobes are (offset, radii) ellipsoids, bumps make the surface irregular."""

    site: str
    center: tuple[float, float, float]
    volume_ml: float
    suv_max: float
    lobes: list = field(default_factory=list)
    bumps: list = field(default_factory=list)
    necrotic_core: float = 0.0  # normalised radius of a less avid core (0: none)
    texture: list = field(default_factory=list)  # (wave vector, amplitude, phase): heterogeneous uptake
    hu: float = 40.0  # soft-tissue density of a lymphoma node
    organ: str = ""  # "spleen": the whole (enlarged) spleen is the lesion


def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _unit(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def shaped_lesion(rng, site, center, volume_ml, suv_max, irregular=0.15) -> Lesion:
    """A lesion of the given volume: 1 lobe when small, up to 4 (lobulated) when large, irregular surface,
    heterogeneous uptake and, above 60 ml, a necrotic core."""
    n_lobes = 1 if volume_ml < 4 else int(rng.integers(1, 5))
    r = (3 * volume_ml * 1000 / (4 * np.pi) / n_lobes) ** (1 / 3)
    lobes = []
    for i in range(n_lobes):
        radii = r * rng.uniform(0.7, 1.35, 3)
        radii *= r / np.prod(radii) ** (1 / 3)  # keep the lobe's volume
        offset = (0.9 * r * _unit(rng)) if i else np.zeros(3)
        lobes.append((tuple(offset), tuple(radii)))
    bumps = [(tuple(_unit(rng)), float(rng.uniform(0.3, 1.0) * irregular), int(rng.integers(2, 5)),
              float(rng.uniform(0, 2 * np.pi))) for _ in range(3)]
    texture = [(tuple(_unit(rng) * rng.uniform(0.15, 0.4)), float(rng.uniform(0.05, 0.12)),
                float(rng.uniform(0, 2 * np.pi))) for _ in range(3)]
    core = float(rng.uniform(0.3, 0.6)) if volume_ml > 60 else 0.0
    return Lesion(site, tuple(float(c) for c in center), float(volume_ml), float(suv_max), lobes, bumps, core,
                  texture, float(rng.uniform(30, 50)))


def _at_station(rng, scale, center, mm=6.0):
    return (center[0] * scale + rng.normal(0, mm), center[1] * scale + rng.normal(0, mm), center[2] + rng.normal(0, mm))


def _nodes(rng, scale, n, volume, suv, stations=None):
    names = list(stations or NODAL_STATIONS)
    out = []
    for site in rng.choice(names, size=min(n, len(names)), replace=False):
        out.append(shaped_lesion(rng, str(site), _at_station(rng, scale, NODAL_STATIONS[site]), volume(), suv()))
    return out


def _bone_site(rng, scale):
    choice = int(rng.integers(0, 3))
    if choice == 0:
        return "bone_spine", (0.0, -72 * scale, float(rng.uniform(300, 760)))
    if choice == 1:
        side = rng.choice([-1, 1])
        return "bone_pelvis", (side * 100 * scale + rng.normal(0, 10), -35 * scale, 265 + rng.normal(0, 15))
    side = rng.choice([-1, 1])
    return "bone_femur", (side * 92 * scale, 0.0, float(rng.uniform(20, 120)))


# --------------------------------------------------------------------------- presentations
def usual(rng, scale, anatomy) -> list[Lesion]:
    """1-6 nodal lesions of 3-150 ml (SUVmax 6-30), a bulky conglomerate in 30 %, an extranodal focus in 25 %."""
    lesions = _nodes(rng, scale, int(rng.integers(1, 7)), lambda: _log_uniform(rng, 3, 150), lambda: rng.uniform(6, 30))
    if rng.random() < 0.3:  # bulky conglomerate of nodes, the classic presentation
        site = str(rng.choice(["mediastinal", "mesenteric", "para_aortic_lower"]))
        center = _at_station(rng, scale, NODAL_STATIONS[site])
        lesions.append(shaped_lesion(rng, site, center, rng.uniform(150, 450), rng.uniform(12, 30), irregular=0.25))
    if rng.random() < 0.25:
        if rng.random() < 0.5:
            x, y, z = SPLEEN_CENTER
            c = (x * scale + rng.normal(0, 12), y * scale, z + rng.normal(0, 15))
            lesions.append(shaped_lesion(rng, "spleen_focal", c, _log_uniform(rng, 3, 30), rng.uniform(6, 15)))
        else:
            site, c = _bone_site(rng, scale)
            lesions.append(shaped_lesion(rng, site, c, _log_uniform(rng, 3, 20), rng.uniform(6, 15)))
    return lesions


def small_faint(rng, scale, anatomy) -> list[Lesion]:
    """2-6 nodes of 0.3-2 ml with SUVmax 2.5-4.5: near the resolution limit and barely above the blood pool."""
    return _nodes(rng, scale, int(rng.integers(2, 7)), lambda: rng.uniform(0.3, 2.0), lambda: rng.uniform(2.5, 4.5))


def near_high_uptake(rng, scale, anatomy) -> list[Lesion]:
    """2-4 lesions of 1-25 ml (SUVmax 3.5-10) on the surface of kidneys, renal pelvis, bladder, heart or brain."""
    out = []
    # the heart only where its uptake is high (myocardial uptake varies from blood-pool level to SUV 14)
    sites = [s for s in HIGH_UPTAKE_ORGANS if s != "heart" or anatomy["myocardium"] >= HIGH_UPTAKE_SUV]
    for site in rng.choice(sites, size=int(rng.integers(2, 5)), replace=False):
        (cx, cy, cz), radii = HIGH_UPTAKE_ORGANS[site]
        d = _unit(rng)
        if site == "brain_base":
            d[2] = -abs(d[2]) - 0.8  # skull base, below the brain
            d /= np.linalg.norm(d)
        vol = _log_uniform(rng, 1, 25)
        r = (3 * vol * 1000 / (4 * np.pi)) ** (1 / 3)
        # centre on the organ surface, pushed out by half the lesion radius: the lesion touches the organ
        surface = d / np.sqrt(((d / np.array(radii)) ** 2).sum())
        c = np.array([cx * scale, cy * scale, cz]) + surface * np.array([scale, scale, 1]) + 0.5 * r * d
        out.append(shaped_lesion(rng, f"near_{site}", tuple(c), vol, rng.uniform(3.5, 10)))
    return out


def diffuse_organ(rng, scale, anatomy) -> list[Lesion]:
    """Diffuse splenic infiltration (an enlarged, avid spleen, all of it lesion) or multifocal marrow disease
    (9-12 foci of 1-6 ml, SUVmax 4-10, in spine, pelvis and femurs), plus 0-2 small nodes."""
    if rng.random() < 0.5:
        spleen = Lesion("spleen_diffuse", tuple(float(v) for v in (SPLEEN_CENTER[0] * scale, SPLEEN_CENTER[1] * scale,
                                                                   SPLEEN_CENTER[2])),
                        0.0, float(rng.uniform(3.2, 6.5)), organ="spleen",
                        texture=[(tuple(_unit(rng) * rng.uniform(0.1, 0.3)), 0.12, float(rng.uniform(0, 6.28)))
                                 for _ in range(3)])
        out = [spleen]
    else:
        out = []
        for _ in range(int(rng.integers(9, 13))):
            site, c = _bone_site(rng, scale)
            out.append(shaped_lesion(rng, site, c, rng.uniform(1, 6), rng.uniform(4, 10)))
    return out + _nodes(rng, scale, int(rng.integers(0, 3)), lambda: rng.uniform(1, 5), lambda: rng.uniform(4, 9))


def disseminated(rng, scale, anatomy) -> list[Lesion]:
    """Nodes at 13-17 stations and 2-5 extranodal foci, mostly small (0.8-12 ml, SUVmax 4-14)."""
    out = _nodes(rng, scale, int(rng.integers(13, 18)), lambda: _log_uniform(rng, 0.8, 12), lambda: rng.uniform(4, 14))
    for _ in range(int(rng.integers(2, 6))):
        site, c = _bone_site(rng, scale)
        out.append(shaped_lesion(rng, site, c, _log_uniform(rng, 0.8, 8), rng.uniform(4, 12)))
    return out


PRESENTATIONS = {"usual": usual, "small_faint": small_faint, "near_high_uptake": near_high_uptake,
                 "diffuse_organ": diffuse_organ, "disseminated": disseminated}


def spleen_scale(lesions: list[Lesion]) -> float:
    """Diffuse splenic infiltration comes with splenomegaly."""
    return 1.35 if any(les.organ == "spleen" for les in lesions) else 1.0


# --------------------------------------------------------------------------- drawing
def _texture(les: Lesion, x, y, z):
    t = 0.0
    for k, a, p in les.texture:
        t = t + a * np.cos(k[0] * x + k[1] * y + k[2] * z + p)
    return t


def draw_lesion(ph: Phantom, les: Lesion) -> None:
    """Paint one lesion: label, soft-tissue CT, uptake (the higher of lesion and background where they meet)."""
    if les.organ == "spleen":
        mask = ph.organs == ORGANS["spleen"]
        x, y, z = np.meshgrid(*(ph.grid.axis_mm(a) for a in range(3)), indexing="ij", sparse=True)
        uptake = les.suv_max * (0.85 + _texture(les, x, y, z))
        ph.suv[mask] = np.broadcast_to(uptake, mask.shape)[mask]
        ph.seg[mask] = 1
        return
    drawn = False
    for offset, radii in les.lobes:
        center = np.asarray(les.center) + np.asarray(offset)
        box, mask, rho = blob(ph.grid, center, radii, les.bumps)
        if box is None:
            continue
        mask = mask & (ph.ct[box] > -990)  # never outside the body
        if not mask.any():
            continue
        x, y, z = ph.grid.coords(box)
        uptake = les.suv_max * (0.6 + 0.4 * (1 - np.clip(rho, 0, 1) ** 2)) * (1 + _texture(les, x, y, z))
        if les.necrotic_core:
            uptake = np.where(rho < les.necrotic_core, les.suv_max * 0.25, uptake)
        view = ph.suv[box]
        view[mask] = np.maximum(view[mask], np.minimum(uptake[mask], les.suv_max))
        ph.ct[box][mask] = les.hu
        ph.seg[box][mask] = 1
        ph.mimics[box][mask] = 0  # a lesion over a mimic is the lesion
        drawn = True
    if not drawn:  # smaller than a voxel on this grid: the voxel at its centre
        idx = tuple(int(round((c - o) / s)) for c, o, s in zip(les.center, ph.grid.origin, ph.grid.spacing))
        if all(0 <= i < n for i, n in zip(idx, ph.grid.shape)) and ph.ct[idx] > -990:
            ph.suv[idx] = max(ph.suv[idx], les.suv_max * 0.8)
            ph.ct[idx], ph.seg[idx], ph.mimics[idx] = les.hu, 1, 0
