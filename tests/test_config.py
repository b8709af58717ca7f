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
    assert build_config({"profile": "gpu"}).model == "tmtv_net"


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
