"""Names the command line and the tracking code share (a leaf module: the CLI reads it without importing MLflow)."""

DEFAULT_EXPERIMENT = "clips"  # runs go here unless MLFLOW_EXPERIMENT_NAME or --experiment says otherwise
# On a study parent: clips.withdrawn = the withdrawn arms; clips.withdrawn.<arm> = when, and what had been seen.
WITHDRAWN_TAG = "clips.withdrawn"
# On a study parent: passed | failed | not possible, the A/A calibration check of its last comparison.
CALIBRATION_TAG = "clips.calibration"
# On a study parent: each restart that changed the design (more seeds, more arms), when and how.
DESIGN_TAG = "clips.design_changes"
