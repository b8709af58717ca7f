"""What every command module of the CLI shares: the ``clips`` group (every CLIPS error one line on stderr, exit
status 2), the environment set before any library loads, and the small parsers of options.

A command module (data.py, train.py, study.py, tune.py, models.py, server.py) only wires: it reads its
defaults from their owners and hands the work to the package that does it (tests/test_architecture.py).
"""
from __future__ import annotations

import os
import sys
import warnings

import click

# Progress bars of artifact downloads flood logs of long runs and workers.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Library deprecation notices are not for our users (MLflow's server imports a deprecated Starlette module).
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*starlette.middleware.wsgi is deprecated.*")

from clips.errors import ClipsError  # noqa: E402 - after the environment set-up above
from clips.tracking.schema import DEFAULT_EXPERIMENT  # noqa: E402


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-P")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out


def _opt(*decls, **kw):
    """A click option that also answers to its underscore spelling (``--n_trials`` for ``--n-trials``):
    ``mlflow run -P n_trials=20`` hands undeclared parameters over that way."""
    long = [d for d in decls if d.startswith("--")]
    underscored = ["--" + d[2:].replace("-", "_") for d in long if "-" in d[2:]]
    return click.option(*decls, *underscored, long[0][2:].replace("-", "_"), show_default=True, **kw)


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _pairs(items, sep: str, form: str, hint: str) -> dict[str, str]:
    """KEY<sep>VALUE items of a repeatable option, each possibly comma-separated, as a dict."""
    out = {}
    for part in (p for item in items for p in item.split(",") if p.strip()):
        if sep not in part:
            raise click.BadParameter(f"{part!r} is not {form}", param_hint=hint)
        k, v = part.split(sep, 1)
        out[k.strip()] = v.strip()
    return out


def _defaults(cls) -> dict:
    """The dataclass's field defaults: the one place a command's defaults are written."""
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


class ClipsGroup(click.Group):
    """Every CLIPS error, from any sub-command, becomes one line on stderr and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ClipsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)  # not ctx.exit: main() runs click with standalone_mode=False, which would swallow it


@click.group(cls=ClipsGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """CLIPS: curriculum learning for lymphoma segmentation on whole-body FDG PET/CT."""


_experiment_option = click.option(
    "--experiment", default="",
    help=f"MLflow experiment of the runs (default: $MLFLOW_EXPERIMENT_NAME, else {DEFAULT_EXPERIMENT}).")


def _extra_options(args: list[str]) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs: MLflow passes -P values not declared in MLproject this way."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise click.UsageError(f"unexpected argument {a!r}")
        if "=" in a:
            k, v = a[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise click.UsageError(f"option {a} needs a value")
            k, v = a[2:], args[i + 1]
            i += 2
        out[k.replace("-", "_")] = v
    return out


def _reachable(experiment: str | None = None):
    """Fail with one line when the tracking server is down; with ``experiment`` (a command that starts runs),
    send the runs to that experiment ("" : $MLFLOW_EXPERIMENT_NAME, else "clips")."""
    import mlflow

    from clips.tracking.server import require_reachable

    require_reachable(mlflow.get_tracking_uri())
    if experiment is not None:
        from clips.tracking.runs import use_experiment

        use_experiment(experiment)


def _scaling_options(d: dict, what: str) -> list:
    """The options by which studies and tuning scale out, written once for both."""
    return [
        _opt("--storage", default=d["storage"],
             help=f"Optuna storage of {what} (postgresql://... to share between machines); default: SQLite "
                  "beside the MLflow store."),
        _opt("--workers", default=d["workers"], type=click.IntRange(0, 64),
             help="Local worker processes; 0: one per GPU, or one on a CPU-only machine. Each gets its GPU and "
                  "its share of the CPU cores."),
        _opt("--gpus", default=d["gpus"],
             help="GPUs for the local workers: auto (every visible one), none, or 0,1,..."),
        _opt("--heartbeat-grace-s", default=d["heartbeat_grace_s"], type=click.IntRange(3),
             help="A worker silent this long is dead; its job goes back to the queue."),
        _opt("--join", default="", help="Join the study of this name in --storage as a worker, from any machine."),
    ]
