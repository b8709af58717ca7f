"""The nnU-Net steps that CLIPS runs through nnU-Net's Python API, in a subprocess of their own:
``python -m clips.peers._nnunet_run train|predict ...`` (clips/peers/_nnunet.py calls it; nnU-Net's folders
and the budget come in the environment).

Why not ``nnUNetv2_train -tr nnUNetTrainerCLIPS`` with ``nnUNet_extTrainer``: nnU-Net finds a trainer by
importing every trainer it ships, among them the Primus ones, which need timm and so torchvision; a torchvision
wheel does not import beside the CPU build of torch that CLIPS pins. So the trainer is built directly (its
constructor is nnU-Net's public signature) and prediction is set up with ``nnUNetPredictor.manual_initialization``
from the checkpoint, which is what nnU-Net's own commands do after their class lookup.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def train(dataset: str, configuration: str, device: str, resume: bool) -> None:
    from nnunetv2.paths import nnUNet_preprocessed

    from clips.peers._nnunet_trainer import nnUNetTrainerCLIPS

    pre = Path(nnUNet_preprocessed.require()) / dataset
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    plans["continue_training"] = resume
    dataset_json = json.loads((pre / "dataset.json").read_text())
    trainer = nnUNetTrainerCLIPS(plans, configuration, 0, dataset_json, torch.device(device))
    if resume:
        trainer.load_checkpoint(str(Path(trainer.output_folder) / "checkpoint_latest.pth"))
    trainer.run_training()


def predict(model_dir: str, checkpoint: str, images: str, out: str, device: str, tta: bool) -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from clips.peers._nnunet_trainer import nnUNetTrainerCLIPS

    model = Path(model_dir)
    plans = PlansManager(json.loads((model / "plans.json").read_text()))
    dataset_json = json.loads((model / "dataset.json").read_text())
    ckpt = torch.load(model / "fold_0" / checkpoint, map_location="cpu", weights_only=False)
    config = plans.get_configuration(ckpt["init_args"]["configuration"])
    channels = determine_num_input_channels(plans, config, dataset_json)
    heads = plans.get_label_manager(dataset_json).num_segmentation_heads
    network = nnUNetTrainerCLIPS.build_network_architecture(plans, config, channels, heads,
                                                            enable_deep_supervision=False)
    predictor = nnUNetPredictor(use_mirroring=tta, device=torch.device(device), allow_tqdm=False)
    predictor.manual_initialization(network, plans, config, [ckpt["network_weights"]], dataset_json,
                                    ckpt["trainer_name"], ckpt.get("inference_allowed_mirroring_axes"))
    predictor.predict_from_files(images, out, save_probabilities=False, overwrite=True,
                                 num_processes_preprocessing=1, num_processes_segmentation_export=1)


if __name__ == "__main__":
    step, args = sys.argv[1], sys.argv[2:]
    if step == "train":
        train(args[0], args[1], args[2], args[3] == "resume")
    else:
        predict(args[0], args[1], args[2], args[3], args[4], args[5] == "tta")
