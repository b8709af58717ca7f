"""A generated example cohort that looks like whole-body FDG PET/CT of lymphoma.

``clips synth --out DIR --patients N --seed S`` writes the autoPET layout
(``DIR/<patient_id>/CTres.nii.gz``, ``SUV.nii.gz``, ``SEG.nii.gz``) plus
``DIR/cohort.csv``. Deterministic for a seed: patient *i* draws from its own
``SeedSequence(seed).spawn`` child, so adding patients never changes the first ones.

The phantom (all sizes in mm, RAS+ axes, z from mid-thigh to the vertex):
CT has air, subcutaneous fat, soft tissue, lungs, bone (femurs, pelvis, spine,
humeri, skull) and organs; PET has the normal FDG biodistribution (brain,
myocardium, liver, spleen, kidneys with hot collecting systems, bladder, bowel,
blood pool, marrow, muscle). Lymphoma lesions sit in nodal stations and in
spleen and bone, are blurred by a scanner point-spread function and carry
Poisson-like noise. About a third of the patients are hard, in the ways that
TMTV-Net fails: disseminated disease, small faint lesions, lesions touching
organs of high normal uptake. The factors are written to ``cohort.csv``.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from clips.data.phantom import Grid, cylinder_z, ellipsoid, gaussian_sigma_vox, paint

HARD_FACTORS = ("disseminated", "small_faint", "near_high_uptake")

# Nodal stations: name -> centre (x, y, z) in mm for a body of scale 1.
# +x is the patient's right, +y anterior, +z superior (RAS+): the liver is at +x.
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
# Sites touching organs of high normal uptake (lesion centre, organ it touches).
NEAR_HIGH_UPTAKE = {
    "perirenal_l": (-50, -48, 470), "perirenal_r": (50, -48, 415),
    "paravesical_l": (-48, 45, 172), "paravesical_r": (48, 45, 172),
    "pericardial": (-78, 35, 600), "epicardial": (20, 75, 640),
    "skull_base": (30, 10, 828),
}


@dataclass(frozen=True)
class SynthConfig:
    """Size of the generated images. Anatomy is in mm, so any voxel size works."""

    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0)
    fov_mm: tuple[float, float, float] = (560.0, 300.0, 1000.0)
    psf_fwhm_mm: float = 7.0

    @property
    def grid(self) -> Grid:
        shape = tuple(int(round(f / s)) for f, s in zip(self.fov_mm, self.spacing_mm))
        origin = (-self.fov_mm[0] / 2, -self.fov_mm[1] / 2, 0.0)
        return Grid(shape, tuple(float(s) for s in self.spacing_mm), origin)


@dataclass
class Lesion:
    site: str
    center: tuple[float, float, float]
    volume_ml: float
    suv_max: float


@dataclass
class PatientPlan:
    patient_id: str
    scale: float
    factors: tuple[str, ...]
    lesions: list[Lesion] = field(default_factory=list)


# --------------------------------------------------------------------------- planning
def _log_uniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _jitter(rng, center, scale, mm=10.0):
    return tuple(float(c * (scale if i < 2 else 1.0) + rng.normal(0, mm)) for i, c in enumerate(center))


def plan_patient(patient_id: str, factors: tuple[str, ...], rng: np.random.Generator) -> PatientPlan:
    """Decide body size and the lesions (site, size, uptake) of one patient."""
    scale = float(rng.uniform(0.9, 1.1))
    plan = PatientPlan(patient_id, scale, factors)
    stations = list(NODAL_STATIONS)

    def add(site, center, vol, suv):
        plan.lesions.append(Lesion(site, _jitter(rng, center, scale, 6.0), vol, suv))

    if "disseminated" in factors:
        for site in rng.choice(stations, size=int(rng.integers(12, 18)), replace=False):
            for _ in range(int(rng.integers(1, 3))):
                add(site, NODAL_STATIONS[site], _log_uniform(rng, 0.6, 25), rng.uniform(4, 16))
        for _ in range(int(rng.integers(2, 6))):  # marrow and splenic involvement
            add(*_extranodal(rng), _log_uniform(rng, 0.8, 12), rng.uniform(4, 12))
    else:
        n = int(rng.integers(1, 7))
        for site in rng.choice(stations, size=n, replace=False):
            add(site, NODAL_STATIONS[site], _log_uniform(rng, 1.5, 120), rng.uniform(5, 22))
        if rng.random() < 0.3:  # one bulky mass, the classic lymphoma presentation
            site = rng.choice(["mediastinal", "mesenteric", "para_aortic_lower"])
            add(site, NODAL_STATIONS[site], rng.uniform(150, 400), rng.uniform(12, 25))
        if rng.random() < 0.3:
            add(*_extranodal(rng), _log_uniform(rng, 2, 40), rng.uniform(5, 15))
    if "small_faint" in factors:
        for site in rng.choice(stations, size=int(rng.integers(3, 7)), replace=False):
            add(site, NODAL_STATIONS[site], rng.uniform(0.3, 1.5), rng.uniform(2.5, 4.5))
    if "near_high_uptake" in factors:
        sites = list(NEAR_HIGH_UPTAKE)
        for site in rng.choice(sites, size=int(rng.integers(2, 5)), replace=False):
            add(site, NEAR_HIGH_UPTAKE[site], _log_uniform(rng, 1, 30), rng.uniform(3.5, 10))
    return plan


def _extranodal(rng) -> tuple[str, tuple[float, float, float]]:
    choice = rng.integers(0, 3)
    if choice == 0:
        return "spleen", (-92 + 10, -35, 510)
    if choice == 1:
        return "bone_spine", (0, -72, float(rng.uniform(300, 720)))
    side = rng.choice([-1, 1])
    return "bone_pelvis", (side * 100, -35, 265)


# --------------------------------------------------------------------------- anatomy
class Phantom:
    """CT (HU), PET (SUV, before blur) and lesion mask for one planned patient."""

    def __init__(self, grid: Grid, plan: PatientPlan, rng: np.random.Generator):
        self.grid, self.plan, self.rng = grid, plan, rng
        self.ct = np.full(grid.shape, -1000.0, np.float32)
        self.suv = np.zeros(grid.shape, np.float32)
        self.seg = np.zeros(grid.shape, np.uint8)
        self.s = plan.scale

    # A helper: paint one structure into CT and PET at once.
    def _organ(self, shape, hu, suv):
        box, mask = shape[0], shape[1]
        paint(self.ct, box, mask, hu)
        paint(self.suv, box, mask, suv)

    def _ell(self, center, radii):
        s = self.s
        c = (center[0] * s, center[1] * s, center[2])
        r = (radii[0] * s, radii[1] * s, radii[2])
        return ellipsoid(self.grid, c, r)

    def _cyl(self, center_xy, radii_xy, z0, z1):
        s = self.s
        return cylinder_z(self.grid, (center_xy[0] * s, center_xy[1] * s), (radii_xy[0] * s, radii_xy[1] * s), z0, z1)

    def build(self) -> "Phantom":
        rng, u = self.rng, self.rng.uniform
        muscle_suv, fat_hu = u(0.6, 0.9), u(-110, -80)
        self._body(muscle_suv, fat_hu)
        blood = u(1.4, 2.0)
        # Thorax
        for side in (-1, 1):
            self._organ(self._ell((side * 75, 0, 660), (58, 72, 105)), u(-870, -820), u(0.3, 0.5))
        heart = self._ell((-22, 35, 615), (55, 50, 55))
        self._organ(heart, 45, u(2.0, 14.0))  # myocardial FDG uptake varies widely
        self._organ(self._ell((-22, 35, 615), (38, 34, 38)), 40, blood)  # blood pool
        self._organ(self._cyl((-12, -35), (11, 11), 300, 660), 40, blood)  # aorta
        self._organ(self._cyl((0, 10), (8, 8), 660, 800), -950, 0.2)  # trachea
        # Abdomen and pelvis
        self._organ(self._ell((72, 10, 500), (85, 75, 70)), 60, u(2.0, 2.8))  # liver
        self._organ(self._ell((-92, -35, 510), (35, 42, 50)), 45, u(1.7, 2.3))  # spleen
        for side in (-1, 1):
            self._organ(self._ell((side * 72, -50, 440), (26, 24, 50)), 30, u(3.0, 5.0))
            self._organ(self._ell((side * 68, -48, 440), (9, 8, 18)), 20, u(8.0, 25.0))  # collecting system
        self._organ(self._ell((0, 48, 172), (42, 35, 32)), 10, u(10.0, 45.0))  # bladder
        for _ in range(int(rng.integers(2, 5))):  # bowel loops: physiological, a classic false positive
            c = (rng.uniform(-70, 70), rng.uniform(-10, 50), rng.uniform(290, 420))
            self._organ(self._ell(c, rng.uniform(10, 22, 3)), 25, u(1.5, 3.8))
        self._skeleton()
        # Head
        self._organ(self._ell((0, 0, 905), (72, 92, 98)), 900, 1.0)  # skull
        self._organ(self._ell((0, 0, 908), (64, 84, 88)), 35, u(7.0, 12.0))  # brain
        self._lesions()
        return self

    def _body(self, muscle_suv, fat_hu):
        g, s = self.grid, self.s
        # Torso: elliptic cross-section whose half-axes change with height.
        zk = [120, 300, 560, 700, 760, 790]
        ak = [160, 170, 160, 168, 190, 60]
        bk = [105, 110, 110, 115, 105, 55]
        z = g.axis_mm(2)
        a = np.interp(z, zk, ak) * s
        b = np.interp(z, zk, bk) * s
        inside_z = (z >= zk[0]) & (z <= zk[-1])
        x, y = g.axis_mm(0)[:, None, None], g.axis_mm(1)[None, :, None]
        for shrink, hu in ((0.0, fat_hu), (14.0, 45.0)):  # skin/fat layer, then muscle and viscera
            mask = ((x / (a - shrink)) ** 2 + (y / (b - shrink)) ** 2 <= 1.0) & inside_z[None, None, :]
            self.ct[mask] = hu
            self.suv[mask] = 0.35 if shrink == 0 else muscle_suv
        for side in (-1, 1):
            self._organ(self._cyl((side * 88, 0), (72, 72), 0, 150), fat_hu, 0.35)  # thighs
            self._organ(self._cyl((side * 88, 0), (60, 60), 0, 150), 45, muscle_suv)
            self._organ(self._cyl((side * 218, -5), (38, 40), 380, 770), 45, muscle_suv)  # arms
        self._organ(self._cyl((0, -5), (52, 52), 780, 840), 45, muscle_suv)  # neck

    def _skeleton(self):
        u = self.rng.uniform
        marrow = u(1.1, 1.8)
        self._organ(self._cyl((0, -72), (19, 19), 120, 800), 450, marrow)  # spine
        self._organ(self._cyl((0, -72), (14, 14), 120, 800), 220, marrow)
        for side in (-1, 1):
            self._organ(self._cyl((side * 92, 0), (15, 15), 0, 130), 700, marrow * 0.8)  # femurs
            self._organ(self._ell((side * 88, 0, 140), (24, 24, 24)), 500, marrow)  # femoral heads
            self._organ(self._ell((side * 100, -35, 265), (35, 38, 45)), 400, marrow)  # iliac wings
            self._organ(self._cyl((side * 218, -5), (12, 12), 420, 760), 700, marrow * 0.8)  # humeri
        self._organ(self._ell((0, 95, 640), (14, 8, 80)), 450, marrow)  # sternum

    def _lesions(self):
        for les in self.plan.lesions:
            self._lesion(les)

    def _lesion(self, les: Lesion):
        """A lumpy lesion: 1-3 overlapping ellipsoids sized to the planned volume."""
        rng = self.rng
        n_lobes = 1 if les.volume_ml < 5 else int(rng.integers(1, 4))
        r_sphere = (3 * les.volume_ml * 1000 / (4 * np.pi) / n_lobes) ** (1 / 3)
        for lobe in range(n_lobes):
            radii = r_sphere * rng.uniform(0.75, 1.3, 3)
            radii *= r_sphere / np.prod(radii) ** (1 / 3)  # keep the lobe volume
            offset = rng.normal(0, 0.6 * r_sphere, 3) if lobe else np.zeros(3)
            center = np.asarray(les.center) + offset
            box, mask, r2 = ellipsoid(self.grid, center, radii)
            if box is None:
                continue
            mask = mask & (self.ct[box] > -990)  # never outside the body (air is -1000 before noise)
            if not mask.any():
                continue
            uptake = les.suv_max * (0.65 + 0.35 * (1 - np.clip(r2, 0, 1)))
            if les.volume_ml > 100:  # bulky lesions have a less avid, necrotic core
                uptake = np.where(r2 < 0.25, les.suv_max * 0.35, uptake)
            # Keep the higher of lesion and background (a lesion on an organ adds to it).
            view = self.suv[box]
            view[mask] = np.maximum(view[mask], uptake[mask])
            paint(self.ct, box, mask, 38.0)
            self.seg[box][mask] = 1


def scanner(suv: np.ndarray, ct: np.ndarray, grid: Grid, cfg: SynthConfig, rng):
    """Point-spread function and noise, as a reconstructed PET and CT would show them."""
    pet = ndimage.gaussian_filter(suv, gaussian_sigma_vox(cfg.psf_fwhm_mm, grid.spacing), mode="nearest")
    # Poisson-like noise: variance grows with the signal; smoothed as by the reconstruction filter.
    noise = ndimage.gaussian_filter(rng.standard_normal(grid.shape).astype(np.float32), 0.8)
    noise /= noise.std() + 1e-8
    level = rng.uniform(0.10, 0.18)
    pet = np.clip(pet + level * np.sqrt(np.maximum(pet, 0)) * noise, 0, None).astype(np.float32)
    ct = ndimage.gaussian_filter(ct, 0.6) + rng.normal(0, 12, grid.shape)
    return pet, np.clip(np.round(ct), -1024, 3071).astype(np.int16)


# --------------------------------------------------------------------------- cohort
def hard_assignment(n: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """Exactly round(n/3) hard patients, each with one or two hard factors."""
    n_hard = int(round(n / 3))
    hard_ids = set(rng.permutation(n)[:n_hard].tolist())
    out = []
    for i in range(n):
        if i in hard_ids:
            k = 1 if rng.random() < 0.6 else 2
            out.append(tuple(sorted(rng.choice(HARD_FACTORS, size=k, replace=False).tolist())))
        else:
            out.append(())
    return out


def generate_patient(patient_id: str, factors, cfg: SynthConfig, seed_seq: np.random.SeedSequence):
    """CT (int16 HU), PET (float32 SUV), SEG (uint8), grid and summary row of one patient."""
    rng = np.random.default_rng(seed_seq)
    grid = cfg.grid
    plan = plan_patient(patient_id, tuple(factors), rng)
    ph = Phantom(grid, plan, rng).build()
    pet, ct = scanner(ph.suv, ph.ct, grid, cfg, rng)
    seg = ph.seg
    labels, n_lesions = ndimage.label(seg)
    sizes = np.bincount(labels.ravel())[1:] * grid.voxel_ml
    row = {
        "patient_id": patient_id,
        "n_lesions": int(n_lesions),
        "tmtv_ml": round(float(seg.sum() * grid.voxel_ml), 3),
        "suv_max": round(float(pet[seg > 0].max()) if n_lesions else 0.0, 3),
        "smallest_lesion_ml": round(float(sizes.min()) if n_lesions else 0.0, 3),
        "hard": int(bool(factors)),
        "hard_factors": ";".join(factors),
        **{f: int(f in factors) for f in HARD_FACTORS},
    }
    return ct, pet, seg, grid, row


def write_cohort(out: Path, patients: int, seed: int, cfg: SynthConfig | None = None, log=print) -> Path:
    """Write the cohort; returns the path of cohort.csv."""
    cfg = cfg or SynthConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(seed)
    factors = hard_assignment(patients, np.random.default_rng(root.spawn(1)[0]))
    children = np.random.SeedSequence(seed, spawn_key=(1,)).spawn(patients)
    rows = []
    for i in range(patients):
        pid = f"SYN{i + 1:04d}"
        ct, pet, seg, grid, row = generate_patient(pid, factors[i], cfg, children[i])
        pdir = out / pid
        pdir.mkdir(exist_ok=True)
        for name, arr in (("CTres", ct), ("SUV", pet), ("SEG", seg)):
            img = nib.Nifti1Image(arr, grid.affine)
            img.header.set_xyzt_units("mm")
            nib.save(img, pdir / f"{name}.nii.gz")
        rows.append(row)
        log(f"{pid}: {row['n_lesions']} lesions, TMTV {row['tmtv_ml']:.1f} ml, "
            f"SUVmax {row['suv_max']:.1f}{', hard: ' + row['hard_factors'] if row['hard'] else ''}")
    csv_path = out / "cohort.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return csv_path
