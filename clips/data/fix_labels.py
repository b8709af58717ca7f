"""``clips data fix-labels``: rewrite floating-point 0/1 label files as uint8, losslessly.

CLIPS refuses label files stored as floats (see :func:`clips.data.io.as_binary`). When
every value of such a file is exactly 0 or 1, the integer file holds the same mask; this
rewrites it in place (same grid, same header fields) through a temporary file, so a
crash never leaves half a file. Anything else is reported and left untouched.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from clips.data.layout import discover
from clips.errors import DataError


@dataclass
class LabelFix:
    path: Path
    status: str  # "rewritten", "unchanged" or "refused"
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.status} ({self.detail})"


def label_files(paths) -> list[Path]:
    """The files given; for a cohort folder (any layout) its label files; for another folder
    (predictions) the NIfTI files directly in it."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        try:
            out += [f.seg for f in discover(p) if f.seg is not None]
        except DataError:  # not a cohort
            out += sorted(f for f in p.iterdir() if f.name.endswith((".nii", ".nii.gz")))
    return out


def fix_label_file(path: Path, dry_run: bool = False) -> LabelFix:
    if not path.is_file():
        return LabelFix(path, "refused", "missing file")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel, gzip and zlib raise many types for a broken file
        return LabelFix(path, "refused", f"cannot read NIfTI: {type(exc).__name__}: {exc}")
    if np.issubdtype(data.dtype, np.integer):
        return LabelFix(path, "unchanged", f"already {data.dtype}")
    if np.iscomplexobj(data) or not np.all(np.isin(np.unique(data), (0, 1))):
        return LabelFix(path, "refused", f"{data.dtype} values are not all exactly 0 or 1; fix it by hand")
    if dry_run:
        return LabelFix(path, "unchanged", f"{data.dtype}, would be rewritten as uint8 (dry run)")
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)  # no scaling: the stored integers are the labels
    fixed = nib.Nifti1Image(data.astype(np.uint8), img.affine, header)
    fixed.set_qform(img.get_qform(), code=int(img.header["qform_code"]))
    fixed.set_sform(img.get_sform(), code=int(img.header["sform_code"]))
    tmp = path.with_name(f".{path.name}.fixing" + ("".join(path.suffixes[-2:]) if path.suffix == ".gz" else ".nii"))
    try:
        nib.save(fixed, str(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return LabelFix(path, "refused", f"cannot write: {exc}")
    return LabelFix(path, "rewritten", f"{data.dtype} -> uint8, {int(data.sum())} foreground voxels")


def fix_labels(paths, dry_run: bool = False, on_file=None) -> list[LabelFix]:
    results = []
    for path in label_files(paths):
        res = fix_label_file(path, dry_run)
        results.append(res)
        if on_file:
            on_file(res)
    return results
