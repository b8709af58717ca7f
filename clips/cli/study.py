"""Cross-validated studies and their comparison: ``clips study``, ``clips compare``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from clips.cli._common import (
    _defaults,
    _experiment_option,
    _extra_options,
    _names,
    _opt,
    _pairs,
    _params,
    _reachable,
    _scaling_options,
    cli,
)
from clips.tracking.schema import DEFAULT_EXPERIMENT


def _sequential_options(f):
    """The options of a group-sequential plan (clips/stats/sequential.py), for studies and re-analyses alike."""
    from clips.stats.sequential import SPENDINGS, SequentialPlan

    d = _defaults(SequentialPlan)
    for decorator in reversed([
        _opt("--sequential", default=False, type=bool,
             help="true: look after every seed round from --min-seeds on, stop each primary contrast at the "
                  "spending boundary (efficacy) or for futility (docs/study.md, 'Sequential studies')."),
        _opt("--max-seeds", default=0, type=click.IntRange(0),
             help="With --sequential: the most seeds per fold (at it every contrast has a decision)."),
        _opt("--min-seeds", default=d["min_seeds"], type=click.IntRange(2), help="With --sequential: the first look."),
        _opt("--spending", default=d["spending"], type=click.Choice(SPENDINGS),
             help="With --sequential: O'Brien-Fleming-type (almost nothing early) or Pocock-type alpha spending."),
        _opt("--effect", default=d["effect"], type=click.FloatRange(0, min_open=True),
             help="With --sequential: the planned Dice effect of the futility rule's conditional power."),
        _opt("--futility-power", default=d["futility_power"], type=click.FloatRange(0, 1, max_open=True),
             help="With --sequential: stop a contrast for futility below this conditional power (0: never)."),
    ]):
        f = decorator(f)
    return f


def _plan(options: dict):
    """The SequentialPlan the options name (popped from ``options``), or None without --sequential."""
    keys = ("sequential", "max_seeds", "min_seeds", "spending", "effect", "futility_power")
    values = {k: options.pop(k) for k in keys}
    if not values.pop("sequential"):
        return None
    if not values["max_seeds"]:
        raise click.BadParameter("a sequential study needs its maximum seeds per fold", param_hint="--max-seeds")
    from clips.stats.sequential import SequentialPlan

    return SequentialPlan(**values)


class SeedRange(click.ParamType):
    """``N`` (seeds 0 to N-1) or ``A-B`` (seeds A to B): (first seed, number of seeds)."""

    name = "N|A-B"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        first, _, last = text.partition("-")
        try:
            a, b = (int(first), int(last)) if last else (0, int(first) - 1)
        except ValueError:
            a, b = 0, -1
        if a < 0 or b < a:
            self.fail(f"{text!r}: N (at least 1) or A-B with 0 <= A <= B", param, ctx)
        return a, b - a + 1


def _study_command(f):
    from clips.study.config import PRIMARY_CONTRASTS, SELECTIONS, StudyConfig

    d = _defaults(StudyConfig)
    for decorator in reversed([
        _opt("--curricula", default="", help="Comma-separated; default: every registered curriculum."),
        _opt("--seeds", default=str(d["seeds"]), type=SeedRange(),
             help="Seeds per fold, the same for every arm: N (seeds 0 to N-1) or A-B (only seeds A to B: a chunk of a "
                  "long study, on any machine; clips compare --per-patient a.csv,b.csv joins the chunks). A primary "
                  "contrast needs at least 3."),
        _opt("--earlier-chunks", default="",
             help="A.csv[,B.csv]: the per-patient tables of this study's earlier chunks (trained on other machines or "
                  "stores): their children are not trained again, and every look and the report include them."),
        _opt("--baseline-seeds", default=d["baseline_seeds"], type=click.IntRange(0),
             help="Seeds of the baseline when more than --seeds: 2 x --seeds gives the A/A calibration check as "
                  "many seeds per side as the contrasts (otherwise it splits the baseline's seeds in halves)."),
        _opt("--folds", default=d["folds"], type=click.IntRange(0),
             help="Cross-validation folds (>= 2): every patient is tested once per curriculum and seed; 0: one split."),
        _opt("--selection", default=d["selection"], type=click.Choice(SELECTIONS),
             help="Checkpoint: the best on an inner validation split of the training folds, or the last epoch."),
        _opt("--contrasts", default="",
             help="Primary contrasts VARIANT:REFERENCE,...; default: " + ",".join(PRIMARY_CONTRASTS) + "."),
        _opt("--exploratory", default=False, type=bool,
             help="true: declare no primary contrast (any number of seeds; every contrast is exploratory)."),
        _opt("--study-name", default=d["study_name"],
             help="Default clips-study-<profile>; the same name continues a study."),
        _opt("--split-seed", default=d["split_seed"], type=int, help="One split (outer folds) for every child."),
        _opt("--vary-inner-split", default=d["vary_inner_split"], type=bool,
             help="true: the inner validation split follows each child's seed (the outer folds stay fixed)."),
        _opt("--withdraw", default="",
             help="ARM[,ARM]: withdraw arms from the running study --study-name (their waiting jobs are "
                  "cancelled; the parent records when, and which results had been seen)."),
        _opt("--from-study", multiple=True, help="CURRICULUM:OPTUNA_STUDY: use that study's best parameters."),
        _opt("--reference", multiple=True,
             help="NAME=MODEL_URI: a fixed model evaluated (not trained) in every fold, an arm to compare with "
                  "(e.g. released=models:/tmtv-net-released/1)."),
        _opt("--peers", default="",
             help="Peer arms trained on the same folds and seeds by their own method (nnunet: nnU-Net v2, needs "
                  "clips[nnunet]); docs/peers.md."),
        _opt("--peer-option", multiple=True,
             help="NAME.KEY=VALUE: a peer's option (e.g. nnunet.budget=wall; `clips params --peer nnunet`)."),
        *_scaling_options(d, "the job queue and of --from-study"),
        _opt("--deadline", default=d["deadline"],
             help="This worker's deadline: an ISO date-time (UTC unless it says), +MINUTES, or slurm (the job's end "
                  "time); no job is claimed that the study's median child could not finish by then. SIGTERM or "
                  "SIGUSR1 (Slurm: --signal=B:USR1@300) make a worker hand its job back and exit 0."),
    ]):
        f = decorator(f)
    return f


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@_study_command
@_sequential_options
@click.option("--out", default="", help="Also write the comparison report to this folder.")
@click.option("-P", "--param", "params", multiple=True, help="Training parameter KEY=VALUE shared by every child.")
@_experiment_option
@click.pass_context
def study(ctx, curricula, contrasts, exploratory, withdraw, from_study, reference, peers, peer_option, out, join,
          params, experiment, **options):
    """Every curriculum x fold x seed as a child run with one training recipe, then the comparison report.

    The children are jobs in a queue (the Optuna storage): `clips study --join NAME --storage URL` adds workers,
    on this machine or others; the command that started the study waits for every job, then writes the report.
    """
    from clips.study.config import StudyConfig
    from clips.study.runner import join_study, run_study, withdraw_arms

    if withdraw:
        if not options["study_name"]:
            raise click.BadParameter("name the study whose arms to withdraw", param_hint="--study-name")
        _reachable(experiment)
        withdraw_arms(options["study_name"], _names(withdraw), options["storage"], log=click.echo)
        return
    train_params = {k: v for k, v in (_extra_options(ctx.args) | _params(params)).items() if str(v).strip() != ""}
    from clips.errors import Preempted
    from clips.scaling import preemption

    preemption.parse_deadline(options["deadline"])  # a malformed deadline is refused before any work
    preemption.install()  # SIGTERM, SIGUSR1: leave after the current step, the job handed back
    if join:
        _reachable()
        try:
            join_study(join, options["storage"], options["workers"], options["gpus"], machine=train_params,
                       log=click.echo, deadline=options["deadline"])
        except Preempted as exc:
            click.echo(f"{exc}: this worker's job is back in the queue; it left")
        return
    options["first_seed"], options["seeds"] = options["seeds"]
    plan = _plan(options)
    if plan is not None and ctx.get_parameter_source("seeds") == click.core.ParameterSource.DEFAULT:
        options["first_seed"], options["seeds"] = 0, plan.max_seeds  # every round; --seeds A-B: only those now
    tuned = _pairs(from_study, ":", "CURRICULUM:STUDY", "--from-study")
    references = _pairs(reference, "=", "NAME=MODEL_URI", "--reference")
    options["earlier_chunks"] = _names(options["earlier_chunks"])
    scfg = StudyConfig(curricula=_names(curricula), from_study=tuned, train=train_params, references=references,
                       sequential=dataclasses.asdict(plan) if plan else {},
                       peers=_names(peers), peer_options=_pairs(peer_option, "=", "NAME.KEY=VALUE", "--peer-option"),
                       **options,
                       **({"contrasts": []} if exploratory else {"contrasts": _names(contrasts)} if contrasts else {}))
    _reachable(experiment)
    try:
        result = run_study(scfg, log=click.echo, compare_out=out or None)
    except Preempted as exc:
        click.echo(f"{exc}: the study stopped with its finished children kept")
        return
    click.echo(result["summary"][["variant", "subset", "patients", "dice", "dice_ci_low", "dice_ci_high"]]
               .to_string(index=False))
    ui = f"in the MLflow UI (make ui): run {scfg.name()}, artifacts comparison/report.html"
    click.echo(f"report: {Path(out) / 'report.html'}, and {ui}" if out else f"report: {ui} (or give --out DIR)")


@cli.command()
@click.option("--experiment", default="", help="Experiment of the study runs (default: $MLFLOW_EXPERIMENT_NAME, "
              f"else {DEFAULT_EXPERIMENT}).")
@click.option("--parent", default="", help="The study's parent run (default: every study run of the experiment).")
@click.option("--per-patient", "per_patient", default="",
              help="Re-analyse a per-patient table instead (patient_id, curriculum, fold, seed, dice, ...): "
                   "a study's per_patient.csv or another tool's results, or several (a.csv,b.csv: a study's chunks, "
                   "analysed as their union); no MLflow needed.")
@click.option("--arm-column", default="curriculum", show_default=True,
              help="With --per-patient: the column that names the arms (e.g. recipe, for a table of recipes).")
@click.option("--checkpoint", default="delivered", show_default=True, type=click.Choice(["delivered", "last"]),
              help="The children's test tables of the network each delivered, or of its last epoch (both are "
                   "logged: the selection's own noise on the same trainings).")
@click.option("--contrasts", default="", help="Primary contrasts VARIANT:REFERENCE,... (default: the study's own; "
                                              "with --per-patient: none, every arm against the baseline).")
@click.option("--baseline", default="", help="The reference arm of the secondary contrasts and of the A/A check "
                                             "(default: none).")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@_sequential_options
def compare(experiment, parent, per_patient, arm_column, checkpoint, contrasts, baseline, out, **sequential):
    """Compare the arms of a study: contrasts tested with the training run as a random factor, the A/A check,
    power, figures, HTML (docs/study.md)."""
    from clips.curricula import BASELINE

    if per_patient:
        from clips.study.compare import compare_table

        compare_table(per_patient, out, _names(contrasts), baseline or BASELINE, log=click.echo,
                      arm_column=arm_column, plan=_plan(sequential))
        click.echo(f"report: {Path(out) / 'report.html'}")
        return
    from clips.study.compare import compare_experiment

    _reachable()
    compare_experiment(experiment, parent or None, out, _names(contrasts), log=click.echo, checkpoint=checkpoint,
                       plan=_plan(sequential))
    click.echo(f"report: {Path(out) / 'report.html'}")
