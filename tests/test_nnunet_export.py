"""clips data export-nnunet: CLIPS's folds in nnU-Net's raw format, read back by CLIPS's nnU-Net reader."""
from __future__ import annotations

import dataclasses
import json
import shutil

import mlflow
import nibabel as nib
import numpy as np
from click.testing import CliRunner

from clips.cli import cli
from clips.config import build_config
from clips.data.layout import discover
from clips.tracking import schema
from clips.training.cohort import load_data

SPLIT = {"folds": "3", "split_seed": "4", "val_fraction": "0.25", "spacing_mm": "10"}


def _two_study_cohort(tiny_cohort):
    """The tiny cohort with SYN0001 holding two studies (the second one SYN0002's images): one subject, two
    cases, which every split must keep together."""
    one = tiny_cohort / "SYN0001"
    (tiny_cohort / "tmp").mkdir()
    for f in one.glob("*.nii.gz"):
        f.rename(tiny_cohort / "tmp" / f.name)
    (tiny_cohort / "tmp").rename(one / "study1")
    shutil.copytree(tiny_cohort / "SYN0002", one / "study2", ignore=shutil.ignore_patterns("*.csv"))
    return tiny_cohort


def _export(*args):
    res = CliRunner().invoke(cli, ["data", "export-nnunet", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res.output


def test_folds_round_trip_and_keep_subjects_together(tiny_cohort, tmp_path):
    data = _two_study_cohort(tiny_cohort)
    out = tmp_path / "nnunet"
    _export(data, "--out", out, "--id", 510, *[x for k, v in SPLIT.items() for x in ("-P", f"{k}={v}")])
    source = {c.patient_id: c for c in discover(data)}
    assert {"SYN0001__study1", "SYN0001__study2"} <= set(source)
    cfg = build_config(SPLIT | {"data_dir": str(data)})
    tested = []
    for k in range(3):
        name = f"Dataset{510 + k}_CLIPSFold{k}"
        raw = out / "nnUNet_raw" / name
        _, cohort = load_data(dataclasses.replace(cfg, fold=k), log=lambda *_: None)
        splits = json.loads((out / "nnUNet_preprocessed" / name / "splits_final.json").read_text())
        # nnU-Net's one fold is CLIPS's inner split of this outer fold; its test patients are only in imagesTs
        assert splits == [{"train": cohort.ids("train"), "val": cohort.ids("val")}]
        back = {c.patient_id: c for c in discover(raw)}
        assert sorted(back) == sorted(cohort.ids("train") + cohort.ids("val"))
        ts = [c.patient_id for c in discover(raw / "imagesTs")]  # the test cases, readable for clips evaluate
        assert ts == cohort.ids("test") and all(c.seg.exists() for c in discover(raw / "imagesTs"))
        tested += ts
        # one subject never in two sets, also as read back
        sets = {s: {source[p].subject for p in cohort.ids(s)} for s in ("train", "val", "test")}
        assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
        assert all(back[p].subject == source[p].subject for p in back)
        meta = json.loads((raw / "dataset.json").read_text())
        assert meta["channel_names"] == {"0": "CT", "1": "CT"} and meta["labels"] == {"background": 0, "lesion": 1}
        assert meta["numTraining"] == len(back)
        for pid, case in back.items():  # the same voxels as the source, labels as uint8 0/1 on the same grid
            src = source[pid]
            for a, b in ((case.ct, src.ct), (case.pet, src.pet)):
                assert np.array_equal(nib.load(a).get_fdata(), nib.load(b).get_fdata())
            label, seg = nib.load(case.seg), nib.load(src.seg)
            assert label.get_data_dtype() == np.uint8 and set(np.unique(label.dataobj)) <= {0, 1}
            assert np.array_equal(np.asarray(label.dataobj), np.asarray(seg.dataobj) > 0.5)
            assert np.allclose(label.affine, seg.affine)
    assert sorted(tested) == sorted(source)  # every case tested exactly once over the folds


def test_folds_from_a_study_are_the_studys(tiny_cohort, tmp_path):
    """--folds-from reads the split parameters a study's child logged and gives the same datasets as stating
    them (a child run made with MLflow's client, as a study child logs its cfg.* parameters)."""
    with mlflow.start_run(tags={schema.STUDY_NAME: "cv", schema.ROLE: schema.STUDY_CHILD}):
        mlflow.log_params({f"cfg.{k}": v for k, v in SPLIT.items()} | {"cfg.seed": "0", "cfg.fold": "1"})
    _export(tiny_cohort, "--out", tmp_path / "a", "--folds-from", "cv")
    _export(tiny_cohort, "--out", tmp_path / "b", *[x for k, v in SPLIT.items() for x in ("-P", f"{k}={v}")])
    for k in range(3):
        name = f"Dataset{500 + k}_CLIPSFold{k}"
        a, b = (tmp_path / d / "nnUNet_preprocessed" / name / "splits_final.json" for d in ("a", "b"))
        assert json.loads(a.read_text()) == json.loads(b.read_text())


def test_no_such_study_is_one_line(tiny_cohort, tmp_path):
    res = CliRunner().invoke(cli, ["data", "export-nnunet", str(tiny_cohort), "--out", str(tmp_path / "x"),
                                   "--folds-from", "nope"])
    assert res.exit_code == 2 and "no child of study 'nope'" in res.output and "Traceback" not in res.output
