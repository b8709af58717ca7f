"""Accounts and permissions on the shared server, through MLflow's basic-auth API (as the admin)."""
from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from clips.errors import ClipsError
from clips.tracking.server import GRANTABLE


def add_user(name: str, password: str, permission: str, experiment: str = "") -> list[str]:
    """Create the account ``name`` (or keep it, when it exists) and grant it ``permission`` on ``experiment``
    (created when missing), else on every experiment and registered model. Returns what was done, a line each."""
    from mlflow.server import get_app_client

    if permission not in GRANTABLE:
        raise ClipsError(f"permission must be one of {', '.join(GRANTABLE)}, not {permission!r}")
    client = get_app_client("basic-auth", tracking_uri=mlflow.get_tracking_uri())
    try:
        client.create_user(name, password)
        said = [f"user {name} created"]
    except MlflowException as exc:
        if "already" not in str(exc).lower() and "exists" not in str(exc).lower():
            raise ClipsError(f"cannot create user {name}: {exc.message.splitlines()[0]}") from None
        said = [f"user {name} exists; updating the permission"]
    if experiment:
        tracking = mlflow.MlflowClient()
        exp = tracking.get_experiment_by_name(experiment)
        grants = [("experiment", exp.experiment_id if exp else tracking.create_experiment(experiment))]
    else:
        grants = [("experiment", "*"), ("registered_model", "*")]
    for kind, rid in grants:
        client.grant_user_permission(name, kind, rid, permission)
    return said + [f"{name}: {permission} on " + ", ".join(f"{k} {r}" for k, r in grants)]
