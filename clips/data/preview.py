"""A picture of a cohort: coronal PET maximum-intensity projections with the lesion outlines.

Works on any cohort in the autoPET layout (generated or real): images are brought to RAS with nibabel and shown
the way a nuclear-medicine reader sees them (inverted grey, SUV 0-10, patient's right on the viewer's left).
"""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd


def _mips(folder: Path):
    pet = nib.as_closest_canonical(nib.load(folder / "SUV.nii.gz"))
    seg_path = folder / "SEG.nii.gz"
    seg = nib.as_closest_canonical(nib.load(seg_path)) if seg_path.exists() else None
    spacing = pet.header.get_zooms()[:3]
    pet_mip = np.asarray(pet.dataobj, dtype=np.float32).max(axis=1)  # coronal: project along anterior-posterior
    seg_mip = (np.asarray(seg.dataobj) > 0).max(axis=1) if seg is not None else None
    return pet_mip, seg_mip, spacing


def render_preview(data_dir: str | Path, out: str | Path, patients: int = 24, columns: int = 8,
                   suv_max: float = 10.0) -> Path:
    """Write a PNG of up to ``patients`` patients (sorted by id), titled with their hard factors if known."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    data_dir, out = Path(data_dir), Path(out)
    ids = sorted(p.name for p in data_dir.iterdir() if (p / "SUV.nii.gz").exists())[:patients]
    if not ids:
        raise FileNotFoundError(f"{data_dir}: no patient folder with SUV.nii.gz")
    table = pd.read_csv(data_dir / "cohort.csv").set_index("patient_id") if (data_dir / "cohort.csv").exists() else None
    rows = int(np.ceil(len(ids) / columns))
    cols = min(columns, len(ids))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, pid in zip(axes.ravel(), ids):
        pet, seg, (sx, _, sz) = _mips(data_dir / pid)
        extent = (pet.shape[0] * sx, 0, 0, pet.shape[1] * sz)  # x reversed: patient's right on the left
        ax.imshow(pet.T, cmap="gray_r", vmin=0, vmax=suv_max, origin="lower", extent=extent, interpolation="bilinear")
        if seg is not None and seg.any():
            ax.contour(seg.T.astype(float), levels=[0.5], colors="red", linewidths=0.6, origin="lower", extent=extent)
        title = pid
        if table is not None and pid in table.index:
            factors = table.loc[pid].get("hard_factors", "")
            title += "\n" + (factors.replace(";", "\n") if isinstance(factors, str) and factors else "-")
        ax.set_title(title, fontsize=6.5)
    fig.suptitle("Coronal PET MIP (SUV 0-%g), lesions outlined in red" % suv_max, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
