"""The ``clips`` command. Every CLIPS error is printed as one line (or one line per problem), never a traceback."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

# Progress bars of artifact downloads flood logs of long runs and workers.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from clips.errors import ClipsError


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-P")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """CLIPS: curriculum learning for lymphoma segmentation on whole-body FDG PET/CT."""


@cli.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the cohort to.")
@click.option("--patients", default=24, show_default=True, type=click.IntRange(1, 10000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--spacing", default=4.0, show_default=True, type=click.FloatRange(min=1.0, max=12.0),
              help="Isotropic voxel size in mm.")
@click.option("--fov", default="560,300,1000", show_default=True, help="Field of view x,y,z in mm.")
def synth(out, patients, seed, spacing, fov):
    """Generate an example whole-body PET/CT lymphoma cohort (autoPET layout + cohort.csv)."""
    from clips.data.synth import SynthConfig, write_cohort

    try:
        fov_mm = tuple(float(v) for v in fov.split(","))
        assert len(fov_mm) == 3 and min(fov_mm) > 0
    except (ValueError, AssertionError):
        raise click.BadParameter(f"{fov!r}: expected three positive numbers x,y,z", param_hint="--fov") from None
    path = write_cohort(Path(out), patients, seed, SynthConfig(spacing_mm=(spacing,) * 3, fov_mm=fov_mm))
    click.echo(f"wrote {patients} patients and {path}")


@cli.group()
def data():
    """Inspect and validate cohorts."""


@data.command("check")
@click.argument("data_dir", type=click.Path())
@click.option("--affine-tol", default=1e-2, show_default=True, help="Tolerance (mm) between CT/SEG and PET affines.")
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


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--curriculum", default=None, help="Curriculum name (see docs/curricula.md).")
@click.option("--profile", default=None, help="smoke, cpu or gpu (experiments/profiles.yaml).")
@click.option("--data-dir", default=None, help="Cohort folder; default: the generated example cohort.")
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="YAML file of parameters (e.g. experiments/none.yaml).")
@click.option("--config-if-set", "config_if_set", default="", hidden=True)  # MLproject passes '' for "none"
@click.option("--resume", default=None, help="Run id to resume from its last checkpoint.")
@click.option("-P", "--param", "params", multiple=True, help="Any parameter, KEY=VALUE (repeatable).")
@click.pass_context
def train(ctx, curriculum, profile, data_dir, config_file, config_if_set, resume, params):
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
    result = run_training(cfg, log=click.echo)
    click.echo(f"run {result.run_id}: best val Dice {result.best_val_dice:.4f} at epoch {result.best_epoch + 1}")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--curriculum", required=True, help="The curriculum whose schedule to tune.")
@click.option("--n-trials", default=10, show_default=True, type=click.IntRange(1))
@click.option("--storage", default="", help="Optuna storage URL (postgresql://... to share); default: SQLite beside the MLflow store.")
@click.option("--study-name", default="", help="Default: clips-<curriculum>-<profile>.")
@click.option("--timeout-min", default=0.0, type=click.FloatRange(0), help="Stop starting trials after this many minutes (0: never).")
@click.option("--objective", default="dice", show_default=True, help="[-]<column>[@hard] of the per-patient validation table.")
@click.option("--pruner", default="median", show_default=True, type=click.Choice(["median", "hyperband", "none"]))
@click.option("--warmup-epochs", default=-1, type=int, help="Epochs before pruning (-1: the longest ramp of the space).")
@click.option("--seed", default=0, type=int, help="Seed of the TPE sampler.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Local worker processes.")
@click.option("--tune-lr", default=False, type=bool, help="Add the common space (learning rate).")
@click.option("--retry-failed", default=1, show_default=True, type=click.IntRange(0), help="Re-run a dead worker's trial at most N times.")
@click.option("--heartbeat-s", default=60, show_default=True, type=click.IntRange(1))
@click.option("--space-file", default="", help="Search spaces YAML (default experiments/search_spaces.yaml).")
@click.option("--worker-of", default="", hidden=True)
@click.option("--worker-index", default=0, type=int, hidden=True)
@click.option("-P", "--param", "params", multiple=True, help="Training parameter KEY=VALUE (profile, data_dir, epochs, ...).")
@click.pass_context
def tune(ctx, curriculum, n_trials, storage, study_name, timeout_min, objective, pruner, warmup_epochs, seed, workers,
         tune_lr, retry_failed, heartbeat_s, space_file, worker_of, worker_index, params):
    """Tune a curriculum's schedule with Optuna; every trial is a child MLflow run."""
    from clips.tuning.study import TuneConfig, prepare, run_tuning, run_worker

    train_params = {k: v for k, v in (_extra_options(ctx.args) | _params(params)).items() if str(v).strip() != ""}
    tcfg = TuneConfig(curriculum, n_trials, storage, study_name, timeout_min, objective, pruner, warmup_epochs, seed,
                      workers, tune_lr, retry_failed, heartbeat_s, space_file, train_params)
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
@click.option("--tolerance-mm", default=5.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--suv-threshold", default="4.0", show_default=True, help="SUV threshold, or 'none'.")
@click.option("--connectivity", default=6, show_default=True, type=click.Choice(["6", "18", "26"]), callback=lambda c, p, v: int(v))
@click.option("--lesion-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes.")
@click.option("--mlflow/--no-mlflow", "use_mlflow", default=None,
              help="Log to MLflow (default: only inside 'mlflow run').")
def evaluate(data_dir, pred_dir, model_uri, out, tolerance_mm, suv_threshold, connectivity, lesion_threshold,
             workers, use_mlflow):
    """Per-patient metrics of predictions against the ground truth: table, reports, summary."""
    import os

    from clips.metrics.cohort import evaluate_cohort, write_outputs
    from clips.metrics.patient import EvalSettings

    if bool(pred_dir) == bool(model_uri):
        raise click.UsageError("give exactly one of --pred-dir and --model-uri")
    try:
        thr = None if suv_threshold.strip().lower() == "none" else float(suv_threshold)
    except ValueError:
        raise click.BadParameter(f"{suv_threshold!r}: a number or 'none'", param_hint="--suv-threshold") from None
    settings = EvalSettings(tolerance_mm, thr, connectivity, lesion_threshold)
    out = Path(out)
    if model_uri:
        pred_dir = out / "predictions"
        _predict_cohort(model_uri, data_dir, pred_dir)
    result = evaluate_cohort(data_dir, pred_dir, settings, workers, log=click.echo)
    if use_mlflow is None:
        use_mlflow = bool(os.environ.get("MLFLOW_RUN_ID"))
    if use_mlflow:
        import mlflow

        from clips.tracking.evaluation import log_evaluation

        with mlflow.start_run():
            mlflow.log_params({"cfg.data_dir": str(data_dir), "cfg.model_uri": model_uri or "",
                               **{f"cfg.{k}": v for k, v in settings.describe().items()}})
            summary = log_evaluation(result, "eval", out_dir=out)
    else:
        summary = write_outputs(result, out)
    d = summary["columns"]["dice"]
    click.echo(f"{summary['patients']} patient(s) evaluated, {len(result.errors)} error(s); "
               f"mean Dice {d['mean'] if d['mean'] is not None else float('nan'):.4f}; results in {out}")
    sys.exit(1 if result.errors else 0)


def _predict_cohort(model_uri: str, data_dir, pred_dir: Path) -> None:
    import mlflow.pytorch

    from clips.data.io import save_mask
    from clips.data.layout import discover
    from clips.errors import DataError
    from clips.tracking.model import model_preprocessing
    from clips.training.inference import predict_files

    prep = model_preprocessing(model_uri)
    model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    pred_dir.mkdir(parents=True, exist_ok=True)
    for files in discover(data_dir):
        try:
            mask, vols = predict_files(model, files, prep["spacing_mm"], prep["patch_size"], prep.get("sw_overlap", 0.25))
        except DataError as exc:
            click.echo(f"error: {exc}")
            continue
        save_mask(mask, vols.affine, pred_dir / f"{files.patient_id}.nii.gz")


def main():
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ClipsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
