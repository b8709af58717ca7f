"""Trained nnU-Net v2 model folders as CLIPS models: read and checked (folder.py), the cohort's images mapped
to the model's channels (channels.py), segmented by nnU-Net's own predictor, alone or as an ensemble
(predictor.py), and logged as an MLflow model "from code" (mlflow_model.py; clips/registry/nnunet_import.py
registers it)."""

KIND = "nnunet"  # an imported model's metadata["clips"]["kind"]: clips/inference/predict.py runs it with predictor.py
