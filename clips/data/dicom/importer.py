"""``clips data import-dicom SRC --out OUT``: a PACS export (any order and nesting) to the autoPET layout.

Per study: the attenuation-corrected axial PET series in SUV (``SUV.nii.gz``), the axial CT of the same frame of
reference resampled onto the PET grid (``CTres.nii.gz``, as autoPET's CTres), and the labels of a DICOM SEG of
that PET or of an RTSTRUCT in its frame of reference when there is one (``SEG.nii.gz``).
``OUT/import_report.csv`` lists every series: used, or skipped and why. A patient that cannot be converted is
reported with one line and the others go on.
"""
from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from clips.data.dicom.rtstruct import read_rtstruct_on
from clips.data.dicom.seg import SOURCE_FILE, read_seg_on
from clips.data.dicom.series import GeometryError, Series, affine_and_order, is_axial_volume, read_volume, scan
from clips.data.dicom.suv import SUVError, suv_factor

REPORT = "import_report.csv"


class CaseError(ValueError):
    """This study cannot become a case (one line: what is missing)."""


@dataclass
class ImportResult:
    converted: list[str]
    failed: list[str]  # "case: reason"
    report: Path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "unknown"


def case_ids(studies: dict[tuple[str, str], list[Series]]) -> dict[tuple[str, str], str]:
    """``<patient_id>``, or ``<patient_id>_<study date>`` when a patient has several studies."""
    per_patient = defaultdict(list)
    for key, series in studies.items():
        per_patient[key[0]].append((series[0].study_date, key))
    out = {}
    for pid, items in per_patient.items():
        items.sort()
        for n, (date, key) in enumerate(items):
            if len(items) == 1:
                out[key] = _safe(pid)
            else:
                same_day = sum(d == date for d, _ in items) > 1
                out[key] = _safe(f"{pid}_{date or 'nodate'}" + (f"_{n + 1}" if same_day else ""))
    return out


def import_dicom(src: Path, out: Path, log=print) -> ImportResult:
    series, unreadable = scan(Path(src))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"case": "", "patient_id": "", "series_uid": "", "modality": "", "description": str(p), "slices": "",
             "used": "no", "why": why} for p, why in unreadable]
    studies: dict[tuple[str, str], list[Series]] = defaultdict(list)
    for s in series:
        studies[(s.patient_id, s.study_uid)].append(s)
    converted, failed = [], []
    for key, members in sorted(studies.items()):
        case = case_ids(studies)[key]
        decisions: dict[str, tuple[str, str]] = {}
        try:
            _convert(case, members, out / case, decisions)
            converted.append(case)
            log(f"{case}: converted ({', '.join(s.modality for s in members if decisions[s.uid][0] == 'yes')})")
        except (CaseError, SUVError, GeometryError) as exc:
            failed.append(f"{case}: {exc}")
            log(f"error: {case}: {exc}")
        for s in members:
            used, why = decisions.get(s.uid, ("no", "study not converted"))
            rows.append({"case": case, "patient_id": s.patient_id, "series_uid": s.uid, "modality": s.modality,
                         "description": s.description, "slices": len(s.files), "used": used, "why": why})
    report = out / REPORT
    with open(report, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["case"])
        w.writeheader()
        w.writerows(rows)
    return ImportResult(converted, failed, report)


def _pick(candidates: list[Series], decisions: dict, kind: str) -> Series | None:
    """The usable series with the most slices; the others are reported as skipped."""
    usable = []
    for s in candidates:
        ok, why = is_axial_volume(s)
        if ok:
            usable.append(s)
        else:
            decisions[s.uid] = ("no", why)
    if kind == "PET":  # attenuation-corrected images only, when the study says which are
        corrected = [s for s in usable if "ATTN" in [str(v).upper() for v in s.first.get("CorrectedImage", [])]]
        for s in usable:
            if corrected and s not in corrected:
                decisions[s.uid] = ("no", "PET not attenuation-corrected")
        usable = corrected or usable
    usable.sort(key=lambda s: -len(s.files))
    for s in usable[1:]:
        decisions[s.uid] = ("no", f"another {kind} series of the study has more slices")
    return usable[0] if usable else None


def _convert(case: str, members: list[Series], folder: Path, decisions: dict) -> None:
    """One case's series -> SUV, CTres and SEG NIfTI files on the PET grid, in four phases; ``decisions`` records,
    per series, whether it was used and why."""
    by_modality = defaultdict(list)
    for s in members:
        by_modality[s.modality].append(s)
        if s.modality not in ("PT", "CT", "SEG", "RTSTRUCT"):
            decisions[s.uid] = ("no", f"modality {s.modality or 'missing'} not used")
    pet, order, affine, suv = _pet_as_suv(by_modality["PT"], decisions)
    ct_res = _ct_on_pet_grid(by_modality["CT"], pet, affine, suv.shape, decisions)
    seg = _labels_on_pet_grid(by_modality["SEG"], by_modality["RTSTRUCT"], pet, order, affine, suv.shape, decisions)
    _write_case(folder, pet, order, affine, suv, ct_res, seg)


def _pet_as_suv(pets: list[Series], decisions: dict):
    """The case's axial PET series, its slice order, its affine and its voxels in SUV."""
    pet = _pick(pets, decisions, "PET")
    if pet is None:
        raise CaseError("no axial PET series")
    try:
        factor = suv_factor(pet.first)
    except SUVError as exc:
        decisions[pet.uid] = ("no", str(exc))
        raise SUVError(f"PET series {pet.uid} ({pet.description or 'no description'}): {exc}") from None
    affine, order = affine_and_order(pet)
    suv = read_volume(pet, order) * np.float32(factor)
    decisions[pet.uid] = ("yes", f"PET, SUV factor {factor:.6g}")
    return pet, order, affine, suv


def _ct_on_pet_grid(cts: list[Series], pet: Series, affine, shape, decisions: dict) -> np.ndarray:
    """autoPET's CTres: the CT of the PET's frame of reference on the PET grid (linear interpolation, air outside
    the CT's field of view), in HU."""
    same_frame = [s for s in cts if s.frame_of_reference == pet.frame_of_reference]
    for s in cts:
        if s not in same_frame:
            decisions[s.uid] = ("no", "CT of another frame of reference")
    ct_series = _pick(same_frame, decisions, "CT")
    if ct_series is None:
        raise CaseError("no axial CT series in the PET's frame of reference")
    ct_affine, ct_order = affine_and_order(ct_series)
    ct = nib.Nifti1Image(read_volume(ct_series, ct_order), ct_affine)
    ct_res = resample_from_to(ct, (shape, affine), order=1, mode="constant", cval=-1024.0)
    decisions[ct_series.uid] = ("yes", "CT, resampled onto the PET grid")
    return np.round(ct_res.get_fdata())


def _labels_on_pet_grid(segs: list[Series], rtstructs: list[Series], pet: Series, order, affine, shape,
                        decisions: dict) -> np.ndarray | None:
    """The union of the DICOM SEGs that reference the PET series and of the RTSTRUCTs in its frame, on the PET grid
    (None: the case has no labels)."""
    pet_uids = [str(pet.headers[i].SOPInstanceUID) for i in order]
    seg = None
    for s in segs:
        refs = {str(r.SeriesInstanceUID) for r in s.first.get("ReferencedSeriesSequence", [])}
        if pet.uid not in refs:
            decisions[s.uid] = ("no", "DICOM SEG of another series")
            continue
        labels = read_seg_on(s.files[0], pet_uids)
        seg = labels if seg is None else np.maximum(seg, labels)
        decisions[s.uid] = ("yes", "labels (DICOM SEG of the PET)")
    for s in rtstructs:
        try:
            labels = read_rtstruct_on(s.files[0], pet.frame_of_reference, affine, shape)
        except ValueError as exc:
            decisions[s.uid] = ("no", str(exc))
            continue
        seg = labels if seg is None else np.maximum(seg, labels)
        decisions[s.uid] = ("yes", "labels (RTSTRUCT contours filled on the PET grid)")
    return seg


def _write_case(folder: Path, pet: Series, order, affine, suv, ct_res, seg) -> None:
    """The autoPET layout's files, plus the source record that DICOM SEG export reads back."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data, dtype in (("SUV", suv, np.float32), ("CTres", ct_res, np.int16), ("SEG", seg, np.uint8)):
        if data is None:
            continue
        img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, folder / f"{name}.nii.gz")
    (folder / SOURCE_FILE).write_text(json.dumps({
        "patient_id": pet.patient_id, "study_uid": pet.study_uid, "pet_series_uid": pet.uid,
        "pet_files": [str(Path(pet.files[i]).resolve()) for i in order]}, indent=1))
