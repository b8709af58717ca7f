"""The released TMTV-Net as an MLflow model "from code": this file is the model's code, the two released
files are its artifacts. Loading it runs this file and :func:`load_released` on the artifacts; nothing is
unpickled. ``clips model import-tmtvnet`` logs it (clips/registry/tmtv_net_import.py).

``predict`` takes ``{"ct": (D, H, W) HU, "suv": (D, H, W), "spacing_zyx": (3,)}`` on the PET grid in the
network's (z, y, x) order and returns the mask; ``clips predict`` calls the pipeline directly.
"""
from __future__ import annotations

import mlflow
import numpy as np


class ReleasedTMTVNet(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from clips.models.tmtv_net import load_released

        self.net = load_released(ensemble=context.artifacts.get("ensemble"), refiner=context.artifacts.get("refiner"))

    def predict(self, context, model_input, params=None):
        from clips.models.tmtv_net.pipeline import predict

        spacing = tuple(float(s) for s in np.asarray(model_input["spacing_zyx"]).ravel())
        return predict(self.net, np.asarray(model_input["ct"], float), np.asarray(model_input["suv"], float),
                       spacing).mask


mlflow.models.set_model(ReleasedTMTVNet())
