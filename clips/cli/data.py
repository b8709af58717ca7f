"""The example cohort and the cohort commands: ``clips synth``, ``clips data check|select|export-nnunet|
import-dicom|preview|fix-labels|difficulty``."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from clips.cli._common import _pairs, _params, _reachable, cli
from clips.data.layout import AFFINE_TOLERANCE_MM
from clips.errors import ClipsError
from clips.paths import DEFAULT_PROFILE


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
    except ValueError:
        fov_mm = ()
    if len(fov_mm) != 3 or min(fov_mm) <= 0:
        raise click.BadParameter(f"{fov!r}: expected three positive numbers x,y,z", param_hint="--fov")
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
@click.option("--profile", default=DEFAULT_PROFILE, show_default=True,
              help="Take the preprocessing spacing from this profile.")
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
    from clips.training.cohort import load_data

    cfg = build_config({"profile": profile, "data_dir": data_dir, "skip_invalid": str(skip_invalid).lower()}
                       | ({"spacing_mm": str(spacing)} if spacing else {}))
    _, cohort = load_data(cfg, log=click.echo)
    table = difficulty_of_cohort(cohort, cfg.spacing_mm).sort_values("score_cohort", ascending=False)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    click.echo(f"{len(table)} patients, hardest first by the cohort score, in {out}")
