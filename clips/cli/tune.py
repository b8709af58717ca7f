"""Optuna tuning with re-evaluation: ``clips tune``."""
from __future__ import annotations

import click

from clips.cli._common import (
    _defaults,
    _experiment_option,
    _extra_options,
    _opt,
    _params,
    _reachable,
    _scaling_options,
    cli,
)


def _tune_command(f):
    from clips.tuning.config import PRUNERS, TuneConfig

    d = _defaults(TuneConfig)
    for decorator in reversed([
        _opt("--curriculum", default=d["curriculum"], help="The curriculum whose schedule to tune."),
        _opt("--n-trials", default=d["n_trials"], type=click.IntRange(1)),
        _opt("--study-name", default=d["study_name"], help="Default: clips-<curriculum>-<profile>."),
        _opt("--timeout-min", default=d["timeout_min"], type=click.FloatRange(0),
             help="Stop starting trials after this many minutes (0: never)."),
        _opt("--objective", default=d["objective"], help="[-]<column>[@hard] of the per-patient validation table."),
        _opt("--pruner", default=d["pruner"], type=click.Choice(PRUNERS)),
        _opt("--warmup-epochs", default=d["warmup_epochs"], type=int,
             help="Epochs before pruning (-1: the longest ramp of the space)."),
        _opt("--seed", default=d["seed"], type=int, help="Seed of the TPE sampler."),
        _opt("--tune-lr", default=d["tune_lr"], type=bool, help="Add the common space (learning rate)."),
        _opt("--retry-failed", default=d["retry_failed"], type=click.IntRange(0),
             help="Re-run a dead worker's trial at most N times."),
        *_scaling_options(d, "the tuning study"),
        _opt("--reevaluate-top", default=d["reevaluate_top"], type=click.IntRange(-1),
             help="After the search, train the K best trials' settings again with fresh seeds, with the defaults and "
                  "the baseline, seed round by seed round, dropping a trial that cannot catch up with the best "
                  "(0: no re-evaluation; -1: by the profile: smoke re-trains its winner once, alone, in minutes; "
                  "the others 3 trials x 3 seeds)."),
        _opt("--reevaluate-seeds", default=d["reevaluate_seeds"], type=click.IntRange(-1),
             help="Most fresh seeds per re-evaluated candidate (-1: by the profile, see --reevaluate-top)."),
        _opt("--space-file", default=d["space_file"],
             help="Search spaces YAML (default experiments/search_spaces.yaml)."),
    ]):
        f = decorator(f)
    return f


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@_tune_command
@click.option("--worker-of", default="", hidden=True)
@click.option("--worker-index", default=0, type=int, hidden=True)
@click.option("-P", "--param", "params", multiple=True,
              help="Training parameter KEY=VALUE (profile, data_dir, epochs, ...).")
@_experiment_option
@click.pass_context
def tune(ctx, worker_of, worker_index, join, params, experiment, **options):
    """Tune a curriculum's schedule with Optuna; every trial is a child MLflow run.

    `clips tune --join NAME --storage URL` adds workers to a running tuning study, from any machine.
    """
    from clips.tuning.config import TuneConfig
    from clips.tuning.study import join_tuning, prepare, run_tuning, run_worker

    train_params = {k: v for k, v in (_extra_options(ctx.args) | _params(params)).items() if str(v).strip() != ""}
    if join:
        _reachable()
        join_tuning(join, options["storage"], options["workers"], options["gpus"], machine=train_params)
        return
    tcfg = TuneConfig(**options, train=train_params)
    _reachable(None if worker_of else experiment)
    if worker_of:  # a worker process started by --workers: trials only, the parent finalises
        run_worker(prepare(tcfg), worker_of, worker_index)
        return
    summary = run_tuning(tcfg, log=click.echo)
    click.echo(f"study {summary['study_name']}: {summary['complete']} complete, {summary['pruned']} pruned, "
               f"{summary['failed']} failed" + (f"; best {summary['best_value']:.4f} with {summary['best_params']}"
                                                if "best_value" in summary else ""))
