"""One training: ``clips train`` and the parameters it takes, ``clips params``."""
from __future__ import annotations

import click

from clips.cli._common import _experiment_option, _extra_options, _params, _reachable, cli


@cli.command()
@click.option("--curriculum", default="", help="Also list this curriculum's options.")
@click.option("--profile", default="", help="Show the values of this profile (experiments/profiles.yaml).")
@click.option("--peer", default="", help="Also list this peer arm's options (clips study --peer-option).")
def params(curriculum, profile, peer):
    """List every training parameter with its default and meaning (-P name=value sets it)."""
    from clips.config import describe_parameters
    from clips.peers import get_peer

    for line in describe_parameters(curriculum or None, profile or None, get_peer(peer) if peer else None):
        click.echo(line)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--curriculum", default=None, help="Curriculum name (see docs/curricula.md).")
@click.option("--profile", default=None, help="smoke, demo, cpu, study or gpu (experiments/profiles.yaml).")
@click.option("--data-dir", default=None, help="Cohort folder; default: the generated example cohort.")
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="YAML file of parameters: overrides only, as -P takes them (docs/curricula.md).")
@click.option("--config-if-set", "config_if_set", default="", hidden=True)  # MLproject passes '' for "none"
@click.option("--resume", default=None, help="Run id to resume from its last checkpoint.")
@click.option("-P", "--param", "params", multiple=True, help="Any parameter, KEY=VALUE (repeatable).")
@_experiment_option
@click.pass_context
def train(ctx, curriculum, profile, data_dir, config_file, config_if_set, resume, params, experiment):
    """Train a segmentation network with a curriculum, tracked in MLflow.

    Curriculum options are given like any parameter (-P pacing=root, or --pacing root).
    """
    from clips.config import build_config
    from clips.training.trainer import train as run_training

    overrides = _extra_options(ctx.args) | _params(params)
    for key, value in (("curriculum", curriculum), ("profile", profile), ("data_dir", data_dir), ("resume", resume)):
        if value is not None:
            overrides[key] = value
    cfg = build_config(overrides, config_file or config_if_set or None)
    from clips.disk import ensure_writable
    from clips.paths import clips_home

    ensure_writable(clips_home(), "CLIPS_HOME: caches and checkpoints")
    _reachable(experiment)
    result = run_training(cfg, log=click.echo)
    click.echo(f"run {result.run_id}: best val Dice {result.best_val_dice:.4f} at epoch {result.best_epoch + 1}"
               if result.best_epoch >= 0 else
               f"run {result.run_id}: no validation found a lesion; the last epoch's network is delivered")
    from clips.tracking.summary import what_to_look_at

    for line in what_to_look_at(result.run_id):
        click.echo(line)
