"""Promotion on the local store: idempotent, registered from the logged model, no empty run left behind."""
import mlflow
import numpy as np

from clips.registry.promote import promote
from tests.test_server import _run_with_test_table


def test_promote_twice_registers_once_and_links_the_logged_model():
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("reg")
    run_a = _run_with_test_table(exp_id, np.linspace(0.4, 0.6, 8), np.full(8, 5.0))
    first = promote("reg")
    assert first.promoted and first.version == "1"
    again = promote("reg")  # nothing new since: no new version, the champion stays
    assert not again.promoted and again.unchanged and again.version == "1" and "stays champion" in str(again)
    versions = client.search_model_versions("name = 'clips-tmtv'")
    assert [str(v.version) for v in versions] == ["1"]
    (logged,) = client.get_run(run_a).outputs.model_outputs
    assert versions[0].source == f"models:/{logged.model_id}"  # MLflow 3: version -> logged model -> metrics
    tags = versions[0].tags  # provenance: what CLIPS knows of a model it trained, nothing it cannot know
    assert tags["clips.intended_use"] == "research use only, not a medical device"
    assert run_a in tags["clips.source"] and tags["clips.licence"] == "not stated"
    assert "Intended use: research use only" in versions[0].description
    assert type(mlflow.pytorch.load_model("models:/clips-tmtv@champion")).__name__ == "SegNet"


def test_promote_under_mlflow_run_records_its_decision(monkeypatch):
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("reg2")
    _run_with_test_table(exp_id, np.linspace(0.4, 0.6, 8), np.full(8, 5.0))
    entry = client.create_run(exp_id)  # what `mlflow run . -e promote` makes before calling us
    monkeypatch.setenv("MLFLOW_RUN_ID", entry.info.run_id)
    decision = promote("reg2")
    tags = client.get_run(entry.info.run_id).data.tags
    assert tags["clips.decision"] == "promoted" and tags["clips.model_version"] == decision.version
    assert tags["mlflow.runName"] == "promote clips-tmtv"
