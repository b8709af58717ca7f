"""The MONAI bundle export, checked by MONAI's own tools: verify_net_in_out, and monai.bundle run against
clips predict on real NIfTI cases."""
from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch

from clips.models import SegNet
from clips.tracking.model import log_segmentation_model

# The mandatory keys of MONAI's bundle specification (docs/source/mb_specification.rst, "metadata.json File"),
# with MONAI 1.6's required_packages_version for the older optional_packages_version: MONAI's verify_metadata
# fetches its JSON schema from the internet, so the test checks them itself.
REQUIRED = ("version", "monai_version", "pytorch_version", "numpy_version", "required_packages_version", "task",
            "description", "authors", "copyright", "network_data_format")
TENSOR_KEYS = ("type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data",
               "channel_def")


def _clips(*args):
    """A CLIPS command in this process (its start-up would only add time); MONAI's tools run as subprocesses."""
    from click.testing import CliRunner

    from clips.cli import cli

    return CliRunner().invoke(cli, list(args))


@pytest.mark.slow
def test_bundle_passes_monai_checks_and_writes_the_masks_clips_predict_writes(tiny_cohort, tmp_path):
    # A model at the cohort's own spacing (10 mm): no resampling on either side, so the masks must agree to the
    # voxel. Random weights: probabilities near 0.5 make any difference in the inputs flip voxels, which is the
    # point of the comparison.
    torch.manual_seed(0)
    with mlflow.start_run() as run:
        mlflow.log_metric("test_dice_mean", 0.5)
        info = log_segmentation_model(SegNet("tiny"), {"spacing_mm": [10.0, 10.0, 10.0], "patch_size": [32, 32, 32],
                                                       "model": "tiny", "sw_overlap": 0.25})
    from clips.registry.provenance import Provenance, register_version

    # registered with a stated provenance, which the bundle must carry
    register_version(mlflow.MlflowClient(), "bundled", info.model_uri, run.info.run_id,
                     Provenance(licence="CC-BY-4.0", training_data="six synthetic patients"), model_id=info.model_id)
    uri = "models:/bundled/1"
    cases = tmp_path / "cases"
    cases.mkdir()
    for pid in ("SYN0001", "SYN0002"):
        (cases / pid).symlink_to(tiny_cohort / pid)

    bundle = tmp_path / "bundle"
    res = _clips("export", "monai-bundle", "--model-uri", uri, "--out", str(bundle))
    assert res.exit_code == 0, res.output
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert not [k for k in REQUIRED if k not in meta] and "pytorch-ignite" in meta["required_packages_version"]
    for io in ("inputs", "outputs"):
        for spec in meta["network_data_format"][io].values():
            assert not [k for k in TENSOR_KEYS if k not in spec], spec
    assert meta["eval_metrics"] == {"test_dice_mean": 0.5}
    assert meta["intended_use"] == "research use only, not a medical device" and meta["license"] == "CC-BY-4.0"
    assert meta["data_source"].startswith("six synthetic patients")
    assert "clips" not in (bundle / "configs" / "inference.json").read_text().replace("CLIPS", "")  # MONAI only
    readme = (bundle / "docs" / "README.md").read_text()
    assert run.info.run_id in readme and "MONAI Label" in readme and "Licence: CC-BY-4.0" in readme

    res = subprocess.run([sys.executable, "-m", "monai.bundle", "verify_net_in_out", "network_def", "--meta_file",
                          "configs/metadata.json", "--config_file", "configs/inference.json", "--device", "cpu"],
                         cwd=bundle, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                          "--bundle_root", str(bundle), "--dataset_dir", str(cases)], cwd=bundle,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    res = _clips("predict", "--model-uri", uri, "--input", str(cases), "--out", str(tmp_path / "clips"))
    assert res.exit_code == 0, res.output
    for pid in ("SYN0001", "SYN0002"):
        ours = nib.load(tmp_path / "clips" / f"{pid}.nii.gz")
        theirs = nib.load(bundle / "eval" / pid / "CTres_seg.nii.gz")
        a, b = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
        assert b.shape == a.shape and np.allclose(theirs.affine, ours.affine, atol=1e-4)
        assert 0 < a.sum() < a.size  # a mask with both classes, so agreement is not trivial
        assert np.array_equal(a, b), f"{pid}: {int((a != b).sum())} of {a.size} voxels differ"


def test_a_model_that_is_not_clips_is_refused_in_one_line(tmp_path):
    with mlflow.start_run() as run:
        mlflow.log_text("x", "model/nothing.txt")
    res = _clips("export", "monai-bundle", "--model-uri", f"runs:/{run.info.run_id}/model", "--out",
                 str(tmp_path / "b"))
    assert res.exit_code == 2 and res.stderr.startswith("error: cannot load model runs:/"), res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output, res.output
