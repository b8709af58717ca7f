"""Logging the trained network as an MLflow model that runs on volumes of any size."""
from __future__ import annotations

import copy

import mlflow
import mlflow.pytorch
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from clips.data.preprocess import N_CHANNELS

SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_CHANNELS, -1, -1, -1), "preprocessed_pet_ct")]),
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 2, -1, -1, -1), "logits")]),
)


def _requirements() -> list[str]:
    # Listed, not inferred: inference would run the model in a subprocess and take minutes.
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "monai", "numpy", "nibabel")] + ["clips"]


def log_segmentation_model(net, preprocessing: dict, name: str = "model", step: int = 0):
    """Log the plain network (pickle format, so ``mlflow.pytorch.load_model`` returns a ``SegNet``).

    ``preprocessing`` (spacing_mm, patch_size, ...) goes into the model's metadata, so
    that prediction with a registered model needs nothing but its URI. ``step``: the epoch the weights are
    from; MLflow 3 links the run's metrics of that step to the logged model (its page shows them).
    """
    plain = copy.deepcopy(net).cpu().eval()
    return mlflow.pytorch.log_model(plain, name=name, serialization_format="pickle", signature=SIGNATURE,
                                    pip_requirements=_requirements(), metadata={"clips": preprocessing}, step=step)


def model_preprocessing(model_uri: str) -> dict:
    """The preprocessing settings stored with a CLIPS model."""
    from clips.errors import ClipsError

    try:
        info = mlflow.models.get_model_info(model_uri)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a URI that names no model
        raise ClipsError(f"cannot load model {model_uri}: {str(exc).splitlines()[0]}") from None
    meta = (info.metadata or {}).get("clips")
    if not meta:
        raise ClipsError(f"{model_uri} is not a CLIPS model (no preprocessing settings in its metadata)")
    return meta
