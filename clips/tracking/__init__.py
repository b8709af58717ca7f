"""MLflow tracking: runs (``runs``), params, tables and figures, the tracking server, privacy.

Nothing is imported here, so that the command line can read ``names`` without importing MLflow.
"""
