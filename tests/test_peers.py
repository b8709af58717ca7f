"""The nnU-Net peer arm: real nnU-Net v2 (plan, preprocess, train, predict) inside a real tiny study, on CLIPS's
split, scored by CLIPS's metric suite and compared like any arm; and the one-line errors around it."""
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from clips.errors import ConfigError
from clips.study.runner import StudyConfig, check

# one split, one training of 1 epoch x 3 steps each side: the whole nnU-Net pipeline in about a minute
TINY = {"model": "tiny", "epochs": "1", "steps_per_epoch": "3", "patch_size": "32", "spacing_mm": "10",
        "threads": "2"}


def test_nnunet_is_an_arm_of_a_study_on_clips_split(in_nnunet_study, tmp_path):
    """The shared study of tests/conftest.py:nnunet_study (the baseline and the nnU-Net arm, one split)."""
    children = {c.data.params["cfg.curriculum"]: c for c in mlflow.search_runs(
        search_all_experiments=True, output_format="list", filter_string="tags.`clips.role` = 'study_child'")}
    peer, base = children["nnunet"], children["none"]
    assert peer.info.status == "FINISHED" and peer.data.tags["clips.peer"] == "nnunet"
    assert peer.data.params["nnunet.trainer"] == "nnUNetTrainerCLIPS" and peer.data.params["nnunet.budget"] == "steps"
    # the budget: the recipe's optimiser steps at its batch size, at its spacing
    assert peer.data.metrics["nnunet_steps"] == 1 * 3 and peer.data.params["nnunet.batch_size"] == "2"
    assert peer.data.params["nnunet.target_spacing_mm"] == "10,10,10"
    # nnU-Net trained and validated on CLIPS's patients: its splits file is the baseline's train/val
    home = Path(os.environ["CLIPS_HOME"]) / "peers" / "nnunet" / "peer"
    (split_dir,) = home.glob("split-*")
    splits = json.loads((split_dir / "nnUNet_preprocessed" / "Dataset500_CLIPS" / "splits_final.json").read_text())
    client = mlflow.MlflowClient()
    split = pd.read_csv(client.download_artifacts(base.info.run_id, "data/split.csv", str(tmp_path)))
    ids = {s: sorted(split.loc[split["split"] == s, "patient_id"]) for s in ("train", "val", "test")}
    assert splits == [{"train": ids["train"], "val": ids["val"]}]
    # every test patient scored by CLIPS's suite, the same patients as the baseline's
    per_patient = pd.read_csv(in_nnunet_study.report / "per_patient.csv")
    rows = per_patient[per_patient["curriculum"] == "nnunet"]
    assert sorted(rows["patient_id"]) == ids["test"] and rows["dice"].between(0, 1).all()
    summary = pd.read_csv(in_nnunet_study.report / "comparison.csv")
    assert "nnunet" in set(summary["variant"])
    # the model folder nnU-Net's predictor takes, and the logs of every step, in the child run
    arts = {a.path for a in client.list_artifacts(peer.info.run_id, "nnunet/model")}
    assert {"nnunet/model/plans.json", "nnunet/model/dataset.json", "nnunet/model/fold_0"} <= arts
    assert "nnunet/logs/train.log" in {a.path for a in client.list_artifacts(peer.info.run_id, "nnunet/logs")}


def test_the_wall_budget_rounds_to_the_nearest_whole_epoch():
    """Flooring always undershoots: a 255 s epoch in a 480 s budget would use 53 % of it."""
    from clips.peers._nnunet_trainer import epochs_that_fit

    assert [epochs_that_fit(w, 255.0, 1000) for w in (100, 369, 480, 700)] == [1, 1, 2, 3]
    assert epochs_that_fit(1e9, 1.0, 50) == 50


def test_peer_options_and_names_are_checked_before_anything_trains(tiny_cohort):
    base = {"curricula": ["none"], "seeds": 1, "contrasts": [], "train": {"data_dir": str(tiny_cohort), **TINY}}
    with pytest.raises(ConfigError, match="unknown peer arm 'nnunett'"):
        check(StudyConfig(peers=["nnunett"], **base))
    with pytest.raises(ConfigError, match="budget 'fast'"):
        check(StudyConfig(peers=["nnunet"], peer_options={"nnunet.budget": "fast"}, **base))
    with pytest.raises(ConfigError, match="peer option 'budget'"):
        check(StudyConfig(peers=["nnunet"], peer_options={"budget": "wall"}, **base))
    with pytest.raises(ConfigError, match="include the baseline"):
        check(StudyConfig(peers=["nnunet"], peer_options={"nnunet.budget": "wall"},
                          **(base | {"curricula": ["random"]})))


def test_a_missing_nnunet_is_one_line(tiny_cohort, tmp_path):
    """Without nnU-Net importable (a package of that name that fails to import stands first on the path), the
    study refuses in one line that says how to install it, before anything trains."""
    shadow = tmp_path / "shadow" / "nnunetv2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = os.environ | {"PYTHONPATH": str(shadow.parent)}
    done = subprocess.run([sys.executable, "-m", "clips", "study", "--curricula", "none", "--peers", "nnunet",
                           "--seeds", "1", "--exploratory", "true", "-P", f"data_dir={tiny_cohort}"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    said = [x for x in done.stderr.splitlines() if "nnunet" in x.lower()]  # MLflow's store set-up logs too
    assert len(said) == 1 and "clips[nnunet]" in said[0] and "Traceback" not in done.stderr, done.stderr
