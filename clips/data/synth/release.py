"""A miniature of autoPET's FDG-PET-CT-Lesions release, made from the example cohort, to try the path from a public
download to a study without downloading 400 GB (``clips synth --layout autopet-release``; docs/reproduce-autopet.md).

The layout and the metadata columns are the release's (clips/data/release.py reads them): patient folders
``PETCT_<10 hex>``, study folders named like the release's (``MM-DD-YYYY-NA-PET-CT Ganzkoerper  primaer mit
KM-<n>``), each holding ``SUV``, ``CTres``, ``CT``, ``PET`` and ``SEG.nii.gz``; ``fdg_metadata.csv`` with one row per
series (CT, PT, SEG) of each study. Every third patient has a second study. Diagnoses cycle through lymphoma (half
of the patients), melanoma, lung cancer and negative controls; a negative study's SEG is empty (its generated
lesions stay unlabelled: a stand-in, not a healthy body). Images: CT is CTres, PET is SUV x 5000 (Bq/ml-like).
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from clips.data.release import DIAGNOSIS, LOCATION, NEGATIVE, SUBJECT
from clips.data.synth.cohort import SynthConfig, write_cohort

METADATA_FILE = "fdg_metadata.csv"
COLLECTION = "FDG-PET-CT-Lesions"
DIAGNOSES = ("LYMPHOMA", "MELANOMA", "LYMPHOMA", "LUNG_CANCER", "LYMPHOMA", NEGATIVE)


def write_release(out: Path, patients: int, seed: int = 0, cfg: SynthConfig | None = None, log=print) -> Path:
    """Write the miniature release for ``patients`` patients into ``out``; returns the metadata table's path."""
    out = Path(out)
    plan = [(p, s) for p in range(patients) for s in range(2 if p % 3 == 2 else 1)]  # (patient, study)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(Path(tmp), len(plan), seed, cfg, log=lambda *_: None)
        cases = sorted(d for d in Path(tmp).iterdir() if d.is_dir())
        for (p, s), case in zip(plan, cases, strict=True):
            subject = "PETCT_" + hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()[:10]
            diagnosis = DIAGNOSES[p % len(DIAGNOSES)]
            study = (f"{1 + (p % 12):02d}-{1 + s * 7:02d}-{2004 + s}-NA-PET-CT Ganzkoerper  primaer mit "
                     f"KM-{10000 + 97 * p + s}")
            folder = out / subject / study
            folder.mkdir(parents=True, exist_ok=True)
            _write_study(case, folder, negative=diagnosis == NEGATIVE)
            for modality, series in (("CT", "GK p-NA-CT"), ("PT", "PET corr.-NA-PET"), ("SEG", "Segmentation-NA")):
                rows.append({SUBJECT: subject, "Study UID": f"1.2.826.0.1.{seed}.{p}.{s}",
                             "Study Description": "PET-CT Ganzkoerper  primaer mit KM", "Modality": modality,
                             LOCATION: f"./{COLLECTION}/{subject}/{study}/{series}", DIAGNOSIS: diagnosis,
                             "age": f"{40 + (7 * p) % 40}Y", "sex": "MF"[p % 2]})
    path = out / METADATA_FILE
    pd.DataFrame(rows).to_csv(path, index=False)
    log(f"wrote a miniature autoPET release: {patients} patients, {len(plan)} studies, {path}")
    return path


def _write_study(case: Path, folder: Path, negative: bool) -> None:
    for name in ("SUV", "CTres"):
        shutil.copyfile(case / f"{name}.nii.gz", folder / f"{name}.nii.gz")
    shutil.copyfile(case / "CTres.nii.gz", folder / "CT.nii.gz")
    suv = nib.load(case / "SUV.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(suv.dataobj, np.float32) * 5000.0, suv.affine), folder / "PET.nii.gz")
    seg = nib.load(case / "SEG.nii.gz")
    labels = np.zeros(seg.shape, np.uint8) if negative else np.asarray(seg.dataobj, np.uint8)
    nib.save(nib.Nifti1Image(labels, seg.affine), folder / "SEG.nii.gz")
