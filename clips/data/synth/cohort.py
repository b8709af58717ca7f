"""Plan, draw and write the example cohort."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from clips.data.synth.anatomy import LIVER_CENTER, Phantom, draw_anatomy
from clips.data.synth.disease import PRESENTATIONS, Lesion, draw_lesion, spleen_scale
from clips.data.synth.factors import HARD_FACTORS, Drawn, measure
from clips.data.synth.mimics import Structure, draw_mimic, plan_mimics
from clips.data.synth.phantom import Grid
from clips.data.synth.scanner import Scanner, acquire, draw_scanner

DISEASE_FACTORS = tuple(p for p in PRESENTATIONS if p != "usual")  # hard presentations of the disease itself
CONTEXT_FACTORS = ("many_mimics", "low_counts")  # hard surroundings, added to a hard presentation


@dataclass(frozen=True)
class SynthConfig:
    """Size of the generated images. Anatomy is in mm, so any voxel size works."""

    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 4.0)
    fov_mm: tuple[float, float, float] = (560.0, 300.0, 1000.0)

    @property
    def grid(self) -> Grid:
        shape = tuple(int(round(f / s)) for f, s in zip(self.fov_mm, self.spacing_mm))
        origin = (-self.fov_mm[0] / 2, -self.fov_mm[1] / 2, 0.0)
        return Grid(shape, tuple(float(s) for s in self.spacing_mm), origin)


@dataclass
class PatientPlan:
    """Everything random about a patient, drawn before any voxel: the same patient on every grid."""

    patient_id: str
    planned: tuple[str, ...]
    age: int
    scale: float
    anatomy: dict
    presentation: str
    lesions: list[Lesion] = field(default_factory=list)
    mimics: list[Structure] = field(default_factory=list)
    scanner: Scanner | None = None


def hard_assignment(n: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
    """Exactly round(n/3) patients planned hard: one hard presentation of the disease, and in half of them a
    hard surrounding as well (many mimics or low counts)."""
    hard_ids = set(rng.permutation(n)[: int(round(n / 3))].tolist())
    out = []
    for i in range(n):
        if i not in hard_ids:
            out.append(())
            continue
        f = [str(rng.choice(DISEASE_FACTORS))]
        if rng.random() < 0.5:
            f.append(str(rng.choice(CONTEXT_FACTORS)))
        out.append(tuple(f))
    return out


def plan_patient(patient_id: str, planned: tuple[str, ...], rng: np.random.Generator) -> PatientPlan:
    age = int(rng.integers(18, 86))
    scale = float(rng.uniform(0.88, 1.15))
    anatomy = draw_anatomy(rng)
    presentation = next((f for f in planned if f in PRESENTATIONS), "usual")
    lesions = PRESENTATIONS[presentation](rng, scale, anatomy)
    mimics = plan_mimics(rng, scale, young=age < 30, many="many_mimics" in planned)
    scanner = draw_scanner(rng, scale, low_counts="low_counts" in planned)
    return PatientPlan(patient_id, tuple(planned), age, scale, anatomy, presentation, lesions, mimics, scanner)


def draw_patient(plan: PatientPlan, cfg: SynthConfig, rng: np.random.Generator) -> Drawn:
    grid = cfg.grid
    ph = Phantom(grid, plan.scale).draw(plan.anatomy, spleen_scale(plan.lesions))
    for st in plan.mimics:
        draw_mimic(ph, st)
    physio = ph.suv.copy()
    for les in plan.lesions:
        draw_lesion(ph, les)
    pet, ct = acquire(ph.suv, ph.ct, grid, plan.scanner, plan.anatomy["liver"], rng)
    return Drawn(ct, pet, ph.seg, physio, ph.organs, ph.mimics, grid, ph.scaled(LIVER_CENTER))


def generate_patient(patient_id: str, planned, cfg: SynthConfig, seed_seq: np.random.SeedSequence):
    """(Drawn, cohort.csv row) of one patient. Planning and noise draw from separate streams, so the plan
    does not depend on the grid."""
    plan_ss, noise_ss = seed_seq.spawn(2)
    plan = plan_patient(patient_id, tuple(planned), np.random.default_rng(plan_ss))
    d = draw_patient(plan, cfg, np.random.default_rng(noise_ss))
    factors, measured, volumes = measure(d)
    found = [f for f in HARD_FACTORS if factors[f]]
    row = {
        "patient_id": patient_id,
        "n_lesions": len(volumes),
        "tmtv_ml": round(float(d.seg.sum() * d.grid.voxel_ml), 3),
        "suv_max": round(float(d.pet[d.seg > 0].max()) if len(volumes) else 0.0, 3),
        "smallest_lesion_ml": round(float(volumes.min()) if len(volumes) else 0.0, 3),
        "hard": int(bool(found)),
        "hard_factors": ";".join(found),
        "planned": ";".join(plan.planned),
        "presentation": plan.presentation,
        "age": plan.age,
        "body_scale": round(plan.scale, 3),
        **factors,
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in measured.items()},
        "psf_fwhm_mm": round(plan.scanner.psf_fwhm_mm, 2),
        "counts": round(plan.scanner.counts, 3),
    }
    return d, row


def write_cohort(out: Path, patients: int, seed: int, cfg: SynthConfig | None = None, log=print) -> Path:
    """Write the cohort; returns the path of cohort.csv."""
    cfg = cfg or SynthConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    planned = hard_assignment(patients, np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]))
    children = np.random.SeedSequence(seed, spawn_key=(1,)).spawn(patients)
    rows = []
    for i in range(patients):
        pid = f"SYN{i + 1:04d}"
        d, row = generate_patient(pid, planned[i], cfg, children[i])
        pdir = out / pid
        pdir.mkdir(exist_ok=True)
        for name, arr in (("CTres", d.ct), ("SUV", d.pet), ("SEG", d.seg)):
            img = nib.Nifti1Image(arr, d.grid.affine)
            img.header.set_xyzt_units("mm")
            nib.save(img, pdir / f"{name}.nii.gz")
        rows.append(row)
        log(f"{pid}: {row['n_lesions']} lesions, TMTV {row['tmtv_ml']:.1f} ml, SUVmax {row['suv_max']:.1f}, "
            f"{row['presentation']}{', hard: ' + row['hard_factors'] if row['hard'] else ''}")
    csv_path = out / "cohort.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return csv_path
