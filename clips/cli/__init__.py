"""The ``clips`` command. Every CLIPS error is printed as one line (or one line per problem), never a traceback.

One module per command group, each only wiring (options, then a call into the package that does the work):
data.py (synth, data), train.py (train, params), study.py (study, compare), tune.py (tune), models.py (evaluate,
predict, promote, model, export), server.py (server, runs); _common.py holds the ``clips`` group and the shared
option parsers.
"""
from __future__ import annotations

import sys

import click

from clips.cli import data, models, server, study, train, tune  # noqa: F401 - each registers its commands
from clips.cli._common import cli


def main():
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


__all__ = ["cli", "main"]

if __name__ == "__main__":
    main()
