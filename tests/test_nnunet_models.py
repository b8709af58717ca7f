"""Trained nnU-Net v2 model folders as CLIPS models (``clips model import-nnunet``): masks equal to
``nnUNetv2_predict``'s, ensembles equal to their merge made by hand (and by ``nnUNetv2_ensemble``), a reference arm
of a study, provenance on the registry, and one-line refusals of folders that cannot predict."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow
CASES = ("SYN0001", "SYN0002")  # two of the tiny cohort's patients: what every prediction here runs on


def _clips(*args):
    from click.testing import CliRunner

    from clips.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def _nnunet(entry: str, *args) -> None:
    """One of nnU-Net's own console commands, with this interpreter."""
    from importlib.metadata import entry_points

    (ep,) = entry_points(group="console_scripts", name=entry)
    module, func = ep.value.split(":")
    code = f"import sys; sys.argv[0] = {entry!r}; from {module} import {func} as main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _mask(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj) > 0


@pytest.fixture(scope="module")
def folders(nnunet_study, tmp_path_factory):
    """Two model folders as ``nnUNetv2_train`` writes them, and the cases in nnU-Net's input layout.

    A: the shared study's nnU-Net training, its checkpoint's trainer recorded as ``nnUNetTrainer``
    (nnUNetTrainerCLIPS changes only the training budget; ``nnUNetv2_predict`` finds nnUNetTrainer without
    importing nnU-Net's other trainers, some of which need a torchvision that this CPU build of torch lacks).
    B: A with every weight moved by seeded noise, a second model that disagrees with A on some voxels.
    """
    root = tmp_path_factory.mktemp("nnunet_models")
    (trained,) = Path(nnunet_study.env["CLIPS_HOME"]).rglob("nnUNetTrainerCLIPS__nnUNetPlans__3d_fullres")
    out = {}
    for name, noise in (("A", 0.0), ("B", 0.3)):
        folder = root / name / "nnUNetTrainer__nnUNetPlans__3d_fullres"
        (folder / "fold_0").mkdir(parents=True)
        for f in ("dataset.json", "plans.json"):
            shutil.copyfile(trained / f, folder / f)
        ckpt = torch.load(trained / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        ckpt["trainer_name"] = "nnUNetTrainer"
        gen = torch.Generator().manual_seed(3)
        for w in ckpt["network_weights"].values():
            if noise and w.is_floating_point() and w.numel() > 1:
                w += noise * w.std() * torch.randn(w.shape, generator=gen)
        torch.save(ckpt, folder / "fold_0" / "checkpoint_final.pth")
        out[name] = folder
    images = root / "imagesTs"  # nnU-Net's input layout: <case>_0000 CT, <case>_0001 PET
    images.mkdir()
    data = root / "cohort"  # the same cases as a CLIPS cohort
    data.mkdir()
    for pid in CASES:
        (data / pid).symlink_to(nnunet_study.cohort / pid)
        (images / f"{pid}_0000.nii.gz").symlink_to(nnunet_study.cohort / pid / "CTres.nii.gz")
        (images / f"{pid}_0001.nii.gz").symlink_to(nnunet_study.cohort / pid / "SUV.nii.gz")
    out.update(root=root, images=images, data=data)
    return out


@pytest.fixture(scope="module")
def theirs(folders):
    """nnU-Net's own commands on the cases: each folder through ``nnUNetv2_predict`` (mirroring off, the
    probabilities kept), and ``nnUNetv2_ensemble``'s mean of the two."""
    out = folders["root"] / "nnunet"
    for name in ("A", "B"):
        _nnunet("nnUNetv2_predict_from_modelfolder", "-i", folders["images"], "-o", out / name, "-m",
                folders[name], "-f", "0", "-device", "cpu", "--disable_tta", "--save_probabilities", "-npp", "1",
                "-nps", "1")
    _nnunet("nnUNetv2_ensemble", "-i", out / "A", out / "B", "-o", out / "mean", "-np", "1")
    return out


def test_an_imported_folder_predicts_what_nnunetv2_predict_does(in_nnunet_study, folders, theirs, tmp_path):
    res = _clips("model", "import-nnunet", folders["A"], "--name", "nn-a", "--channels", "CT=0,SUV=1",
                 "--no-mirroring", "--licence", "CC-BY-SA-4.0", "--source", "https://doi.org/10.0000/example",
                 "--training-data", "4 synthetic patients of the CLIPS example cohort")
    assert res.exit_code == 0, res.output
    assert "as models:/nn-a/1" in res.output
    ours = tmp_path / "ours"
    res = _clips("evaluate", "--data-dir", folders["data"], "--model-uri", "models:/nn-a/1", "--out", ours)
    assert res.exit_code == 0, res.output
    for pid in CASES:
        a, b = _mask(ours / "predictions" / f"{pid}.nii.gz"), _mask(theirs / "A" / f"{pid}.nii.gz")
        assert 0 < b.sum() < b.size  # both classes: agreement is not trivial
        assert np.array_equal(a, b), f"{pid}: {int((a != b).sum())} of {a.size} voxels differ"
    scored = tmp_path / "scored"
    res = _clips("evaluate", "--data-dir", folders["data"], "--pred-dir", theirs / "A", "--out", scored)
    assert res.exit_code == 0, res.output
    table = [pd.read_csv(d / "per_patient.csv").sort_values("patient_id").reset_index(drop=True)
             for d in (ours, scored)]
    pd.testing.assert_frame_equal(*table)
    # provenance: on the version, on the registered model, in their descriptions
    client = mlflow.MlflowClient()
    version, model = client.get_model_version("nn-a", "1"), client.get_registered_model("nn-a")
    for tags in (version.tags, model.tags):
        assert tags["clips.intended_use"] == "research use only, not a medical device"
        assert tags["clips.licence"] == "CC-BY-SA-4.0" and tags["clips.source"].startswith("https://doi.org/")
    assert "Licence: CC-BY-SA-4.0" in version.description and "nnUNetTrainer" in version.description
    params = client.get_run(version.run_id).data.params
    assert params["nnunet.model0.channels"] == "CT,SUV" and len(params["nnunet.model0.fold_0.sha256"]) == 64
    assert params["nnunet.mirroring"] == "False"  # as asked; nnU-Net's default (on) unless --no-mirroring
    res = _clips("export", "monai-bundle", "--model-uri", "models:/nn-a/1", "--out", tmp_path / "bundle")
    assert res.exit_code == 2 and "nnU-Net's predictor is its inference" in res.stderr


def test_ensembles_of_folders_equal_their_merge_made_by_hand(in_nnunet_study, folders, theirs, tmp_path):
    # by hand: the union of the two folders' nnUNetv2_predict masks; nnUNetv2_ensemble's mean of their probabilities
    for how in ("union", "mean"):
        res = _clips("model", "import-nnunet", folders["A"], folders["B"], "--name", f"nn-{how}", "--ensemble", how,
                     "--no-mirroring", "--channels", "CT=0,SUV=1")
        assert res.exit_code == 0, res.output
        res = _clips("predict", "--model-uri", f"models:/nn-{how}/1", "--input", folders["data"],
                     "--out", tmp_path / f"ours-{how}")
        assert res.exit_code == 0, res.output
    for pid in CASES:
        a, b = _mask(theirs / "A" / f"{pid}.nii.gz"), _mask(theirs / "B" / f"{pid}.nii.gz")
        assert (a & ~b).any() and (b & ~a).any()  # two models that disagree both ways: the merge is not trivial
        assert np.array_equal(_mask(tmp_path / "ours-union" / f"{pid}.nii.gz"), a | b)
        mean = _mask(theirs / "mean" / f"{pid}.nii.gz")
        assert not np.array_equal(mean, a | b)
        assert np.array_equal(_mask(tmp_path / "ours-mean" / f"{pid}.nii.gz"), mean)


def test_an_imported_model_is_a_reference_arm_paired_with_every_trained_run(in_nnunet_study, folders, tmp_path):
    from clips.study.runner import StudyConfig, run_study

    res = _clips("model", "import-nnunet", folders["A"], "--name", "nn-ref", "--no-mirroring",
                 "--channels", "CT=0,SUV=1")
    assert res.exit_code == 0, res.output
    train = {**in_nnunet_study.train, "data_dir": str(folders["root"] / "cohort6")}
    shutil.copytree(in_nnunet_study.cohort, train["data_dir"])
    run_study(StudyConfig(curricula=["none"], seeds=1, folds=2, study_name="nnref", contrasts=[],
                          references={"lyroi_like": "models:/nn-ref/1"}, train=train),
              log=lambda *_: None, compare_out=tmp_path / "report")
    refs = [c for c in mlflow.search_runs(search_all_experiments=True, output_format="list",
                                          filter_string="tags.`clips.study_name` = 'nnref'")
            if "clips.reference" in c.data.tags]
    assert sorted(c.data.tags["clips.study_key"] for c in refs) == [f"lyroi_like:{f}:0" for f in range(2)]
    paired = pd.read_csv(tmp_path / "report" / "paired.csv")
    row = paired[(paired["contrast"] == "lyroi_like vs none") & (paired["measure"] == "dice")
                 & (paired["subset"] == "all")].iloc[0]
    assert row["runs"] == 2 and row["patients"] == 6  # one trained run a fold, each paired; every patient once


def test_folders_that_cannot_predict_are_refused_in_one_line(in_nnunet_study, folders, tmp_path):
    def refused(folder, *extra) -> str:
        res = _clips("model", "import-nnunet", folder, "--name", "bad", *extra)
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
        return lines[0]

    def copy(name: str) -> Path:
        dst = tmp_path / name / folders["A"].name
        shutil.copytree(folders["A"], dst)
        return dst

    no_plans = copy("no_plans")
    (no_plans / "plans.json").unlink()
    assert "plans.json: missing" in refused(no_plans)
    assert "model folders inside it: nnUNetTrainer__nnUNetPlans__3d_fullres" in refused(folders["A"].parent)
    assert "fold_3: missing; folds with checkpoint_final.pth: 0" in refused(folders["A"], "--folds", "0,3")
    assert "fold_all: missing (nnU-Net's fold_all" in refused(folders["A"], "--folds", "all")
    other = copy("other_architecture")
    ckpt_file = other / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False)
    key = next(k for k in ckpt["network_weights"] if k.endswith("weight"))
    ckpt["network_weights"][key] = ckpt["network_weights"][key][:1]  # a layer of another width
    torch.save(ckpt, ckpt_file)
    line = refused(other, "--channels", "CT=0,SUV=1")
    assert str(ckpt_file) in line and "do not fit the network" in line
    assert "the names do not say which is the CT" in refused(folders["A"])  # CLIPS's export names both CT
    mr = copy("mr")
    dataset = json.loads((mr / "dataset.json").read_text())
    dataset["channel_names"] = {"0": "CT", "1": "MR"}
    (mr / "dataset.json").write_text(json.dumps(dataset))
    assert "channel 1 'MR' is neither CT nor PET; the cohort has no such image" in refused(mr)
    # PET in the model's own unit with fixed-statistics normalisation: CLIPS does not convert SUV
    line = refused(folders["A"], "--channels", "CT=0,PET=1")
    assert "normalised with CTNormalization" in line and "does not convert it to Bq/ml" in line
    assert not mlflow.search_registered_models(filter_string="name = 'bad'")  # nothing registered
    assert os.path.exists(folders["A"] / "plans.json")  # nothing of the user's touched
