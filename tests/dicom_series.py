"""Writing DICOM PET/CT series (and a DICOM SEG) from generated NIfTI patients, as a scanner would: the tests'
own data, nothing downloaded. Geometry is the exact inverse of what the import reads."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PET_SOP = "1.2.840.10008.5.1.4.1.1.128"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
F18_HALF_LIFE = 6586.2


def suv_to_bqml_factor(weight_kg, dose_bq, elapsed_s, correction="START"):
    """SUV = Bq/ml x this (the hand computation the import must reproduce)."""
    decayed = dose_bq if correction == "ADMIN" else dose_bq * 2 ** (-elapsed_s / F18_HALF_LIFE)
    return weight_kg * 1000 / decayed


def _base(patient, study, series, modality, sop, number):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient["name"], patient["id"], "", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study["uid"], study["date"], "100000"
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "", ""
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series, number, modality
    ds.FrameOfReferenceUID = study["frame"]
    ds.Manufacturer = "CLIPS test scanner"
    return ds


def _slices(vol, affine_ras, make, out_dir, rng, stored_dtype):
    """One file per slice, random names in random sub-folders (as a PACS export)."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    dc, dr = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    iop = [*(lps[:3, 0] / dc), *(lps[:3, 1] / dr)]
    for k in range(vol.shape[2]):
        ds = make(k)
        plane = vol[:, :, k].T.astype(np.float64)  # rows = j, columns = i
        hi = max(float(np.abs(plane).max()), 1e-6)
        info = np.iinfo(stored_dtype)
        if info.min < 0:
            slope, intercept = hi / 32000, 0.0
        else:
            intercept = float(plane.min())
            slope = max(float(plane.max()) - intercept, 1e-6) / 65000
        stored = np.round((plane - intercept) / slope).astype(stored_dtype)
        ds.ImageOrientationPatient = [round(float(v), 6) for v in iop]
        ds.ImagePositionPatient = [round(float(v), 4) for v in lps[:3, 3] + k * lps[:3, 2]]
        ds.PixelSpacing = [round(float(dr), 6), round(float(dc), 6)]
        ds.SliceThickness = round(float(np.linalg.norm(lps[:3, 2])), 6)
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, int(info.min < 0)
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        ds.PixelData = stored.tobytes()
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        folder = out_dir / f"d{rng.integers(0, 3)}" / f"e{rng.integers(0, 3)}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / uuid.UUID(int=int(rng.integers(0, 2**62))).hex, enforce_file_format=True)


def write_patient(case_dir: Path, out_dir: Path, patient_id: str, *, seed=0, weight=72.0, dose=3.5e8,
                  elapsed_s=3600.0, correction="START", units="BQML", philips_scale=None, ct_factor=2,
                  localizer=True, study_date="20261101", with_seg=True, study_uid=None):
    """Write PET (+CT at ``ct_factor`` x the in-plane resolution, a localiser, a DICOM SEG) of a NIfTI case."""
    rng = np.random.default_rng(seed)
    pet_img = nib.load(case_dir / "SUV.nii.gz")
    suv, affine = pet_img.get_fdata(), pet_img.affine
    patient = {"id": patient_id, "name": f"Test^{patient_id}"}
    study = {"uid": study_uid or generate_uid(), "date": study_date, "frame": generate_uid()}
    injected = datetime.strptime(study_date + "100000", "%Y%m%d%H%M%S")
    start = injected + timedelta(seconds=elapsed_s)
    pet_series = generate_uid()
    if units == "BQML":  # (a patient without weight: the scanner still stored Bq/ml, as for 70 kg)
        values = suv / suv_to_bqml_factor(weight or 70.0, dose, elapsed_s, correction)
    else:  # Philips counts: SUV = counts x scale
        values = suv / (philips_scale or 0.002)

    def make_pet(k):
        ds = _base(patient, study, pet_series, "PT", PET_SOP, 2)
        ds.SeriesDescription, ds.ImageType = "PET AC", ["ORIGINAL", "PRIMARY"]
        ds.SeriesDate, ds.SeriesTime = start.strftime("%Y%m%d"), start.strftime("%H%M%S")
        ds.AcquisitionDate, ds.AcquisitionTime = ds.SeriesDate, ds.SeriesTime
        ds.Units, ds.DecayCorrection, ds.CorrectedImage = units, correction, ["ATTN", "DECY"]
        if weight:
            ds.PatientWeight = weight
        info = Dataset()
        info.RadionuclideTotalDose, info.RadionuclideHalfLife = dose, F18_HALF_LIFE
        info.RadiopharmaceuticalStartDateTime = injected.strftime("%Y%m%d%H%M%S")
        ds.RadiopharmaceuticalInformationSequence = [info]
        if philips_scale is not None:
            ds.add_new((0x7053, 0x0010), "LO", "Philips PET Private Group")
            ds.add_new((0x7053, 0x1000), "DS", f"{philips_scale:.10g}")
        return ds

    _slices(values, affine, make_pet, out_dir, rng, np.uint16)

    ct_img = nib.load(case_dir / "CTres.nii.gz")
    ct = np.repeat(np.repeat(ct_img.get_fdata(), ct_factor, 0), ct_factor, 1)
    ct_affine = ct_img.affine.copy()
    ct_affine[:3, :2] /= ct_factor
    ct_affine[:3, 3] -= (ct_img.affine[:3, 0] + ct_img.affine[:3, 1]) * (ct_factor - 1) / (2 * ct_factor)
    ct_series = generate_uid()

    def make_ct(k):
        ds = _base(patient, study, ct_series, "CT", CT_SOP, 1)
        ds.SeriesDescription, ds.ImageType = "CT 2mm", ["ORIGINAL", "PRIMARY", "AXIAL"]
        return ds

    _slices(ct, ct_affine, make_ct, out_dir, rng, np.int16)
    if localizer:
        scout = _base(patient, study, generate_uid(), "CT", CT_SOP, 0)
        scout.SeriesDescription, scout.ImageType = "Topogram", ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        coronal = np.ascontiguousarray(ct.max(axis=1))[:, None, :]  # (x, 1, z)
        aff = ct_affine.copy()
        aff[:3, [1, 2]] = aff[:3, [2, 1]]  # a coronal image: rows run along z
        _slices(coronal.transpose(0, 2, 1), aff, lambda k: scout, out_dir, rng, np.int16)
    if with_seg:
        write_seg_of(case_dir, out_dir)
    return {"pet_series": pet_series, "study_uid": study["uid"]}


def write_seg_of(case_dir: Path, out_dir: Path):
    """The NIfTI labels as a DICOM SEG of the PET series just written (read back by highdicom in the import)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    pet = [pydicom.dcmread(p) for p in out_dir.rglob("*") if p.is_file()]
    pet = [d for d in pet if d.Modality == "PT"]
    pet.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    seg = np.asarray(nib.load(case_dir / "SEG.nii.gz").dataobj) > 0
    desc = hd.seg.SegmentDescription(1, "lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm,
                                     "MANUAL")
    obj = hd.seg.Segmentation(pet, seg.transpose(2, 1, 0).copy(), "BINARY", [desc], hd.UID(), 50, hd.UID(), 1,
                              "reader", "hand", "1", "0")
    obj.save_as(out_dir / "seg" / "labels.dcm") if (out_dir / "seg").mkdir(exist_ok=True) is None else None


def write_rtstruct_box(case_dir: Path, out_dir: Path, box, hole=None):
    """An RTSTRUCT with one ROI: on each slice k0..k1 a rectangle around voxels i0..i1, j0..j1 of the PET grid
    (corners half a voxel outside the voxel centres), and optionally an inner rectangle (a hole)."""
    pet = [pydicom.dcmread(p, stop_before_pixels=True) for p in out_dir.rglob("*") if p.is_file()]
    ref = next(d for d in pet if d.Modality == "PT")
    affine = nib.load(case_dir / "SUV.nii.gz").affine
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine

    def ring(i0, i1, j0, j1, k):
        corners = [(i0 - 0.5, j0 - 0.5), (i1 + 0.5, j0 - 0.5), (i1 + 0.5, j1 + 0.5), (i0 - 0.5, j1 + 0.5)]
        pts = [lps @ np.array([i, j, k, 1.0]) for i, j in corners]
        item = Dataset()
        item.ContourGeometricType, item.NumberOfContourPoints = "CLOSED_PLANAR", 4
        item.ContourData = [round(float(v), 4) for p in pts for v in p[:3]]
        return item

    i0, i1, j0, j1, k0, k1 = box
    contours = [ring(i0, i1, j0, j1, k) for k in range(k0, k1 + 1)]
    if hole:
        contours += [ring(*hole[:4], k) for k in range(hole[4], hole[5] + 1)]
    ds = _base({"id": ref.PatientID, "name": str(ref.PatientName)}, {"uid": ref.StudyInstanceUID,
               "date": ref.StudyDate, "frame": ref.FrameOfReferenceUID}, generate_uid(), "RTSTRUCT",
               "1.2.840.10008.5.1.4.1.1.481.3", 60)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    frame = Dataset()
    frame.FrameOfReferenceUID = ref.FrameOfReferenceUID
    ds.ReferencedFrameOfReferenceSequence = [frame]
    roi = Dataset()
    roi.ReferencedROINumber, roi.ContourSequence = 1, contours
    ds.ROIContourSequence = [roi]
    (out_dir / "rt").mkdir(exist_ok=True)
    ds.save_as(out_dir / "rt" / "structures.dcm", enforce_file_format=True)
