"""``clips export monai-bundle``: a logged or registered CLIPS model as a MONAI bundle that MONAI's tools run.

The bundle follows MONAI's bundle specification::

    <out>/configs/metadata.json    what the network takes and gives, versions, the model's figures
    <out>/configs/logging.conf     the logging of `monai.bundle run`
    <out>/configs/inference.json   network_def (MONAI's DynUNet), CLIPS's preprocessing as MONAI transforms,
                                   the sliding-window inferer, the post-processing, the writer, an evaluator
    <out>/models/model.pt          the network's state_dict, DynUNet's own keys
    <out>/docs/README.md           what the model is, its data, metrics and evidence; MONAI Label and 3D Slicer

Only MONAI's own classes are named in the configs (no ``clips`` import), so the bundle runs where CLIPS is not
installed: ``python -m monai.bundle run --config_file configs/inference.json --dataset_dir DATA``.

Where MONAI's transform is not CLIPS's (it matters for a voxel-exact comparison with ``clips predict``):
CLIPS resamples with ``torch.nn.functional.interpolate`` on a grid whose field of view keeps its corners
(clips/data/preprocess.py:resize); MONAI's ``Spacingd`` keeps the first voxel's centre and steps at exactly the
target spacing. At the model's own spacing both are the identity and the masks agree to the voxel; at another
spacing the sampling points differ by under one target voxel and boundary voxels can differ (measured and stated
in docs/export.md).
"""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import torch

from clips.data.layout import AUTOPET_FILES
from clips.data.preprocess import CHANNEL_WINDOWS, N_CHANNELS
from clips.errors import ClipsError
from clips.export.bundle_readme import render as render_readme
from clips.models import RELEASED_PRESET as RELEASED_KIND
from clips.models.nnunet import KIND as NNUNET_KIND
from clips.models.unet import MIN_PATCH, dynunet_args
from clips.registry.provenance import TAGS as PROVENANCE_TAGS
from clips.registry.provenance import Provenance, trained_provenance
from clips.tracking import schema

CT, PET = "ct", "pet"
CHANNEL_KEYS = [f"ch{c}_{name}" for c, (name, _, _) in enumerate(CHANNEL_WINDOWS)]
BUNDLE_PACKAGES = ("fire", "pytorch-ignite")  # MONAI's bundle command line and its evaluator (clips[bundle])
# MONAI's logging configuration for `monai.bundle run` (it looks for configs/logging.conf), the model zoo's form
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def network_def(preset: str) -> dict:
    args = dynunet_args(preset)
    args["norm_name"] = list(args["norm_name"])  # JSON has no tuples
    return {"_target_": "DynUNet", **args}


def preprocessing(spacing_mm) -> dict:
    """CLIPS's preprocessing (clips/data/preprocess.py) as MONAI transforms, in CLIPS's order: the five windowed
    channels on the patient's grid, then RAS, then the model's spacing, then float16 as CLIPS's case cache holds
    them (the network was trained and is evaluated on float16-rounded inputs)."""
    copies = [{"_target_": "CopyItemsd", "keys": src, "times": len(names), "names": names}
              for src, names in ((CT, [k for k in CHANNEL_KEYS if k.endswith(CT)]),
                                 (PET, [k for k in CHANNEL_KEYS if k.endswith(PET)]))]
    windows = [{"_target_": "ScaleIntensityRanged", "keys": key, "a_min": lo, "a_max": hi, "b_min": 0.0,
                "b_max": 1.0, "clip": True} for key, (_, lo, hi) in zip(CHANNEL_KEYS, CHANNEL_WINDOWS)]
    return {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": [CT, PET], "reader": "NibabelReader", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": [CT, PET]},
        *copies, *windows,
        {"_target_": "ConcatItemsd", "keys": CHANNEL_KEYS, "name": "image"},
        {"_target_": "DeleteItemsd", "keys": [CT, PET, *CHANNEL_KEYS]},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": list(spacing_mm), "mode": "bilinear"},
        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float16"},
        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
    ]}


def postprocessing() -> dict:
    """CLIPS's: lesion probability (softmax channel 1) back on the patient's grid, then >= 0.5."""
    return {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "Lambdad", "keys": "pred", "func": "$lambda x: x[1:]"},
        {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
         "output_dtype": "$numpy.uint8", "resample": False, "separate_folder": False,
         "data_root_dir": "@dataset_dir", "print_log": False},
    ]}


def inference_config(meta: dict) -> dict:
    ct, pet = AUTOPET_FILES["ct"], AUTOPET_FILES["pet"]
    return {
        "imports": ["$import glob", "$import numpy", "$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "dataset_dir": "cases",
        "output_dir": "$@bundle_root + '/eval'",
        # every <case>/CTres.nii.gz under dataset_dir with its SUV.nii.gz beside it (the autoPET layout)
        "datalist": f"$[{{'{CT}': f, '{PET}': f[:-len('{ct}')] + '{pet}'}} for f in "
                    f"sorted(glob.glob(@dataset_dir + '/**/{ct}', recursive=True))]",
        "network_def": network_def(meta["model"]),
        "network": "$@network_def.to(@device)",
        "preprocessing": preprocessing(meta["spacing_mm"]),
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(meta["patch_size"]), "sw_batch_size": 2,
                    "overlap": float(meta.get("sw_overlap", 0.25)), "mode": "gaussian"},
        "postprocessing": postprocessing(),
        "handlers": [{"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                      "load_dict": {"model": "@network"}, "map_location": "@device"}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": False},
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    }


def metadata(meta: dict, model_uri: str, description: str, figures: dict, provenance: Provenance) -> dict:
    m = MIN_PATCH  # any multiple of it is a valid input (instance norm needs more than one bottleneck voxel)
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
                  "meta_schema_20240725.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by clips export monai-bundle from {model_uri}"},
        "monai_version": _version("monai"),
        "pytorch_version": _version("torch").split("+")[0],
        "numpy_version": _version("numpy"),
        # MONAI 1.6 reads required_packages_version (optional_packages_version, the older specification's name,
        # is deprecated and rewritten to it): nibabel, and MONAI's bundle command line and evaluator
        "required_packages_version": {p: _version(p) for p in ("nibabel", *BUNDLE_PACKAGES)},
        "name": "CLIPS lymphoma lesion segmentation (FDG PET/CT)",
        "task": "Lesion segmentation of whole-body FDG PET/CT for total metabolic tumour volume",
        "description": description,
        "authors": "CLIPS",
        "copyright": "the site that trained the model",
        "license": provenance.licence,  # the weights' licence, as the registry holds it
        "data_source": f"{provenance.training_data} (source: {provenance.source}; docs/README.md)",
        "data_type": "nibabel",
        "image_classes": "CT (HU) and PET (SUV) on the same grid, made into five windowed channels",
        "label_classes": "0 background, 1 lesion",
        "pred_classes": "0 background, 1 lesion",
        "eval_metrics": figures,
        "intended_use": provenance.intended_use,
        "references": ["Yousefirizi et al., TMTV-Net, 2024 (the channel windows)"],
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "PET/CT",
                                 "num_channels": N_CHANNELS, "spatial_shape": [f"{m}*n"] * 3, "dtype": "float32",
                                 "value_range": [0, 1], "is_patch_data": True,
                                 "channel_def": {str(c): f"{name} window [{lo:g}, {hi:g}]"
                                                 for c, (name, lo, hi) in enumerate(CHANNEL_WINDOWS)}}},
            "outputs": {"pred": {"type": "image", "format": "labels", "modality": "n/a", "num_channels": 2,
                                 "spatial_shape": [f"{m}*n"] * 3, "dtype": "float32", "value_range": [],
                                 "is_patch_data": True, "channel_def": {"0": "background", "1": "lesion"}}},
        },
    }


def _state_dict(net) -> dict:
    """SegNet's weights under DynUNet's own keys (SegNet only pads and crops around its ``unet``)."""
    return {k.removeprefix("unet."): v.detach().cpu() for k, v in net.state_dict().items()}


def _figures(model_uri: str) -> tuple[dict, dict, Provenance]:
    """(the run's test and validation means, the registry's evidence for this version, its provenance) as far as
    they exist; a model that is not a registered version has the provenance CLIPS knows of its training run."""
    client = mlflow.MlflowClient()
    info = mlflow.models.get_model_info(model_uri)
    run = client.get_run(info.run_id) if info.run_id else None
    metrics = {k: round(v, 4) for k, v in (run.data.metrics if run else {}).items()
               if k.startswith(("test_", "val_")) and k.endswith("_mean")}
    evidence, prov = {}, (trained_provenance(run) if run else Provenance())
    if model_uri.startswith("models:/"):
        name, _, ref = model_uri[len("models:/"):].partition("@")
        ver = client.get_model_version_by_alias(name, ref) if ref else client.get_model_version(*name.split("/", 1))
        evidence = {"model": f"{ver.name} version {ver.version}", **{k: v for k, v in ver.tags.items()
                                                                      if k.startswith(schema.PREFIX)
                                                                      and k not in PROVENANCE_TAGS.values()}}
        prov = Provenance.from_tags(ver.tags) or prov
    return metrics, {"run": info.run_id or "", **({"params": run.data.params} if run else {}), **evidence}, prov


def export_bundle(model_uri: str, out: Path) -> Path:
    from clips.tracking.model import model_preprocessing

    meta = model_preprocessing(model_uri)
    if meta.get("kind") == RELEASED_KIND:
        raise ClipsError(f"{model_uri} is the released TMTV-Net (two stages, its own tiling): only CLIPS's own "
                         "single-network models are exported as MONAI bundles")
    if meta.get("kind") == NNUNET_KIND:
        raise ClipsError(f"{model_uri} is an imported nnU-Net model: nnU-Net's predictor is its inference, which a "
                         "MONAI bundle cannot hold; share the model folder (the run's model/artifacts) instead")
    if out.exists() and any(out.iterdir()):
        raise ClipsError(f"{out} exists and is not empty: choose a new folder for the bundle")
    net = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    metrics, evidence, provenance = _figures(model_uri)
    description = (f"A 3D U-Net (MONAI DynUNet, preset {meta['model']!r}) trained with CLIPS; input the five "
                   f"TMTV-Net channels at {meta['spacing_mm']} mm, sliding windows of {meta['patch_size']}.")
    (out / "configs").mkdir(parents=True)
    (out / "models").mkdir()
    (out / "docs").mkdir()
    torch.save(_state_dict(net), out / "models" / "model.pt")
    (out / "configs" / "logging.conf").write_text(LOGGING_CONF)
    (out / "configs" / "inference.json").write_text(json.dumps(inference_config(meta), indent=2) + "\n")
    (out / "configs" / "metadata.json").write_text(
        json.dumps(metadata(meta, model_uri, description, metrics, provenance), indent=2) + "\n")
    (out / "docs" / "README.md").write_text(render_readme(model_uri, meta, description, metrics, evidence,
                                                          provenance))
    return out
