"""Models in use: ``clips evaluate``, ``clips predict``, ``clips promote``, ``clips model
import-tmtvnet|import-nnunet``, ``clips export monai-bundle``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from clips.cli._common import _experiment_option, _reachable, cli
from clips.metrics.settings import CONNECTIVITIES, EvalSettings
from clips.tracking.schema import DEFAULT_EXPERIMENT, PRIVACY_MODES

_EVAL = EvalSettings()  # the option defaults of evaluate: the metric suite's settings


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
@click.option("--experiment", default="", help="Experiment whose best finished run is the challenger (default: "
              f"$MLFLOW_EXPERIMENT_NAME, else {DEFAULT_EXPERIMENT}).")
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
