"""``clips data export-nnunet``: a cohort and CLIPS's own splits in nnU-Net v2's raw format, to run nnU-Net by hand.

One nnU-Net dataset per CLIPS split (per fold with folds > 1), so that nnU-Net's fingerprint (the intensity
statistics of its CT normalisation) never sees the patients the split tests on::

    OUT/nnUNet_raw/Dataset<id + k>_<name>Fold<k>/
        dataset.json
        imagesTr/<case>_0000.nii.gz  CT (HU)      the split's training and validation patients
        imagesTr/<case>_0001.nii.gz  PET (SUV)
        labelsTr/<case>.nii.gz       lesions, uint8 0/1
        imagesTs/, labelsTs/         the split's test patients, the same way
    OUT/nnUNet_preprocessed/Dataset<id + k>_<name>Fold<k>/splits_final.json
        one fold whose train and val are CLIPS's, so nnU-Net's fold 0 trains and selects on exactly the
        patients a CLIPS child of that split does (subjects kept together, as CLIPS's splits keep them)

Both channels are named ``CT`` in dataset.json: nnU-Net's CT normalisation clips and z-scores with statistics of
the whole training set, which keeps SUV comparable between patients (a per-image z-score would not); nnU-Net's
own autoPET II conversion (Dataset221_AutoPETII_2023) names them the same. Images are symbolic links to the
cohort's files (nothing large is copied; ``copy=True`` copies); labels are written again as uint8 0/1 from CLIPS's
reader, on the SEG's own header, because nnU-Net requires consecutive integer labels.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from clips.data.io import as_binary
from clips.data.splits import cross_validated
from clips.errors import ClipsError, DataError

CHANNELS = {"0": "CT", "1": "CT"}  # CT as _0000, SUV as _0001; the names choose nnU-Net's normalisation
LABELS = {"background": 0, "lesion": 1}
# The training parameters that decide a split (clips/training/cohort.py:load_data); --folds-from reads these
# from the study's children.
SPLIT_KEYS = ("folds", "fold", "seed", "split_seed", "val_split_seed", "val_fraction", "test_fraction",
              "spacing_mm", "skip_invalid")


@dataclasses.dataclass
class Exported:
    dataset: str  # Dataset<id>_<name>
    raw: Path
    splits: Path
    counts: dict[str, int]  # train, val, test


def _place(src: Path, dst: Path, copy: bool) -> None:
    if copy:
        shutil.copyfile(src, dst)
    else:
        dst.symlink_to(src.resolve())


def _write_label(src: Path, dst: Path) -> None:
    img = nib.load(src)
    mask, problem = as_binary(np.asanyarray(img.dataobj))
    if problem:
        raise DataError(src.parent.name, src.name, problem)
    data = mask.astype(np.uint8)
    header = img.header.copy()
    header.set_data_dtype(np.uint8)
    header["scl_slope"], header["scl_inter"] = 1.0, 0.0
    nib.save(nib.Nifti1Image(data, img.affine, header), dst)


def write_dataset(cohort, out: Path, dataset_id: int, name: str, copy: bool = False, source: str = "") -> Exported:
    """One split of ``cohort`` (clips.data.cohort.Cohort) as an nnU-Net raw dataset with its splits_final.json.
    ``source``: what dataset.json's description names as the origin (default: the cohort folder's name; a study
    names none, because nnU-Net copies dataset.json into the model that the study logs)."""
    dataset = f"Dataset{dataset_id:03d}_{name}"
    raw = out / "nnUNet_raw" / dataset
    if raw.exists():
        raise ClipsError(f"{raw} exists: export into a new folder (or remove it)")
    ids = {s: cohort.ids(s) for s in ("train", "val", "test")}
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (raw / sub).mkdir(parents=True)
    for split, pids in ids.items():
        images, labels = (raw / "imagesTs", raw / "labelsTs") if split == "test" else (raw / "imagesTr",
                                                                                       raw / "labelsTr")
        for pid in pids:
            files = cohort.files[pid]
            _place(files.ct, images / f"{pid}_0000.nii.gz", copy)
            _place(files.pet, images / f"{pid}_0001.nii.gz", copy)
            _write_label(files.seg, labels / f"{pid}.nii.gz")
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": CHANNELS, "labels": LABELS, "numTraining": len(ids["train"]) + len(ids["val"]),
        "file_ending": ".nii.gz", "name": dataset,
        "description": f"CLIPS export of {source or cohort.root.name}: {len(ids['train'])} train, "
                       f"{len(ids['val'])} val (splits_final.json), {len(ids['test'])} test (imagesTs)"},
        indent=2) + "\n")
    splits = out / "nnUNet_preprocessed" / dataset / "splits_final.json"
    splits.parent.mkdir(parents=True, exist_ok=True)
    splits.write_text(json.dumps([{"train": ids["train"], "val": ids["val"]}], indent=2) + "\n")
    return Exported(dataset, raw, splits, {s: len(v) for s, v in ids.items()})


def split_params_of_study(study_name: str, seed: int = 0) -> dict[str, str]:
    """The split parameters of a study's children (seed ``seed``), as they logged them."""
    import mlflow

    from clips.tracking import schema

    runs = mlflow.search_runs(search_all_experiments=True, output_format="list", filter_string=(
        f"tags.`{schema.STUDY_NAME}` = '{study_name}' and tags.`{schema.ROLE}` = '{schema.STUDY_CHILD}' "
        f"and params.`{schema.SEED_PARAM}` = '{seed}'"), max_results=1)
    if not runs:
        raise ClipsError(f"no child of study {study_name!r} with seed {seed} on {mlflow.get_tracking_uri()}")
    params = runs[0].data.params
    return {k: params[schema.CFG + k] for k in SPLIT_KEYS if schema.CFG + k in params}


def export_nnunet(data_dir: Path, out: Path, params: dict[str, str], dataset_id: int = 500, name: str = "CLIPS",
                  copy: bool = False, log=print) -> list[Exported]:
    """Every split that ``params`` (training parameters: profile, folds, split_seed, ...) gives ``data_dir``."""
    from clips.config import build_config
    from clips.training.cohort import load_data

    if not 1 <= dataset_id <= 999:
        raise ClipsError(f"nnU-Net dataset ids are 1 to 999 (custom ones from 500), not {dataset_id}")
    cfg = build_config(dict(params) | {"data_dir": str(data_dir)})
    folds = range(cfg.folds) if cross_validated(cfg.folds) else [None]
    if dataset_id + len(folds) - 1 > 999:
        raise ClipsError(f"{len(folds)} datasets from id {dataset_id} pass nnU-Net's 999: choose a smaller --id")
    done = []
    for k in folds:
        fold_cfg = dataclasses.replace(cfg, fold=k) if k is not None else cfg
        _, cohort = load_data(fold_cfg, log=lambda *_: None)
        suffix = f"{name}Fold{k}" if k is not None else name
        exported = write_dataset(cohort, out, dataset_id + (k or 0), suffix, copy)
        log(f"{exported.dataset}: {exported.counts['train']} train, {exported.counts['val']} val, "
            f"{exported.counts['test']} test -> {exported.raw}")
        done.append(exported)
    return done
