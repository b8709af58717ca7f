"""Segmenting with nnU-Net model folders through nnU-Net's own predictor, one folder or an ensemble of them.

Everything that decides a voxel is nnU-Net's: ``nnUNetPredictor`` (its preprocessing, sliding window with
Gaussian weighting, the mean over a folder's folds, mirroring when asked), its export back onto the input grid,
and for ``mean`` ensembles its own ``merge_files`` (``nnUNetv2_ensemble``: the mean of the folders' probabilities,
then its label conversion). CLIPS adds the choice of input files, the union of masks (LyROI's merge) and the
reading of the mask back onto the PET grid.

The network: nnU-Net builds it with the trainer class the checkpoint names (``initialize_from_trained_model_folder``
looks it up among nnU-Net's trainers). When that class cannot be imported here (a trainer of CLIPS's own, a
challenge fork's, or nnU-Net's trainer search failing on an optional dependency), the network comes from plans.json
as ``nnUNetTrainer.build_network_architecture`` builds it, and the checkpoint's weights must fit it exactly: a
trainer that changed the architecture is refused in one line naming the checkpoint (install that trainer's code).
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clips.errors import ClipsError
from clips.models.nnunet.folder import ModelFolder

ENSEMBLES = ("union", "mean")  # union of the folders' masks (LyROI), mean of their probabilities (nnU-Net)


@dataclass
class Settings:
    ensemble: str = "union"  # how several folders merge (ENSEMBLES); one folder: unused
    mirroring: bool = True  # nnU-Net's test-time mirroring (its default; nnUNetv2_predict --disable_tta: off)
    tile_step_size: float = 0.5  # nnU-Net's default sliding-window step, as a fraction of the patch


def network_source(folder: ModelFolder) -> str:
    """"trainer <name>" when nnU-Net can import the checkpoint's trainer, else "plans" (see the module's note)."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            found = recursive_find_trainer_class_by_name(folder.trainer)
    except Exception:  # noqa: BLE001 - nnU-Net's search imports every trainer module; any failure means "not here"
        found = None
    return f"trainer {folder.trainer}" if found is not None else "plans"


def load(folder: ModelFolder, device, settings: Settings, source: str | None = None):
    """nnU-Net's predictor for the folder's chosen folds, or one line naming the checkpoint that does not fit.
    ``source``: :func:`network_source` when the caller has it (nnU-Net's trainer search is not free)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folds = tuple(f if f == "all" else int(f) for f in folder.folds)
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints as it sets up; CLIPS's lines are its own
        predictor = nnUNetPredictor(tile_step_size=settings.tile_step_size, use_gaussian=True,
                                    use_mirroring=settings.mirroring, device=device, verbose=False,
                                    perform_everything_on_device=device.type == "cuda", verbose_preprocessing=False,
                                    allow_tqdm=False)
        try:
            if (source or network_source(folder)) != "plans":
                predictor.initialize_from_trained_model_folder(str(folder.path), folds, folder.checkpoint)
            else:
                _from_plans(predictor, folder)
        except RuntimeError as exc:  # load_state_dict: missing, unexpected or mis-shaped weights
            raise ClipsError(f"{folder.checkpoint_file(folder.folds[0])}: its weights do not fit the network of "
                             f"{folder.path / 'plans.json'} (configuration {folder.configuration}, trainer "
                             f"{folder.trainer}): {_first_line(exc)}") from None
    for f, params in zip(folder.folds, predictor.list_of_parameters):
        try:  # nnU-Net loads the later folds only while predicting: check them now, before a patient waits on it
            predictor.network.load_state_dict(params)
        except RuntimeError as exc:
            raise ClipsError(f"{folder.checkpoint_file(f)}: its weights do not fit the network of fold "
                             f"{folder.folds[0]}: {_first_line(exc)}") from None
    predictor.network.load_state_dict(predictor.list_of_parameters[0])
    return predictor


def _from_plans(predictor, folder: ModelFolder) -> None:
    """``initialize_from_trained_model_folder`` with the network of plans.json (nnUNetTrainer's build)."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(folder.plans)
    config = plans.get_configuration(folder.configuration)
    checkpoints = [torch.load(folder.checkpoint_file(f), map_location="cpu", weights_only=False)
                   for f in folder.folds]
    channels = determine_num_input_channels(plans, config, folder.dataset)
    heads = plans.get_label_manager(folder.dataset).num_segmentation_heads
    network = nnUNetTrainer.build_network_architecture(plans, config, channels, heads, enable_deep_supervision=False)
    network.load_state_dict(checkpoints[0]["network_weights"])
    predictor.manual_initialization(network, plans, config, [c["network_weights"] for c in checkpoints],
                                    folder.dataset, folder.trainer,
                                    checkpoints[0].get("inference_allowed_mirroring_axes"))


def segment(predictors: list, inputs: list[list[Path]], settings: Settings) -> np.ndarray:
    """The lesion mask (uint8 0/1, in the voxel order of the input files) of one case.

    ``predictors``: one per model folder; ``inputs``: per folder, the case's files in that model's channel order.
    """
    import nibabel as nib

    with tempfile.TemporaryDirectory(prefix="nnunet-") as tmp:
        work = Path(tmp)
        probabilities = settings.ensemble == "mean" and len(predictors) > 1
        outputs = []
        for i, (predictor, files) in enumerate(zip(predictors, inputs)):
            truncated = work / f"model{i}" / "case"
            truncated.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.redirect_stdout(io.StringIO()):
                predictor.predict_from_files_sequential([[str(f) for f in files]], [str(truncated)],
                                                        save_probabilities=probabilities, overwrite=True)
            outputs.append(truncated)
        ending = predictors[0].dataset_json["file_ending"]
        if len(predictors) == 1:
            files = [str(outputs[0]) + ending]
        elif settings.ensemble == "mean":
            from nnunetv2.ensembling.ensemble import merge_files

            first = predictors[0]
            merged = work / "merged" / "case"
            merged.parent.mkdir(exist_ok=True)
            merge_files([str(o) + ".npz" for o in outputs], str(merged), ending,
                        first.plans_manager.image_reader_writer_class(), first.label_manager)
            files = [str(merged) + ending]
        else:
            files = [str(o) + ending for o in outputs]
        masks = [np.asanyarray(nib.load(f).dataobj) > 0 for f in files]
    return np.logical_or.reduce(masks).astype(np.uint8)


def _first_line(exc: Exception) -> str:
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    return " ".join(lines[:2])[:300] if lines else type(exc).__name__
