"""The ``clips`` command. Every CLIPS error is printed as one line (or one line per problem), never a traceback."""
from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from pathlib import Path

import click

# Progress bars of artifact downloads flood logs of long runs and workers.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# Library deprecation notices are not for our users (MLflow's server imports a deprecated Starlette module).
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", message=".*starlette.middleware.wsgi is deprecated.*")

from clips.data.layout import AFFINE_TOLERANCE_MM  # noqa: E402 - after the environment set-up above
from clips.errors import ClipsError  # noqa: E402
from clips.metrics.settings import CONNECTIVITIES, EvalSettings  # noqa: E402
from clips.tracking.schema import DEFAULT_EXPERIMENT, PRIVACY_MODES  # noqa: E402
from clips.tracking.server import GRANTABLE, PERMISSIONS, ServerConfig  # noqa: E402

_EVAL, _SERVER = EvalSettings(), ServerConfig()  # the option defaults of evaluate and server start


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


@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the cohort to.")
@click.option("--patients", default=24, show_default=True, type=click.IntRange(1, 10000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--spacing", default=4.0, show_default=True, type=click.FloatRange(min=1.0, max=12.0),
              help="Isotropic voxel size in mm.")
@click.option("--fov", default="560,300,1000", show_default=True, help="Field of view x,y,z in mm.")
@click.option("--preview", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG of coronal PET MIPs with the lesion outlines.")
@click.option("--layout", default="autopet", show_default=True, type=click.Choice(["autopet", "autopet-release"]),
              help="autopet: <patient>/{CTres,SUV,SEG}.nii.gz + cohort.csv; autopet-release: a miniature of the "
                   "public FDG-PET-CT-Lesions release (nested patient/study folders, fdg_metadata.csv).")
def synth(out, patients, seed, spacing, fov, preview, layout):
    """Generate an example whole-body PET/CT lymphoma cohort (autoPET layout + cohort.csv)."""
    from clips.data.preview import render_preview
    from clips.data.synth import SynthConfig, write_cohort

    try:
        fov_mm = tuple(float(v) for v in fov.split(","))
        assert len(fov_mm) == 3 and min(fov_mm) > 0
    except (ValueError, AssertionError):
        raise click.BadParameter(f"{fov!r}: expected three positive numbers x,y,z", param_hint="--fov") from None
    from clips.disk import ensure_writable

    ensure_writable(Path(out), "example cohort")
    cfg = SynthConfig(spacing_mm=(spacing,) * 3, fov_mm=fov_mm)
    if layout == "autopet-release":
        from clips.data.synth.release import write_release

        write_release(Path(out), patients, seed, cfg, log=click.echo)
        return
    path = write_cohort(Path(out), patients, seed, cfg)
    click.echo(f"wrote {patients} patients and {path}")
    if preview:
        click.echo(f"wrote {render_preview(out, preview, patients=patients)}")


@cli.group()
def data():
    """Inspect and validate cohorts."""


@data.command("check")
@click.argument("data_dir", type=click.Path())
@click.option("--affine-tol", default=AFFINE_TOLERANCE_MM, show_default=True,
              help="Tolerance (mm) between CT/SEG and PET affines.")
def data_check(data_dir, affine_tol):
    """Validate every patient; one line per problem; non-zero exit status if any."""
    from clips.data.check import check_cohort

    def show(files, problems):
        for p in problems:
            click.echo(str(p))

    report = check_cohort(data_dir, affine_tol, on_patient=show)
    n_bad = len(report.invalid_ids())
    click.echo(f"{len(report.valid)} valid, {n_bad} invalid patient(s), {len(report.problems)} problem(s)")
    sys.exit(1 if report.problems else 0)


@data.command("select")
@click.argument("release", type=click.Path(exists=True, file_okay=False))
@click.option("--metadata", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The release's metadata table (autoPET: fdg_metadata.csv).")
@click.option("--where", "where", multiple=True, help="COLUMN=VALUE[,VALUE...]: keep studies with one of the "
              "values (repeatable; all must hold), e.g. diagnosis=LYMPHOMA.")
@click.option("--negatives", default=0, show_default=True, type=click.IntRange(-1),
              help="Also take this many negative-control studies (empty SEG), at random; -1: all of them.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the negatives' draw.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder of links to the selected studies (nothing is copied); use it as data_dir.")
def data_select(release, metadata, where, negatives, seed, out):
    """Select studies of a public release by its metadata (autoPET: diagnosis=LYMPHOMA), as links, with
    selection.csv saying what was taken and why (docs/reproduce-autopet.md)."""
    from clips.data.release import Selection, select

    values = {k: [v.strip() for v in vals.split("|") if v.strip()] for k, vals in
              _pairs([w.replace(",", "|") for w in where], "=", "COLUMN=VALUE", "--where").items()}
    select(Path(release).resolve(), Path(metadata), Selection(values, negatives, seed), Path(out), log=click.echo)


@data.command("export-nnunet")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="nnU-Net base folder: nnUNet_raw/ and nnUNet_preprocessed/ are written under it.")
@click.option("--folds-from", "folds_from", default="", help="Use the splits of this study's children (its name).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="With --folds-from: the child seed whose inner validation split to take.")
@click.option("--id", "dataset_id", default=500, show_default=True, type=click.IntRange(1, 999),
              help="nnU-Net dataset id (of fold 0; fold k gets id + k).")
@click.option("--name", default="CLIPS", show_default=True, help="nnU-Net dataset name.")
@click.option("--copy", is_flag=True, help="Copy the images instead of linking them.")
@click.option("-P", "--param", "params", multiple=True,
              help="Training parameter deciding the split, KEY=VALUE (folds, split_seed, val_fraction, profile, ...).")
def data_export_nnunet(data_dir, out, folds_from, seed, dataset_id, name, copy, params):
    """Write the cohort and CLIPS's splits (a study's folds with --folds-from) in nnU-Net v2's raw format, with
    splits_final.json so that nnU-Net trains and validates on CLIPS's patients (docs/data.md)."""
    from clips.export.nnunet import export_nnunet, split_params_of_study

    given = _params(params)
    if folds_from:
        _reachable()
        given = split_params_of_study(folds_from, seed) | given
    done = export_nnunet(Path(data_dir), Path(out), given, dataset_id, name, copy, log=click.echo)
    click.echo(f"{len(done)} dataset(s); then: export nnUNet_raw={Path(out).resolve()}/nnUNet_raw "
               f"nnUNet_preprocessed={Path(out).resolve()}/nnUNet_preprocessed; nnUNetv2_plan_and_preprocess "
               f"-d {dataset_id}")


@data.command("import-dicom")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Cohort folder to write (autoPET layout).")
def data_import_dicom(src, out):
    """DICOM PET/CT (a PACS export, any order and nesting) to SUV.nii.gz, CTres.nii.gz (and SEG.nii.gz from a
    DICOM SEG) per study; OUT/import_report.csv lists every series used or skipped. Exit status 1 if any patient
    could not be converted (the others are)."""
    from clips.data.dicom import import_dicom
    from clips.disk import ensure_writable

    ensure_writable(Path(out), "DICOM import")
    result = import_dicom(Path(src), Path(out), log=click.echo)
    click.echo(f"{len(result.converted)} case(s) converted, {len(result.failed)} refused; report: {result.report}")
    sys.exit(1 if result.failed or not result.converted else 0)


@data.command("preview")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--patients", default=24, show_default=True, type=click.IntRange(1, 200),
              help="How many patients (sorted by id).")
@click.option("--suv-max", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Upper end of the grey scale (SUV).")
def data_preview(data_dir, out, patients, suv_max):
    """Picture of a cohort: coronal PET maximum-intensity projections with the lesion outlines."""
    from clips.data.preview import render_preview

    try:
        click.echo(f"wrote {render_preview(data_dir, out, patients=patients, suv_max=suv_max)}")
    except FileNotFoundError as exc:
        raise ClipsError(str(exc)) from None


@data.command("fix-labels")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--dry-run", is_flag=True, help="Say what would be rewritten; write nothing.")
def data_fix_labels(paths, dry_run):
    """Rewrite float label files whose values are exactly 0/1 as uint8 (lossless, in place).

    PATHS are label or prediction files, cohort folders (their label files, any layout)
    or prediction folders (the NIfTI files in them).
    Exits 1 if any file could not be fixed; those are left untouched.
    """
    from clips.data.fix_labels import fix_labels

    results = fix_labels(paths, dry_run, on_file=lambda r: click.echo(str(r)))
    counts = {s: sum(r.status == s for r in results) for s in ("rewritten", "unchanged", "refused")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    sys.exit(1 if counts["refused"] else 0)


@data.command("difficulty")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="CSV file to write.")
@click.option("--profile", default="smoke", show_default=True, help="Take the preprocessing spacing from this profile.")
@click.option("--spacing", default=None, type=click.FloatRange(min=0.5),
              help="Isotropic spacing in mm (overrides the profile's).")
@click.option("--skip-invalid", is_flag=True, help="Leave invalid patients out instead of stopping.")
def data_difficulty(data_dir, out, profile, spacing, skip_invalid):
    """Per-patient difficulty features and every score (higher = harder), as a run logs them.

    The same computation as a run's tables/difficulty.json, over every patient of the cohort,
    so the ordering the curricula use can be inspected before training (docs/curricula.md).
    """
    from clips.config import build_config
    from clips.curricula.difficulty import difficulty_of_cohort
    from clips.data.cohort import load_cohort
    from clips.data.preprocess import PreprocessConfig
    from clips.paths import clips_home

    cfg = build_config({"profile": profile} | ({"spacing_mm": str(spacing)} if spacing else {}))
    cohort = load_cohort(data_dir, clips_home() / "cache", PreprocessConfig(cfg.spacing_mm), 0, cfg.val_fraction,
                         cfg.test_fraction, skip_invalid, log=click.echo)
    table = difficulty_of_cohort(cohort, cfg.spacing_mm).sort_values("score_cohort", ascending=False)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    click.echo(f"{len(table)} patients, hardest first by the cohort score, in {out}")


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
              help="YAML file of parameters (e.g. experiments/none.yaml).")
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
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True)
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


@cli.command()
@click.option("--data-dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Cohort with SUV and SEG per patient (any layout CLIPS reads).")
@click.option("--pred-dir", type=click.Path(file_okay=False),
              help="Predicted masks, <patient_id>.nii.gz or <patient_id>_SEG.nii.gz.")
@click.option("--model-uri", help="Predict with this model first (e.g. models:/clips-tmtv@champion, runs:/ID/model).")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--tolerance-mm", default=_EVAL.tolerance_mm, show_default=True,
              type=click.FloatRange(min=0, min_open=True))
@click.option("--suv-threshold", default=str(_EVAL.suv_threshold), show_default=True, help="SUV threshold, or 'none'.")
@click.option("--connectivity", default=str(_EVAL.connectivity), show_default=True,
              type=click.Choice([str(n) for n in CONNECTIVITIES]), callback=lambda c, p, v: int(v))
@click.option("--lesion-threshold", default=_EVAL.lesion_threshold, show_default=True, type=click.FloatRange(0, 1))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes.")
@click.option("--mlflow/--no-mlflow", "use_mlflow", default=None,
              help="Log to MLflow (default: only inside 'mlflow run').")
@click.option("--privacy", default=PRIVACY_MODES[0], show_default=True, type=click.Choice(PRIVACY_MODES),
              help="Patient ids in what is logged (auto: pseudonyms on a shared server).")
def evaluate(data_dir, pred_dir, model_uri, out, tolerance_mm, suv_threshold, connectivity, lesion_threshold,
             workers, use_mlflow, privacy):
    """Per-patient metrics of predictions against the ground truth: table, reports, summary."""
    import os

    from clips.metrics.cohort import evaluate_cohort, write_outputs

    if bool(pred_dir) == bool(model_uri):
        raise click.UsageError("give exactly one of --pred-dir and --model-uri")
    try:
        thr = None if suv_threshold.strip().lower() == "none" else float(suv_threshold)
    except ValueError:
        raise click.BadParameter(f"{suv_threshold!r}: a number or 'none'", param_hint="--suv-threshold") from None
    settings = EvalSettings(tolerance_mm, thr, connectivity, lesion_threshold)
    from clips.disk import ensure_writable

    out = ensure_writable(Path(out), "evaluation output", min_free_mb=50)
    if use_mlflow is None:
        use_mlflow = bool(os.environ.get("MLFLOW_RUN_ID"))
    if model_uri or use_mlflow:  # it talks to the tracking store: check it first, as every command does
        _reachable()
    if model_uri:
        pred_dir = out / "predictions"
        _predict_cohort(model_uri, data_dir, pred_dir)
    result = evaluate_cohort(data_dir, pred_dir, settings, workers, log=click.echo)

    summary = write_outputs(result, out)  # local outputs: real ids
    if use_mlflow:
        from clips.tracking.evaluation import log_evaluation_run

        log_evaluation_run(result, data_dir, model_uri, privacy)
    d = summary["columns"]["dice"]
    click.echo(f"{summary['patients']} patient(s) evaluated, {len(result.errors)} error(s); "
               f"mean Dice {d['mean'] if d['mean'] is not None else float('nan'):.4f}; results in {out}")
    sys.exit(1 if result.errors else 0)


def _predict_cohort(model_uri: str, data_dir, pred_dir: Path) -> None:
    from clips.inference.predict import predict_path

    for line in predict_path(model_uri, Path(data_dir), pred_dir):
        if line.startswith("error:"):
            click.echo(line)


def _reachable(experiment: str | None = None):
    """Fail with one line when the tracking server is down; with ``experiment`` (a command that starts runs),
    send the runs to that experiment ("" : $MLFLOW_EXPERIMENT_NAME, else "clips")."""
    import mlflow

    from clips.tracking.server import require_reachable

    require_reachable(mlflow.get_tracking_uri())
    if experiment is not None:
        from clips.tracking.runs import use_experiment

        use_experiment(experiment)


# ----------------------------------------------------------------------------- server
@cli.group()
def server():
    """The shared tracking server (tracking_server/README.md)."""


def _server_options(f):
    for opt in reversed([
        click.option("--backend-store-uri", envvar="CLIPS_SERVER_DB", show_default=True,
                     default=_SERVER.backend_store_uri,
                     help="PostgreSQL URL of the tracking database."),
    ]):
        f = opt(f)
    return f


@server.command("start")
@_server_options
@click.option("--artifacts-destination", envvar="CLIPS_SERVER_ARTIFACTS", default=_SERVER.artifacts_destination,
              show_default=True, help="Folder (or s3://bucket/prefix) where the server keeps artifacts.")
@click.option("--host", default=_SERVER.host, show_default=True)
@click.option("--port", default=_SERVER.port, show_default=True, type=int)
@click.option("--workers", default=_SERVER.workers, show_default=True, type=click.IntRange(1, 64))
@click.option("--auth/--no-auth", default=_SERVER.auth, show_default=True, help="MLflow's basic-auth app.")
@click.option("--admin-username", default=_SERVER.admin_username, show_default=True)
@click.option("--admin-password-file", default="", help="Else $MLFLOW_AUTH_ADMIN_PASSWORD.")
@click.option("--secret-key-file", default="", help="Else $MLFLOW_FLASK_SERVER_SECRET_KEY.")
@click.option("--default-permission", default=_SERVER.default_permission, show_default=True,
              type=click.Choice(PERMISSIONS))
@click.option("--auth-db-uri", default="", help="Database of the accounts (default: <backend db>_auth).")
@click.option("--auth-cache-ttl", "auth_cache_ttl_s", default=_SERVER.auth_cache_ttl_s, show_default=True,
              type=click.IntRange(0, 3600), help="Seconds a worker trusts a password it checked (0: check every "
              "request; tracking_server/README.md, security).")
@click.option("--allowed-hosts", default="", help="Comma-separated Host headers to accept.")
@click.option("--runtime-dir", default="",
              help="Where the generated auth config goes (default ~/.config/clips-server).")
@click.option("--certfile", envvar="CLIPS_SERVER_CERTFILE", default="",
              help="TLS certificate (PEM): with --keyfile the server speaks HTTPS only (clips server make-cert).")
@click.option("--keyfile", envvar="CLIPS_SERVER_KEYFILE", default="", help="Its private key (PEM, mode 600).")
@click.option("--print-command", is_flag=True, help="Print the mlflow server command line and exit.")
def server_start(backend_store_uri, artifacts_destination, host, port, workers, auth, admin_username,
                 admin_password_file, secret_key_file, default_permission, auth_db_uri, auth_cache_ttl_s,
                 allowed_hosts, runtime_dir, certfile, keyfile, print_command):
    """Start the MLflow tracking server (PostgreSQL, served artifacts, basic auth)."""
    from clips.tracking.server import server_command

    cfg = ServerConfig(
        backend_store_uri=backend_store_uri, artifacts_destination=artifacts_destination, host=host, port=port,
        workers=workers, auth=auth, auth_db_uri=auth_db_uri, admin_username=admin_username,
        admin_password_file=admin_password_file, secret_key_file=secret_key_file,
        default_permission=default_permission, auth_cache_ttl_s=auth_cache_ttl_s,
        allowed_hosts=[h for h in allowed_hosts.split(",") if h],
        runtime_dir=runtime_dir, certfile=certfile, keyfile=keyfile)
    cmd, env = server_command(cfg)
    if print_command:
        click.echo(" ".join(cmd))
        return
    click.echo(f"tracking server on {cfg.scheme}://{host}:{port} (health: /health), database "
               f"{backend_store_uri.split('@')[-1]}, artifacts {artifacts_destination}")
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)


@server.command("make-cert")
@click.option("--host", "hosts", multiple=True, required=True,
              help="A name or address clients reach the server by (repeatable; the first is the subject).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for server.crt and server.key.")
@click.option("--days", default=825, show_default=True, type=click.IntRange(1, 825))
def server_make_cert(hosts, out, days):
    """A self-signed TLS certificate for a lab without a hospital CA (tracking_server/README.md, TLS)."""
    from clips.tracking.certificates import CA_ENV, make_self_signed

    cert, key = make_self_signed(list(hosts), Path(out), days)
    click.echo(f"wrote {cert} and {key} (mode 600), valid {days} days for {', '.join(hosts)}")
    click.echo(f"  server: clips server start --certfile {cert} --keyfile {key} ...")
    click.echo(f"  each client: copy {cert.name} over (it holds no secret) and export {CA_ENV}=/path/to/{cert.name}")


@server.command("upgrade")
@_server_options
@click.option("--yes", is_flag=True, help="Confirm that the database has been backed up.")
def server_upgrade(backend_store_uri, yes):
    """Migrate the tracking database to this MLflow's schema (back it up first)."""
    from clips.tracking.server import schema_state, upgrade

    current, head = schema_state(backend_store_uri)
    if current == head:
        click.echo(f"schema already at {head}")
        return
    if not yes:
        raise click.UsageError("back up the database first (tracking_server/README.md), then pass --yes")
    before, after = upgrade(backend_store_uri)
    click.echo(f"schema upgraded from {before or 'empty'} to {after}")


@server.command("health")
@click.option("--url", envvar="MLFLOW_TRACKING_URI", required=True)
def server_health(url):
    """Exit 0 when the server answers GET /health."""
    from clips.tracking.server import health

    ok = health(url)
    click.echo(f"{url}: {'ok' if ok else 'not answering'}")
    sys.exit(0 if ok else 1)


@server.group("user")
def server_user():
    """Accounts and permissions (as the admin: MLFLOW_TRACKING_USERNAME/PASSWORD)."""


@server_user.command("add")
@click.argument("name")
@click.option("--permission", required=True, type=click.Choice(GRANTABLE))
@click.option("--experiment", default="", help="Experiment name; default: every experiment and registered model.")
@click.option("--password-env", default="CLIPS_NEW_USER_PASSWORD", show_default=True,
              help="Environment variable holding the new user's password (else prompted).")
def server_user_add(name, permission, experiment, password_env):
    """Create an account (or update its permission) through MLflow's auth API."""
    from clips.tracking.accounts import add_user

    _reachable()
    password = os.environ.get(password_env) or click.prompt(f"password for {name}", hide_input=True,
                                                           confirmation_prompt=True)
    for line in add_user(name, password, permission, experiment):
        click.echo(line)


# ----------------------------------------------------------------------------- runs
@cli.group()
def runs():
    """Housekeeping of runs."""


@runs.command("reap")
@click.option("--older-than", "hours", required=True, type=click.FloatRange(min=0),
              help="Hours without a sign of life.")
@click.option("--experiment", default="", help="Only this experiment (default: all).")
@click.option("--dry-run", is_flag=True)
def runs_reap(hours, experiment, dry_run):
    """Mark runs left RUNNING by a killed process as FAILED."""
    from clips.tracking.reap import reap

    _reachable()
    for run, age in reap(hours, experiment or None, dry_run):
        click.echo(f"{'would mark' if dry_run else 'marked'} {run.info.run_id} ({run.info.run_name}) FAILED: "
                   f"no sign of life for {age:.1f} h")


# ----------------------------------------------------------------------------- models brought in
@cli.group()
def model():
    """Models from outside CLIPS (the released TMTV-Net, nnU-Net model folders)."""


def _provenance_options(f):
    """What the registered model carries about its weights (clips/registry/provenance.py)."""
    from clips.registry.provenance import NOT_STATED, RESEARCH_ONLY

    for name, default, text in (
            ("--intended-use", RESEARCH_ONLY, "Intended use, on the registered model and its exports."),
            ("--licence", NOT_STATED, "The weights' licence, e.g. CC-BY-SA-4.0."),
            ("--source", NOT_STATED, "Where the weights come from: a DOI or URL."),
            ("--training-data", NOT_STATED, "What the weights were trained on, as you state it.")):
        f = click.option(name, default=default, show_default=True, help=text)(f)
    return f


def _provenance(intended_use, licence, source, training_data):
    from clips.registry.provenance import Provenance

    return Provenance(intended_use, licence, source, training_data)


@model.command("import-tmtvnet")
@click.option("--ensemble", default="", type=click.Path(dir_okay=False), help="e_latest.model (stage 1).")
@click.option("--refiner", default="", type=click.Path(dir_okay=False), help="r_latest.model (stage 2).")
@click.option("--register", default="tmtv-net-released", show_default=True,
              help="Registered model name ('' to log without registering).")
@_provenance_options
@_experiment_option
def model_import_tmtvnet(ensemble, refiner, register, intended_use, licence, source, training_data, experiment):
    """Log the released TMTV-Net's files as one MLflow model (weights as artifacts, no pickled code) and
    register it; then clips predict/evaluate --model-uri models:/tmtv-net-released/1 run it (docs/tmtv_net.md)."""
    from clips.registry.tmtv_net_import import import_released

    _reachable(experiment)
    import_released(ensemble or None, refiner or None, register,
                    _provenance(intended_use, licence, source, training_data), log=click.echo)


@model.command("import-nnunet")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True, help="Registered model name ('' to log without registering).")
@click.option("--folds", default="", help="0,1,2 or all (nnU-Net's fold_all); default: every fold_k present.")
@click.option("--checkpoint", default="final", show_default=True, type=click.Choice(["final", "best"]))
@click.option("--channels", default="", help="Cohort image per model channel, e.g. CT=0,SUV=1 (PET=1: the model's "
                                              "unit; see docs/references.md); default: from dataset.json's names.")
@click.option("--ensemble", default="union", show_default=True, type=click.Choice(["union", "mean"]),
              help="Several folders: union of their masks, or mean of their probabilities (nnU-Net's ensemble).")
@click.option("--mirroring/--no-mirroring", default=True, show_default=True,
              help="nnU-Net's test-time mirroring (nnUNetv2_predict --disable_tta: off).")
@_provenance_options
@_experiment_option
def model_import_nnunet(folders, name, folds, checkpoint, channels, ensemble, mirroring, intended_use, licence,
                        source, training_data, experiment):
    """Trained nnU-Net v2 model folders (LyROI, the autoPET III winner, your own) as one registered MLflow model,
    run by nnU-Net's own predictor; then clips predict/evaluate --model-uri and clips study --reference use it
    (docs/references.md)."""
    from clips.models.nnunet.predictor import Settings
    from clips.registry.nnunet_import import import_nnunet

    _reachable(experiment)
    import_nnunet(list(folders), name, folds, checkpoint, channels, Settings(ensemble=ensemble, mirroring=mirroring),
                  _provenance(intended_use, licence, source, training_data), log=click.echo)


# ----------------------------------------------------------------------------- registry
@cli.command()
@click.option("--experiment", default=DEFAULT_EXPERIMENT, show_default=True,
              help="Experiment whose best finished run is the challenger.")
@click.option("--model-name", default="clips-tmtv", show_default=True)
@click.option("--metric", default="dice", show_default=True, help="Test-set column, as test_<metric>_mean.")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--run-id", default="", help="Use this run as the challenger instead of the best one.")
def promote(experiment, model_name, metric, alpha, run_id):
    """Register the best run's model and promote it to champion if the evidence says so."""
    from clips.registry.promote import promote as run_promotion

    _reachable()
    decision = run_promotion(experiment, model_name, metric, alpha, run_id or None)
    click.echo(str(decision))
    for k, v in decision.evidence.items():
        click.echo(f"  {k}: {v}")


@cli.command()
@click.option("--model-uri", "--model", "model_uri", required=True,
              help="e.g. models:/clips-tmtv@champion, runs:/ID/model (--model is the older name).")
@click.option("--input", "input_path", required=True, type=click.Path(exists=True, file_okay=False),
              help="A patient folder (CTres.nii.gz, SUV.nii.gz) or a cohort folder.")
@click.option("--out", required=True, type=click.Path(), help="MASK.nii.gz for one patient, a folder for a cohort.")
@click.option("--dicom-seg", is_flag=True,
              help="Also write each mask as a DICOM SEG over the PET series it was imported from (import-dicom).")
def predict(model_uri, input_path, out, dicom_seg):
    """Segment one patient (or a folder of patients) with a registered model; mask and a TMTV report."""
    from clips.disk import ensure_writable
    from clips.inference.predict import predict_path

    ensure_writable(Path(out).parent if str(out).endswith(".nii.gz") else Path(out), "prediction output", 50)
    _reachable()
    errors = 0
    for line in predict_path(model_uri, Path(input_path), Path(out), dicom_seg=dicom_seg):
        click.echo(line)
        errors += line.startswith("error:")
    sys.exit(1 if errors else 0)


@cli.group()
def export():
    """A model in another tool's format (a MONAI bundle)."""


@export.command("monai-bundle")
@click.option("--model-uri", "--model", "model_uri", required=True,
              help="e.g. models:/clips-tmtv@champion, runs:/ID/model.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New folder for the bundle.")
def export_monai_bundle(model_uri, out):
    """Write a MONAI bundle of a CLIPS model: configs/metadata.json, configs/inference.json (MONAI transforms,
    DynUNet, sliding windows), models/model.pt, docs/README.md with its figures and evidence (docs/export.md)."""
    from clips.export.monai_bundle import export_bundle

    _reachable()
    path = export_bundle(model_uri, Path(out))
    click.echo(f"MONAI bundle of {model_uri}: {path}")
    click.echo(f"  python -m monai.bundle run --config_file {path}/configs/inference.json --bundle_root {path} "
               "--dataset_dir CASES")


def main():
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
