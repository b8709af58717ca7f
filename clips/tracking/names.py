"""Names the command line and the tracking code share (a leaf module: the CLI reads it without importing MLflow)."""

DEFAULT_EXPERIMENT = "clips"  # runs go here unless MLFLOW_EXPERIMENT_NAME or --experiment says otherwise
