"""Find the patients of a cohort folder, whatever layout it uses.

Supported layouts:

* autoPET, flat: ``root/<patient>/{CTres,SUV,SEG}.nii.gz``
* autoPET, nested: ``root/<patient>/<study>/{CTres,SUV,SEG}.nii.gz``; a patient with
  several studies gives one case per study, ``<patient>__<study>``, and both share the
  ``subject`` so that splits never put one person in two sets.
* nnU-Net: ``root/imagesTr/<case>_0000.nii.gz`` (CT), ``<case>_0001.nii.gz`` (PET, SUV),
  ``root/labelsTr/<case>.nii.gz``; ``root/imagesTs`` (with ``labelsTs``) given itself reads the test cases.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from clips.errors import DataError

# The files of one patient (CT, SEG against the PET) must share a grid to within this (mm, per affine entry).
AFFINE_TOLERANCE_MM = 1e-2

AUTOPET_FILES = {"ct": "CTres.nii.gz", "pet": "SUV.nii.gz", "seg": "SEG.nii.gz"}


@dataclass(frozen=True)
class PatientFiles:
    """Where one case's images are. ``seg`` may be None for unlabelled cases (prediction only)."""

    patient_id: str
    subject: str
    ct: Path | None
    pet: Path
    seg: Path | None

    def items(self):
        return (("ct", self.ct), ("pet", self.pet), ("seg", self.seg))

    def without_ct(self) -> "PatientFiles":
        """The same case for evaluation, which needs only SUV and SEG."""
        return PatientFiles(self.patient_id, self.subject, None, self.pet, self.seg)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def _autopet_case(patient_id: str, subject: str, folder: Path) -> PatientFiles:
    seg = folder / AUTOPET_FILES["seg"]
    return PatientFiles(patient_id, subject, folder / AUTOPET_FILES["ct"], folder / AUTOPET_FILES["pet"], seg)


def _is_autopet_folder(folder: Path) -> bool:
    return any((folder / f).exists() for f in AUTOPET_FILES.values())


def patient_folder(folder: str | Path) -> PatientFiles | None:
    """The case of a single autoPET patient folder, or None when ``folder`` is not one."""
    folder = Path(folder)
    return _autopet_case(folder.name, folder.name, folder) if (folder / AUTOPET_FILES["pet"]).exists() else None


def discover(root: str | Path) -> list[PatientFiles]:
    """All cases under ``root``, sorted by id. Files are not opened: :mod:`clips.data.check` does that."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(str(root), None, "cohort folder does not exist")
    if (root / "imagesTr").is_dir():
        return _discover_nnunet(root / "imagesTr", root / "labelsTr")
    if root.name in ("imagesTr", "imagesTs"):  # one part of an nnU-Net dataset, e.g. its test cases
        return _discover_nnunet(root, root.parent / root.name.replace("images", "labels"))
    cases = []
    for pdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _is_autopet_folder(pdir):
            cases.append(_autopet_case(pdir.name, pdir.name, pdir))
            continue
        studies = sorted(s for s in pdir.iterdir() if s.is_dir() and _is_autopet_folder(s))
        if len(studies) == 1:
            cases.append(_autopet_case(pdir.name, pdir.name, studies[0]))
        for s in studies if len(studies) > 1 else []:
            cases.append(_autopet_case(f"{pdir.name}__{_safe(s.name)}", pdir.name, s))
    if not cases:
        raise DataError(str(root), None, "no patients found (expected <patient>/CTres.nii.gz, SUV.nii.gz, "
                        "SEG.nii.gz, or the nnU-Net imagesTr/labelsTr layout)")
    return sorted(cases, key=lambda c: c.patient_id)


def _discover_nnunet(images: Path, labels: Path) -> list[PatientFiles]:
    case_ids = sorted({p.name[: -len("_0000.nii.gz")] for p in images.glob("*_000[01].nii.gz")})
    if not case_ids:
        raise DataError(str(images.parent), images.name, "no <case>_0000.nii.gz / <case>_0001.nii.gz images found")
    # A case CLIPS named <subject>__<study> (a subject's several studies, as clips data export-nnunet writes
    # them) keeps its subject, so splits still keep one person's studies together.
    return [
        PatientFiles(c, c.split("__", 1)[0], images / f"{c}_0000.nii.gz", images / f"{c}_0001.nii.gz",
                     labels / f"{c}.nii.gz")
        for c in case_ids
    ]
