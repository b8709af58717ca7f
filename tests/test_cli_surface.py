"""The command line's surface, pinned: every command's help and every option (name, type, default, flags) as click
states it (``to_info_dict``) equals tests/cli_surface.json. A reorganisation of the CLI code must leave it equal;
a deliberate change of the interface rewrites the file (``python tests/test_cli_surface.py --write``) in the same
commit, so that the diff shows what users see change."""
import json
import sys
from pathlib import Path

import click

PINNED = Path(__file__).with_name("cli_surface.json")


def surface() -> dict:
    from clips.cli import cli

    # the group's own context settings (-h beside --help): click caches each command's help option from the first
    # context it sees, so a context without them would describe the CLI differently after a test has run it
    ctx = click.Context(cli, info_name="clips", **cli.context_settings)
    return json.loads(json.dumps(cli.to_info_dict(ctx), sort_keys=True, default=repr))


def _flatten(info: dict, path: str = "clips") -> dict:
    out = {path: {k: v for k, v in info.items() if k != "commands"}}
    for name, sub in info.get("commands", {}).items():
        out |= _flatten(sub, f"{path} {name}")
    return out


def test_every_command_and_option_is_as_pinned():
    live, pinned = _flatten(surface()), _flatten(json.loads(PINNED.read_text()))
    assert sorted(live) == sorted(pinned), "commands added or gone: " + ", ".join(sorted(set(live) ^ set(pinned)))
    changed = [name for name in pinned if live[name] != pinned[name]]
    assert not changed, "commands whose help or options changed: " + ", ".join(changed)


def test_defaults_written_outside_their_owners_are_the_owners():
    """MLproject's declared parameters, promote's and synth's options restate defaults that live elsewhere (MLflow
    shows declared defaults; click shows its own): each equals its owner's."""
    import inspect

    import yaml

    from clips.cli import cli
    from clips.data.synth.cohort import SynthConfig
    from clips.metrics.settings import EvalSettings
    from clips.paths import DEFAULT_PROFILE
    from clips.registry.promote import promote

    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "MLproject").read_text())["entry_points"]
    declared = {name: {k: str(v.get("default")) for k, v in ep.get("parameters", {}).items()}
                for name, ep in project.items()}
    assert declared["main"]["profile"] == DEFAULT_PROFILE
    ev = EvalSettings()
    assert (float(declared["evaluate"]["tolerance_mm"]), float(declared["evaluate"]["suv_threshold"]),
            int(declared["evaluate"]["connectivity"]), float(declared["evaluate"]["lesion_threshold"])) == (
        ev.tolerance_mm, ev.suv_threshold, ev.connectivity, ev.lesion_threshold)
    owner = {k: p.default for k, p in inspect.signature(promote).parameters.items()}
    option = {p.name: p.default for p in cli.commands["promote"].params}
    for key in ("experiment", "model_name", "metric", "alpha"):
        assert option[key] == owner[key], key
        assert declared["promote"][key] == str(owner[key]), key
    synth = {p.name: p.default for p in cli.commands["synth"].params}
    cfg = SynthConfig()
    assert (synth["spacing"],) * 3 == cfg.spacing_mm
    assert tuple(float(v) for v in synth["fov"].split(",")) == cfg.fov_mm


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    PINNED.write_text(json.dumps(surface(), indent=1, sort_keys=True) + "\n")
