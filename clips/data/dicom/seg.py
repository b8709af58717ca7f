"""DICOM SEG through highdicom: a predicted mask over its source PET series, and labels read back onto it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom

SOURCE_FILE = "dicom_source.json"  # written by the import beside SUV.nii.gz: the PET series, slice by slice


def write_dicom_seg(mask: np.ndarray, case_dir: Path, out: Path, tmtv_ml: float, model: str) -> Path:
    """Write ``mask`` (the PET NIfTI's array order [column, row, slice]) as a DICOM SEG referencing the PET series
    the case was imported from, so it opens over the PET in 3D Slicer, OHIF or a PACS."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from clips import __version__

    source = Path(case_dir) / SOURCE_FILE
    if not source.exists():
        raise FileNotFoundError(f"{case_dir}: no {SOURCE_FILE}; DICOM SEG needs a case imported with "
                                "'clips data import-dicom'")
    info = json.loads(source.read_text())
    missing = [p for p in info["pet_files"] if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{case_dir}: the source PET file {missing[0]} is gone ({len(missing)} missing)")
    pet = [pydicom.dcmread(p) for p in info["pet_files"]]
    frames = np.ascontiguousarray(np.asarray(mask, bool).transpose(2, 1, 0))  # (slices, rows, columns)
    if frames.shape != (len(pet), pet[0].Rows, pet[0].Columns):
        raise ValueError(f"mask of shape {mask.shape} does not fit the PET series ({pet[0].Columns}, "
                         f"{pet[0].Rows}, {len(pet)})")
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lymphoma lesions",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type="AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="CLIPS", family=codes.DCM.ArtificialIntelligence, version=__version__,
            parameters={"model": model[:64]}))
    seg = hd.seg.Segmentation(
        source_images=pet, pixel_array=frames, segmentation_type="BINARY", segment_descriptions=[description],
        series_instance_uid=hd.UID(), series_number=9001, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="CLIPS", manufacturer_model_name="CLIPS lymphoma segmentation", software_versions=__version__,
        device_serial_number="none", content_description=f"TMTV {tmtv_ml:.1f} ml"[:64],
        series_description=f"CLIPS lesions, TMTV {tmtv_ml:.1f} ml"[:64], omit_empty_frames=bool(frames.any()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out)
    return out


def read_seg_on(seg_path: Path, pet_uids: list[str]) -> np.ndarray:
    """The union of a DICOM SEG's segments on the PET slices ``pet_uids`` (in order), [column, row, slice] uint8."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    uids = [u for u in pet_uids if u in referenced]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, skip_overlap_checks=True,
                                               assert_missing_frames_are_empty=True)
    out = np.zeros((len(pet_uids),) + pixels.shape[1:], np.uint8)
    index = {u: i for i, u in enumerate(pet_uids)}
    for k, uid in enumerate(uids):
        out[index[uid]] = pixels[k] > 0
    return out.transpose(2, 1, 0)
