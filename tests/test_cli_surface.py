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

    return json.loads(json.dumps(cli.to_info_dict(click.Context(cli)), sort_keys=True, default=repr))


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


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    PINNED.write_text(json.dumps(surface(), indent=1, sort_keys=True) + "\n")
