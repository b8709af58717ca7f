"""End to end: the MLflow project trains a real (tiny) network on real NIfTI files and logs everything."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.projects
import mlflow.pytorch
import numpy as np
import pytest
import torch

from clips.metrics.patient import COLUMNS

REPO = Path(__file__).resolve().parent.parent
TINY_RUN = {"model": "tiny", "epochs": "2", "steps_per_epoch": "3", "patch_size": "32", "spacing_mm": "10",
            "batch_size": "2"}

pytestmark = pytest.mark.slow


def _metric_steps(client, run_id, key):
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_mlflow_run_logs_everything(tiny_cohort):
    submitted = mlflow.projects.run(
        str(REPO), entry_point="main", env_manager="local", experiment_name="e2e",
        parameters={"curriculum": "none", "profile": "smoke", "data_dir": str(tiny_cohort), **TINY_RUN,
                    "augmentation": "default", "workers": "1"},  # augmented patches from a loader process
    )
    assert submitted.wait()
    client = mlflow.MlflowClient()
    run = client.get_run(submitted.run_id)
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["curriculum"] == "none" and p["cfg.curriculum"] == "none" and p["cfg.epochs"] == "2"
    assert p["cfg.model"] == "tiny" and p["cfg.loss_alpha"] == "1e-05" and p["cfg.loss_lambda"] == "2.0"
    assert p["cfg.augmentation"] == "default" and p["cfg.workers"] == "1"
    assert run.data.tags["clips.curriculum"] == "none"
    for key in ("train_loss", "val_dice", "lr", "samples_seen", "fraction_in_play"):
        assert _metric_steps(client, run.info.run_id, key) == [0, 1], key
    assert [m.value for m in client.get_metric_history(run.info.run_id, "samples_seen")] == [6, 12]
    assert "val_dice_mean" in run.data.metrics and "test_dice_mean" in run.data.metrics

    # The dataset with its digest, and the split file.
    (ds_input,) = run.inputs.dataset_inputs
    assert ds_input.dataset.name == "cohort" and len(ds_input.dataset.digest) == 16
    split = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data/split.csv"))
    assert split.read_text().count("\n") == 7  # header + 6 patients

    # A best checkpoint only where a validation found a lesion (issue #39); the tag says which network is delivered,
    # and the last epoch's is evaluated on the test patients beside it.
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    selected = run.data.tags["clips.selected"]
    assert artifacts == ({"checkpoints/last.pt", "checkpoints/best.pt"} if selected.startswith("best validation")
                         else {"checkpoints/last.pt"}), selected
    assert "test_last_dice_mean" in run.data.metrics and "test_last_nsd_mean" in run.data.metrics

    table = client.load_table(run.info.experiment_id, "tables/val_per_patient.json", run_ids=[run.info.run_id])
    assert list(table.columns) == COLUMNS
    assert len(table) == 1 and table["tmtv_true_ml"].iloc[0] > 0
    for split in ("val", "test"):
        paths = {a.path for a in client.list_artifacts(run.info.run_id, f"evaluation/{split}")}
        assert {f"evaluation/{split}/{f}" for f in ("per_patient.csv", "summary.json", "reports")} <= paths
        figs = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
        assert {f"figures/{split}_tmtv_scatter.png", f"figures/{split}_tmtv_bland_altman.png"} <= figs
        assert f"{split}_nsd_mean" in run.data.metrics and f"{split}_lesion_a1_sensitivity" in run.data.metrics

    # The logged model reloads and segments a volume of a size it never saw.
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    with torch.no_grad():
        out = model(torch.rand(1, 5, 23, 17, 29))
    assert out.shape == (1, 2, 23, 17, 29)
    info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert info.signature.inputs.inputs[0].shape == (-1, 5, -1, -1, -1)


def test_invalid_patient_is_refused_then_skipped(tiny_cohort):
    import nibabel as nib
    import numpy as np

    img = nib.load(tiny_cohort / "SYN0003/SEG.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-1], img.affine), tiny_cohort / "SYN0003/SEG.nii.gz")
    args = [sys.executable, "-m", "clips", "train", "--data-dir", str(tiny_cohort)]
    args += [x for k, v in TINY_RUN.items() for x in ("-P", f"{k}={v}")]
    res = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2
    assert "SYN0003: SEG.nii.gz: shape" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(args + ["-P", "skip_invalid=true"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "skipping invalid patient: SYN0003" in res.stdout


def test_evaluate_entry_point_predicts_then_evaluates(tiny_cohort, tmp_path):
    train = mlflow.projects.run(str(REPO), entry_point="main", env_manager="local", experiment_name="e2e",
                                parameters={"data_dir": str(tiny_cohort), **TINY_RUN, "epochs": "1"})
    assert train.wait()
    out = tmp_path / "eval"
    ev = mlflow.projects.run(str(REPO), entry_point="evaluate", env_manager="local", experiment_name="e2e",
                             parameters={"model_uri": f"runs:/{train.run_id}/model", "data_dir": str(tiny_cohort),
                                         "out": str(out), "workers": "2"})
    assert ev.wait()
    run = mlflow.MlflowClient().get_run(ev.run_id)
    assert "eval_dice_mean" in run.data.metrics and "eval_tmtv_pearson_r" in run.data.metrics
    assert run.data.params["cfg.suv_threshold"] == "4.0"
    table = (out / "per_patient.csv").read_text().splitlines()
    assert table[0].split(",") == COLUMNS and len(table) == 7
    assert len(list((out / "predictions").glob("*.nii.gz"))) == 6
    assert len(list((out / "reports").glob("*.txt"))) == 6
    paths = {a.path for a in mlflow.MlflowClient().list_artifacts(ev.run_id, "evaluation/eval")}
    assert "evaluation/eval/predictions" not in paths  # images stay local


def test_device_check_runs_on_the_cpu(tmp_path):
    """The GPU check's CPU fallback: the same code on tiny sizes, one table, its JSON, a real MLflow run."""
    import json

    out = subprocess.run(["bash", "benchmarks/device_check.sh", "--tiny", "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = json.loads((tmp_path / "device_check.json").read_text())
    assert rows["e2e_ok"] is True and rows["fp32_step_s_no_loading"] > 0 and rows["inference_s"] > 0
    assert rows["fp32_loader_ratio"] > 0 and rows["fp32_loader_ratio_running"] > 0
    assert rows["bf16_augment_on_device_loader_ratio"] > 0 and "bf16_vs_fp32_step" not in rows  # a GPU's row
    assert 0 < rows["step_achieved_vs_peak"] < 2 and rows["gemm_peak_tflops"] > 0 and rows["step_tflop"] > 0
    assert rows["step_fused_adamw_vs_default"] > 0 and rows["step_channels_last_flipped_vs_default"] > 0
    sections = {k: v for k, v in rows.items() if k.startswith("section_")}
    assert len(sections) == 5 and all(isinstance(v, float) for v in sections.values()), sections  # none cut off
    assert rows["augment_noise_monai_host_s"] > 0 and rows["augment_preset_device_s"] > 0
    assert "logical cores" in rows["env_cpu"] and "monai" in rows["env_versions"]
    assert rows["tmtv_released_s"] > 0 and rows["fp32_loader_start_s"] >= 0
    assert "stage1" in rows["tmtv_released_phases"] and "download" in rows["tmtv_released_phases"]
    # the options that must not change the released outputs, and half precision, measured against them
    assert rows["tmtv_tiles_x4_8ch_stage1_rel_l2"] < 1e-5 and rows["tmtv_tiles_x4_8ch_mask_differs"] < 1e-3
    assert 0 <= rows["tmtv_bf16_mask_differs"] <= 1 and rows["tmtv_bf16_stage1_rel_l2"] >= 0
    assert "loader_ratio" in out.stdout
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import time

    from device_check import Table, section

    partial = Table(tmp_path / "partial" / "device_check.json")
    partial["first_row"] = 1.5  # written at once: a check stopped at its limit keeps its rows
    assert json.loads((tmp_path / "partial" / "device_check.json").read_text()) == {"first_row": 1.5}
    with section(partial, "slow", 1):  # a part past its deadline stops with a row, and the check goes on
        time.sleep(5)
        partial["never"] = 1.0
    assert partial["section_slow_s"] == "stopped at its 1 s deadline" and "never" not in partial


def test_variance_reducers_the_moving_average_is_what_the_run_delivers(tiny_cohort):
    """ema_decay: the delivered model is the weights' moving average, not the last step's weights (with the
    last epoch selected, no validation); grad_clip and warmup_steps run and are logged."""
    import torch

    from clips.config import build_config
    from clips.training import checkpoint
    from clips.training.trainer import train

    cfg = build_config({"data_dir": str(tiny_cohort), "model": "tiny", "epochs": "2", "steps_per_epoch": "3",
                        "patch_size": "32", "spacing_mm": "10", "val_fraction": "0", "ema_decay": "0.5",
                        "grad_clip": "1.0", "warmup_steps": "2", "threads": "1"})
    result = train(cfg, log=lambda *_: None)
    from clips.paths import clips_home

    last = checkpoint.load(clips_home() / "runs" / result.run_id / "checkpoints" / "last.pt")
    delivered = mlflow.pytorch.load_model(f"runs:/{result.run_id}/model").state_dict()
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    key = next(k for k in delivered if k.endswith("weight") and delivered[k].dim() > 1)
    assert torch.equal(delivered[key], averaged[key]) and not torch.equal(delivered[key], last["model"][key])
    params = mlflow.get_run(result.run_id).data.params
    assert params["cfg.ema_decay"] == "0.5" and params["cfg.grad_clip"] == "1.0" and params["cfg.warmup_steps"] == "2"
    lrs = [m.value for m in mlflow.MlflowClient().get_metric_history(result.run_id, "lr")]
    # after epoch 1's 3 steps: 2 of linear warm-up to the full rate, then 1 of the cosine over the 4 steps left
    assert lrs[0] == pytest.approx(cfg.lr * (1 + np.cos(np.pi / 4)) / 2, rel=1e-6)
