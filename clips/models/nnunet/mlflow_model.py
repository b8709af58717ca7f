"""Imported nnU-Net model folders as an MLflow model "from code": this file is the model's code, the folders
(dataset.json, plans.json, the chosen folds' checkpoints) are its artifacts ``model0``, ``model1``, ...; what
``clips model import-nnunet`` decided (folds, checkpoint, channel mapping, ensemble, mirroring) is its
``model_config``. Nothing is unpickled but nnU-Net's own checkpoints.

``clips predict``, ``clips evaluate --model-uri`` and reference arms call :meth:`NnUNetModel.segmenter`;
``predict`` takes ``{"ct": path, "suv": path}`` (one case, CT in HU and PET in SUV on one grid) and returns the mask.
"""
from __future__ import annotations

import mlflow


class NnUNetModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from clips.models.nnunet.folder import read_folder

        self.config = dict(context.model_config)
        self.folders = [read_folder(context.artifacts[f"model{i}"], ",".join(spec["folds"]), spec["checkpoint"])
                        for i, spec in enumerate(self.config["folders"])]
        self._predictors: dict[str, list] = {}

    def predictors(self, device) -> list:
        from clips.models.nnunet.predictor import load

        key = str(device)
        if key not in self._predictors:
            self._predictors[key] = [load(f, device, self.settings) for f in self.folders]
        return self._predictors[key]

    @property
    def settings(self):
        from clips.models.nnunet.predictor import Settings

        return Settings(**self.config["settings"])

    def inputs(self, ct, suv) -> list[list]:
        """Per folder, the case's files in that model's channel order."""
        return [[ct if image == "CT" else suv for image in spec["channels"]] for spec in self.config["folders"]]

    def segmenter(self, device):
        """files -> (mask on the PET grid, volumes), as clips/inference/predict.py:segmenter returns."""
        from clips.data.io import load_patient
        from clips.errors import DataError
        from clips.models.nnunet.predictor import segment

        predictors = self.predictors(device)

        def run(files):
            vols = load_patient(files)  # the checks every CLIPS reader makes (grids, units), before nnU-Net reads
            mask = segment(predictors, self.inputs(files.ct, files.pet), self.settings)
            if mask.shape != vols.pet.shape:
                raise DataError(files.patient_id, files.pet.name,
                                f"nnU-Net returned a mask of shape {mask.shape} for a PET of {vols.pet.shape}")
            return mask, vols

        return run

    def predict(self, context, model_input, params=None):
        import torch

        from clips.models.nnunet.predictor import segment

        predictors = self.predictors(torch.device("cpu"))
        return segment(predictors, self.inputs(model_input["ct"], model_input["suv"]), self.settings)


mlflow.models.set_model(NnUNetModel())
