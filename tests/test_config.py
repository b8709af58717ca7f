import pytest

from clips.config import build_config
from clips.curricula import get_curriculum
from clips.errors import ConfigError


def test_profile_then_overrides_with_casting():
    cfg = build_config({"profile": "smoke", "epochs": "3", "lr": "1e-3", "patch_size": "32", "spacing_mm": "4,4,3",
                        "skip_invalid": "true", "data_dir": ""})
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.lr == 0.001 and cfg.patch_size == (32, 32, 32) and cfg.spacing_mm == (4.0, 4.0, 3.0)
    assert cfg.skip_invalid is True and cfg.data_dir == ""
    assert build_config({"profile": "smoke", "epochs": ""}).epochs == build_config({"profile": "smoke"}).epochs
    assert build_config({"profile": "smoke", "model": ""}).model == "small"  # what MLproject passes when unset
    assert build_config({"profile": "gpu"}).model == "large"


@pytest.mark.parametrize("overrides,message", [
    ({"epochs": "two"}, "epochs='two'"),
    ({"epochs": "2.5"}, "whole number"),
    ({"epochz": "2"}, "unknown parameter 'epochz'"),
    ({"profile": "huge"}, "unknown profile 'huge'"),
    ({"lr": "-1"}, "out of range"),
    ({"patch_size": "30"}, "multiple of 8"),
    ({"skip_invalid": "maybe"}, "true or false"),
    ({"model": "huge"}, "unknown model preset 'huge'"),
    ({"curriculum": "magic"}, "unknown curriculum 'magic'"),
])
def test_bad_parameters_are_clear(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(overrides)


def test_yaml_config_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("curriculum: none\nepochs: 7\n")
    assert build_config({}, str(f)).epochs == 7
    f.write_text("curriculum: none\nnot_a_key: 7\n")
    with pytest.raises(ConfigError, match="not_a_key"):
        build_config({}, str(f))


def test_unknown_curriculum():
    with pytest.raises(ConfigError, match="unknown curriculum 'magic'"):
        get_curriculum("magic")


def test_defaults_are_the_smoke_profile_and_nested_fields_take_dotted_names():
    from clips.config import TrainConfig, load_profiles

    assert not load_profiles()["smoke"]  # the smoke profile is TrainConfig's own defaults, written once
    cfg = build_config({})
    assert cfg.profile == "smoke" and cfg.epochs == TrainConfig().epochs and cfg.patch_size == (48, 48, 48)
    cfg = build_config({"example.patients": "30", "example.seed": "2"})
    assert cfg.example.patients == 30 and cfg.example.seed == 2
    with pytest.raises(ConfigError, match="unknown parameter 'colour'"):
        build_config({"example.colour": "red"})


def test_command_line_defaults_come_from_the_configs_and_the_registry():
    from click.testing import CliRunner

    from clips.cli import cli
    from clips.curricula import REGISTRY
    from clips.study.config import StudyConfig
    from clips.tuning.config import TuneConfig

    assert StudyConfig().curricula == list(REGISTRY) and StudyConfig(curricula=["none"]).curricula == ["none"]
    tune = {p.name: p for p in cli.commands["tune"].params}
    assert tune["n_trials"].default == TuneConfig().n_trials and "--n_trials" in tune["n_trials"].opts
    assert tune["curriculum"].default == TuneConfig().curriculum
    out = CliRunner().invoke(cli, ["params", "--curriculum", "self_paced"]).output
    assert "example.patients" in out and "quantile0" in out and "steps_per_epoch" in out


def test_runs_go_to_a_named_experiment(monkeypatch):
    """Not MLflow's "Default": "clips", unless MLFLOW_EXPERIMENT_NAME or --experiment names another; under
    `mlflow run` the run keeps the experiment it was made in."""
    import mlflow

    from clips.tracking.runs import DEFAULT_EXPERIMENT, use_experiment

    assert use_experiment() == DEFAULT_EXPERIMENT == "clips"
    with mlflow.start_run() as run:
        pass
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == "clips"
    assert use_experiment() == "clips"  # found again, not created twice
    experiment = mlflow.get_experiment(run.info.experiment_id)  # the UI opens it in its model-training view
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lymphoma-2026")
    assert use_experiment() == "lymphoma-2026"
    assert use_experiment("ablation") == "ablation"
    with mlflow.start_run() as run:
        pass
    assert mlflow.get_experiment(run.info.experiment_id).name == "ablation"
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    assert use_experiment("other") is None


def test_run_parameters_have_no_noise(tmp_path):
    """No example-cohort settings when data_dir is given, no empty values, each value under one name."""
    from clips.config import build_config
    from clips.training.trainer import run_parameters

    own = run_parameters(build_config({"data_dir": str(tmp_path)}), {"sigma0": 1.0}, tmp_path)
    assert not [k for k in own if k.startswith("cfg.example.")]
    assert "" not in own.values() and own["cfg.data_dir"] == str(tmp_path) and own["curriculum.sigma0"] == "1.0"
    assert "cfg.data_dir_resolved" not in own and "cfg.teacher_uri" not in own  # empty: not shown
    example = run_parameters(build_config({}), {}, tmp_path / "example")
    assert example["cfg.example.patients"] == "24" and example["cfg.data_dir"] == str(tmp_path / "example")


def test_every_profile_builds_and_the_demo_learns_without_augmentation():
    from clips.config import build_config, load_profiles

    for name in load_profiles():
        assert build_config({"profile": name}).profile == name
    demo = build_config({"profile": "demo"})
    assert demo.augmentation == "none" and demo.epochs * demo.steps_per_epoch == 300


def test_the_folds_rule_is_one_rule_for_a_training_and_a_study():
    import re

    from clips.data.splits import FOLDS_RULE
    from clips.study.runner import StudyConfig, check

    for folds, fold in (("1", "0"), ("-2", "0"), ("3", "3")):
        with pytest.raises(ConfigError, match=re.escape(FOLDS_RULE)):
            build_config({"folds": folds, "fold": fold})
    assert build_config({"folds": "0"}).folds == 0 and build_config({"folds": "3", "fold": "2"}).fold == 2
    with pytest.raises(ConfigError, match=re.escape(FOLDS_RULE)):
        check(StudyConfig(curricula=["none"], folds=1, contrasts=[]))
