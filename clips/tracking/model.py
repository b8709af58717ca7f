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


def log_segmentation_model(net, name: str = "model"):
    """Log the plain network (pickle format, so ``mlflow.pytorch.load_model`` returns a ``SegNet``)."""
    plain = copy.deepcopy(net).cpu().eval()
    return mlflow.pytorch.log_model(plain, name=name, serialization_format="pickle", signature=SIGNATURE,
                                    pip_requirements=_requirements())
