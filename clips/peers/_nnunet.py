"""The ``nnunet`` peer: nnU-Net v2 trained on a study's fold at a stated budget, scored by CLIPS's metrics.

Per fold (its train/val/test patients; a folder per distinct split, so seeds with one split share it)::

    $CLIPS_HOME/peers/nnunet/<study>/split-<digest>/
        nnUNet_raw/Dataset500_CLIPS/        clips/export/nnunet.py: CT _0000, SUV _0001, labels 0/1
        nnUNet_preprocessed/Dataset500_CLIPS/  splits_final.json = CLIPS's train/val; plans; preprocessed data
        seed<s>/nnUNet_results/, seed<s>/pred/, seed<s>/*.log   one training per seed

Planning and preprocessing run once per split (under a file lock: two workers may reach one split), at the
profile's spacing (``-overwrite_target_spacing``; ``spacing=nnunet`` keeps nnU-Net's own) with the study's
batch size written into the plans. Training uses clips/peers/_nnunet_trainer.py (nnU-Net's trainer, budget
changed only). Every step runs in a subprocess (planning as nnU-Net's own command, training and prediction
through its Python API: clips/peers/_nnunet_run.py says why), its output in a log that goes into the child
run. A child that is run again reuses a finished plan, training or prediction.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow

from clips.errors import ClipsError, ConfigError
from clips.export.nnunet import SPLIT_KEYS, write_dataset
from clips.peers.base import Peer, PeerJob
from clips.tracking import schema

DATASET_ID, DATASET_NAME = 500, "CLIPS"
DATASET = f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
CONFIGURATION = "3d_fullres"
TRAINER = "nnUNetTrainerCLIPS"
BUDGETS = ("steps", "wall", "nnunet")
NNUNET_DEFAULT = {"epochs": 1000, "iterations_per_epoch": 250, "val_iterations": 50}  # nnUNetTrainer's own
# nnU-Net's data augmentation processes; for training only: its planner sets torch's threads from it and fails on 0
DA_WORKERS = "nnUNet_n_proc_DA"
INSTALL = "pip install -e '.[nnunet]' (or pip install 'clips[nnunet]')"


class NnUNet(Peer):
    name = "nnunet"

    @dataclass
    class Options:
        # steps: the CLIPS recipe's epochs x steps_per_epoch optimiser steps at its batch size; wall: the training
        # loop's wall time of the fold's baseline child, seed 0 (its steps, validation and checkpoint phases), for
        # nnU-Net's training loop, at the same batch size; nnunet: nnU-Net's own 1000 x 250 at its planned batch
        budget: str = "steps"  # steps | wall | nnunet (above)
        val_iterations: int = 10  # validation batches per epoch (nnU-Net: 50); they only pick checkpoint_best
        spacing: str = "profile"  # profile: plan at the recipe's spacing_mm; nnunet: nnU-Net's own target spacing
        planner: str = "ExperimentPlanner"  # nnU-Net's default; nnUNetPlannerResEncM etc. for its ResEnc presets
        tta: bool = False  # mirroring at prediction (nnU-Net's default); off: like CLIPS's own arms
        data_workers: int = -1  # nnUNet_n_proc_DA; -1: the recipe's workers (default: none on a CPU, cores-1 on a GPU)

    def __init__(self, options: "NnUNet.Options"):
        super().__init__(options)
        if options.budget not in BUDGETS:
            raise ConfigError(f"peer nnunet: budget {options.budget!r}: one of {', '.join(BUDGETS)}")
        if options.spacing not in ("profile", "nnunet"):
            raise ConfigError(f"peer nnunet: spacing {options.spacing!r}: profile or nnunet")
        if options.val_iterations < 1:
            raise ConfigError("peer nnunet: val_iterations must be at least 1")

    @classmethod
    def check_installed(cls) -> None:
        try:
            import nnunetv2  # noqa: F401
        except ImportError:
            raise ClipsError(f"the nnunet peer arm needs nnU-Net v2, which is not importable here: {INSTALL}") from None

    def needs_baseline_wall(self) -> bool:
        return self.options.budget == "wall"

    # ------------------------------------------------------------------------- the child
    def run(self, job: PeerJob) -> None:
        from clips.inference.sliding_window import resolve_device
        from clips.metrics.cohort import evaluate_predictions, find_prediction, read_prediction
        from clips.tracking.cohort import log_cohort
        from clips.tracking.evaluation import log_evaluation
        from clips.tracking.privacy import Privacy
        from clips.training.cohort import load_data

        cfg, opts = job.cfg, self.options
        _, cohort = load_data(cfg, log=lambda *_: None)
        privacy = Privacy(cfg.privacy)
        privacy.ids(cohort.table["patient_id"])
        split_dir = job.workdir / f"split-{_split_digest(cohort)}"
        seed_dir = split_dir / f"seed{cfg.seed}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        budget = self.budget(job)
        device = resolve_device(cfg.device)
        env = self.environment(split_dir, seed_dir, budget, cfg, device)
        checkpoint = "checkpoint_best.pth" if job.selection == "inner_val" else "checkpoint_final.pth"
        mlflow.log_params(self.parameters(cfg, budget, checkpoint))
        began = time.perf_counter()
        plans = self.prepare(cohort, split_dir, cfg, env, job.log)
        prepared = time.perf_counter()
        fold_dir = seed_dir / "nnUNet_results" / DATASET / f"{TRAINER}__nnUNetPlans__{CONFIGURATION}" / "fold_0"
        if not (fold_dir / "checkpoint_final.pth").exists():
            job.log(f"nnunet: training (seed {cfg.seed}, {_budget_line(budget)})")
            resume = "resume" if (fold_dir / "checkpoint_latest.pth").exists() else "fresh"
            _step("train", [DATASET, CONFIGURATION, device.type, resume], env, seed_dir / "train.log")
        trained = time.perf_counter()
        pred = seed_dir / "pred"
        test_ids = cohort.ids("test")
        if not all((pred / f"{pid}.nii.gz").exists() for pid in test_ids):
            job.log(f"nnunet: predicting {len(test_ids)} test patients")
            _step("predict", [str(fold_dir.parent), checkpoint, str(split_dir / "nnUNet_raw" / DATASET / "imagesTs"),
                              str(pred), device.type, "tta" if opts.tta else "no_tta"], env, seed_dir / "predict.log")
        predicted = time.perf_counter()
        evaluation = evaluate_predictions(test_ids, lambda pid: read_prediction(cohort.files[pid],
                                                                               find_prediction(pred, pid)))
        steps = _steps_done(fold_dir)
        mlflow.log_metrics({schema.TIME + "nnunet_prepare_s": prepared - began,
                            schema.TIME + "nnunet_train_s": trained - prepared,
                            schema.TIME + "nnunet_predict_s": predicted - trained, "nnunet_steps": steps["steps"],
                            "nnunet_epochs": steps["epochs"]})
        mlflow.log_params({"nnunet.patch_size": ",".join(map(str, plans["patch_size"])),
                           "nnunet.target_spacing_mm": ",".join(f"{s:g}" for s in plans["spacing"]),
                           "nnunet.batch_size": plans["batch_size"], "nnunet.normalization":
                           ",".join(plans["normalization_schemes"])})
        log_cohort(cohort, seed_dir, privacy)
        log_evaluation(evaluation, "test", privacy=privacy)
        self.log_model(fold_dir, checkpoint, seed_dir, privacy)
        job.log(f"nnunet: {len(evaluation.table)} test patients scored; {steps['epochs']} epochs, "
                f"{steps['steps']} steps")

    # ------------------------------------------------------------------------- pieces
    def budget(self, job: PeerJob) -> dict:
        """What nnUNetTrainerCLIPS reads: the epochs, iterations and validation batches, and a wall time."""
        cfg, opts = job.cfg, self.options
        common = {"seed": cfg.seed, "threads": cfg.threads, "val_iterations": opts.val_iterations,
                  "budget": opts.budget}  # the batch size is in the plans (prepare)
        if opts.budget == "nnunet":
            return common | NNUNET_DEFAULT
        if opts.budget == "wall":
            if job.baseline_wall_s <= 0:
                raise ClipsError("peer nnunet: budget=wall needs the fold's baseline child, which has no wall time")
            return common | {"epochs": NNUNET_DEFAULT["epochs"], "iterations_per_epoch": cfg.steps_per_epoch,
                             "wall_s": job.baseline_wall_s}
        return common | {"epochs": cfg.epochs, "iterations_per_epoch": cfg.steps_per_epoch}

    def environment(self, split_dir: Path, seed_dir: Path, budget: dict, cfg, device) -> dict:
        """nnU-Net's folders, the budget file, its augmentation workers and, for a named GPU (``cuda:1``), that GPU
        as the only one it sees (nnU-Net's ``-device`` takes a type only)."""
        budget_file = seed_dir / "budget.json"
        budget_file.write_text(json.dumps(budget, indent=1) + "\n")
        workers = self.options.data_workers if self.options.data_workers >= 0 else cfg.workers
        if workers < 0:
            from clips.data.loader import default_workers

            workers = default_workers(device)
        gpu = {"CUDA_VISIBLE_DEVICES": str(device.index)} if device.type == "cuda" and device.index is not None else {}
        return os.environ | gpu | {
            "nnUNet_raw": str(split_dir / "nnUNet_raw"), "nnUNet_preprocessed": str(split_dir / "nnUNet_preprocessed"),
            "nnUNet_results": str(seed_dir / "nnUNet_results"),
            "CLIPS_NNUNET_BUDGET": str(budget_file), DA_WORKERS: str(workers)}

    def prepare(self, cohort, split_dir: Path, cfg, env: dict, log) -> dict:
        """The split as an nnU-Net dataset, planned and preprocessed (once); returns the configuration's plans."""
        plans_file = split_dir / "nnUNet_preprocessed" / DATASET / "nnUNetPlans.json"
        ready = split_dir / "prepared.json"
        with _locked(split_dir / ".lock"):
            if not ready.exists():
                log(f"nnunet: planning and preprocessing {split_dir.name}")
                raw = split_dir / "nnUNet_raw" / DATASET
                if raw.exists():  # an earlier attempt stopped half-way: write it again
                    import shutil

                    shutil.rmtree(split_dir / "nnUNet_raw")
                write_dataset(cohort, split_dir, DATASET_ID, DATASET_NAME, source="a CLIPS study's split")
                args = ["-d", str(DATASET_ID), "-c", CONFIGURATION, "-pl", self.options.planner, "-np", "1",
                        "-npfp", "1", "--verify_dataset_integrity"]
                if self.options.spacing == "profile":  # nnU-Net's arrays are z, y, x; CLIPS's spacing x, y, z
                    args += ["-overwrite_target_spacing", *(f"{s:g}" for s in reversed(cfg.spacing_mm))]
                planning = {k: v for k, v in env.items() if k != DA_WORKERS}
                _nnunet("nnUNetv2_plan_and_preprocess", args, planning, split_dir / "plan.log")
                plans = json.loads(plans_file.read_text())
                if cfg.batch_size and self.options.budget != "nnunet":  # the study's batch size, as the arm
                    plans["configurations"][CONFIGURATION]["batch_size"] = cfg.batch_size
                    plans_file.write_text(json.dumps(plans, indent=1))
                ready.write_text(json.dumps({"prepared": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n")
        return json.loads(plans_file.read_text())["configurations"][CONFIGURATION]

    def parameters(self, cfg, budget: dict, checkpoint: str) -> dict:
        params = {schema.CFG + k: v for k, v in cfg.as_params().items() if k in SPLIT_KEYS + ("profile", "device")}
        return params | {schema.CURRICULUM_PARAM: self.name, schema.SEED_PARAM: cfg.seed,
                         schema.FOLD_PARAM: cfg.fold, schema.FOLDS_PARAM: cfg.folds,
                         "nnunet.version": importlib.metadata.version("nnunetv2"), "nnunet.trainer": TRAINER,
                         "nnunet.planner": self.options.planner, "nnunet.configuration": CONFIGURATION,
                         "nnunet.budget": self.options.budget, "nnunet.epochs": budget["epochs"],
                         "nnunet.iterations_per_epoch": budget["iterations_per_epoch"],
                         "nnunet.val_iterations": budget["val_iterations"], "nnunet.wall_s": budget.get("wall_s", 0),
                         "nnunet.tta": self.options.tta, "nnunet.checkpoint": checkpoint,
                         "nnunet.spacing": self.options.spacing}

    def log_model(self, fold_dir: Path, checkpoint: str, seed_dir: Path, privacy) -> None:
        """nnU-Net's model folder (plans, dataset.json, the chosen checkpoint, its log and curve) and the logs
        of every step: ``nnUNetPredictor.initialize_from_trained_model_folder`` takes the downloaded folder."""
        model = fold_dir.parent
        for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
            mlflow.log_artifact(str(model / name), "nnunet/model")
        mlflow.log_artifact(str(fold_dir / checkpoint), "nnunet/model/fold_0")
        for f in sorted(fold_dir.glob("*.png")):
            mlflow.log_artifact(str(f), "nnunet/model/fold_0")
        logs = sorted(fold_dir.glob("training_log_*.txt")) + [seed_dir.parent / "plan.log", seed_dir / "train.log",
                                                              seed_dir / "predict.log", seed_dir / "budget.json"]
        for f in logs:
            if f.exists():
                mlflow.log_text(privacy.text(f.read_text(errors="replace")), f"nnunet/logs/{f.name}")


# ----------------------------------------------------------------------------- helpers
def _split_digest(cohort) -> str:
    parts = [",".join(cohort.ids(s)) for s in ("train", "val", "test")] + [cohort.digest]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:10]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _step(step: str, args: list[str], env: dict, log_file: Path) -> None:
    """Train or predict through clips/peers/_nnunet_run.py in a subprocess, its output in ``log_file``."""
    _logged([sys.executable, "-m", "clips.peers._nnunet_run", step, *args], f"nnU-Net {step}", env, log_file)


def _logged(cmd: list[str], what: str, env: dict, log_file: Path) -> None:
    with open(log_file, "w") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = [x for x in log_file.read_text(errors="replace").splitlines() if x.strip()][-1:] or ["no output"]
        raise ClipsError(f"{what} failed (exit {done.returncode}): {tail[0][:300]} (log: {log_file})")


def _nnunet(command: str, args: list[str], env: dict, log_file: Path) -> None:
    """Run one of nnU-Net's console commands with this interpreter (found through its entry point, so no PATH
    is needed), its output in ``log_file``; a failure is one line naming the step and the log."""
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name=command)
    module, func = entry.value.split(":")
    code = f"import sys; sys.argv[0] = {command!r}; from {module} import {func} as main; sys.exit(main())"
    _logged([sys.executable, "-c", code, *args], f"nnU-Net's {command}", env, log_file)


def _steps_done(fold_dir: Path) -> dict:
    """Epochs and optimiser steps the training ran, from the trainer's last log line."""
    import re

    for log in sorted(fold_dir.glob("training_log_*.txt"), reverse=True):
        m = re.search(r"CLIPS budget: (\d+) epoch\(s\) x (\d+) iterations", log.read_text(errors="replace"))
        if m:
            return {"epochs": int(m.group(1)), "steps": int(m.group(1)) * int(m.group(2))}
    return {"epochs": -1, "steps": -1}


def _budget_line(budget: dict) -> str:
    if budget.get("wall_s"):
        return f"{budget['wall_s']:.0f} s of wall time"
    return f"{budget['epochs']} x {budget['iterations_per_epoch']} steps"
