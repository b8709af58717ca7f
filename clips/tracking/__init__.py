"""MLflow tracking: runs, params, tables and figures."""
from clips.tracking.runs import log_params_once, run_context, start_run

__all__ = ["log_params_once", "run_context", "start_run"]
