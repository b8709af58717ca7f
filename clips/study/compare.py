"""``clips compare``: which curriculum helps which patients, and how sure we can be. One HTML report.

Reads the test-set per-patient tables of a study's children (in a cross-validated study,
every patient of the cohort, once per curriculum and seed), or a per-patient table exported from
a study or from another tool (``clips compare --per-patient FILE.csv``), then: per variant, the mean and
a 95% patient-level bootstrap interval of every figure of merit, for all test patients and
for the hard ones; the declared contrasts (clips/study/contrasts.py), tested with the training run
as a random factor, with the A/A calibration check, the variance components and the power derived from
them, and the correlation of the difficulty score with the baseline's error; figures (the sign-flip
null distribution among them); a self-contained HTML report (images inlined, no network needed) and
the tables as CSV (per_patient.csv, paired.csv, comparison.csv).
"""
from __future__ import annotations

import base64
import html
import io
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from clips.curricula import BASELINE, REGISTRY  # noqa: E402
from clips.data.cohort import hard_ids  # noqa: E402
from clips.errors import ClipsError  # noqa: E402
from clips.metrics.figures import draw_bland_altman  # noqa: E402
from clips.stats.paired import DETECTION, MEASURES, bootstrap_ci  # noqa: E402
from clips.stats.run_aware import balanced_core, pair_runs, sign_flip  # noqa: E402
from clips.study.config import PRIMARY_CONTRASTS  # noqa: E402
from clips.study.contrasts import (  # noqa: E402
    CALIBRATION,
    PAIRED_MEASURES,
    calibration,
    calibration_statement,
    contrast_pairs,
    difficulty_statement,
    paired_table,
    power_statement,
    sequential_statement,
    sequential_tables,
)
from clips.tracking import schema  # noqa: E402
from clips.tracking.tables import run_table  # noqa: E402

NO_PAIRS = "no paired comparison: no contrast has both of its arms in this study"
CONTRAST_NOTE = ("Variant minus reference per patient and run pair (the two arms' runs with the same fold and "
                 "seed), averaged over patients and seeds. Interval and p_value: the crossed random-effects model "
                 "(patient x training run; every test patient of a fold shares its trained network), Satterthwaite "
                 "t; p_randomisation: exact sign flips of whole run pairs; p_holm: Holm's adjustment of the larger "
                 "of the two within each family, subset and measure. The claim covers this cohort, averaged over "
                 "training randomness, not new cohorts. For hd95_mm and tmtv_abs_rel_error a negative difference "
                 "is an improvement. docs/study.md explains how to read it.")
SUMMARY_NOTE = ("Mean [95% bootstrap interval over patients] per arm: a description of each arm. It ignores that a "
                "fold's patients share one trained network, so it is narrower than the truth; compare arms with the "
                "contrasts below, never by overlapping intervals.")


def _display_order(run):
    """One order in every table and figure: the baseline, then the registry's order, then seeds."""
    known, variant = list(REGISTRY), run.data.params.get(schema.CURRICULUM_PARAM, "")
    return (known.index(variant) if variant in known else len(known), variant,
            int(run.data.params.get(schema.SEED_PARAM, 0)))


CHECKPOINTS = {"delivered": schema.TEST_TABLE, "last": schema.LAST_TEST_TABLE}  # clips compare --checkpoint


def collect(experiment_id: str, parent_id: str | None = None, checkpoint: str = "delivered"):
    """(per-patient test rows of every finished child, learning curves, hard patient ids or None).

    ``checkpoint``: the test table of the network each child delivered, or of its last epoch's (a child logs both:
    the selection's own noise on identical trajectories). Each row also carries its run's ``collapsed`` (0/1: the
    tag clips.collapsed) and ``best_epoch``."""
    client = MlflowClient()
    filt = f"attributes.status = 'FINISHED' and {schema.tag_is(schema.ROLE, schema.STUDY_CHILD)}"
    if parent_id:
        filt += f" and tags.`mlflow.parentRunId` = '{parent_id}'"
    runs = client.search_runs([experiment_id], filter_string=filt, max_results=5000)
    if not runs:
        raise ClipsError(f"no finished study runs in experiment {experiment_id}"
                         + (f" under {parent_id}" if parent_id else ""))
    runs = sorted(runs, key=_display_order)
    tests, curves, hard, difficulty = [], [], None, None
    for run in runs:
        variant, seed = run.data.params.get(schema.CURRICULUM_PARAM), int(run.data.params.get(schema.SEED_PARAM, 0))
        table = run_table(client, run.info.run_id, CHECKPOINTS[checkpoint])
        if table is None:
            continue
        fold = int(run.data.params.get(schema.FOLD_PARAM, 0)) if int(run.data.params.get(schema.FOLDS_PARAM, 0)) > 1 \
            else -1
        wall_s = (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else np.nan
        tests.append(table.assign(variant=variant, seed=seed, fold=fold, run_id=run.info.run_id, wall_s=wall_s,
                                  collapsed=int(schema.COLLAPSED in run.data.tags),
                                  best_epoch=run.data.metrics.get("best_epoch", np.nan)))
        if difficulty is None and variant == BASELINE:
            difficulty = run_table(client, run.info.run_id, schema.COHORT_DIFFICULTY)
        val = {m.step: m.value for m in client.get_metric_history(run.info.run_id, schema.VAL_DICE)}
        seen = {m.step: m.value for m in client.get_metric_history(run.info.run_id, schema.SAMPLES_SEEN)}
        curves += [{"variant": variant, "seed": seed, "epoch": s, schema.SAMPLES_SEEN: seen.get(s),
                    schema.VAL_DICE: v}
                   for s, v in sorted(val.items())]
        if hard is None:
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    hard = hard_ids(pd.read_csv(client.download_artifacts(run.info.run_id, schema.SPLIT, tmp)))
                except Exception:  # noqa: BLE001 - no split file: no flags
                    pass
    if not tests:
        raise ClipsError("the study's runs have no test tables")
    references = {run.info.run_id for run in runs if schema.REFERENCE in run.data.tags}
    if references:  # a fixed model has no training randomness: the same values under every seed of the study
        seeds = sorted({t["seed"].iloc[0] for t in tests if t["run_id"].iloc[0] not in references}) or [0]
        tests = [t for t in tests if t["run_id"].iloc[0] not in references] + [
            t.assign(seed=s) for t in tests if t["run_id"].iloc[0] in references for s in seeds]
    return pd.concat(tests, ignore_index=True), pd.DataFrame(curves), hard, difficulty


FLAGGED = "flagged hard in cohort.csv"


def hard_patients(tests: pd.DataFrame, flagged: set[str] | None, baseline: str = BASELINE) -> tuple[set[str], str]:
    """The cohort's hard flag when there is one, else the worst quartile of Dice under the baseline: a
    descriptive view only (selected on the baseline's own noise, it favours any variant by 0.02-0.05 Dice)."""
    if flagged:
        return set(flagged) & set(tests["patient_id"]), FLAGGED
    base = tests[tests["variant"] == baseline]
    if base.empty:
        return set(), "no baseline and no flags: no hard subset"
    by_patient = base.groupby("patient_id")["dice"].mean().sort_values()
    k = max(1, int(np.ceil(len(by_patient) / 4)))
    return set(by_patient.index[:k]), "worst quartile of Dice under the baseline (descriptive only, never tested)"


def wall_time_ratio(tests: pd.DataFrame, variant: str, baseline: str = BASELINE) -> float:
    """Median wall time of the variant's runs (training and evaluation) over the baseline's, NaN without either.
    The median, because one run slowed by something else on the machine (a test suite beside it, a paused
    worker) moved the mean to 0.52 for a true 0.96 in the study of docs/results.md."""
    if "wall_s" not in tests:
        return float("nan")
    per_run = tests.drop_duplicates("run_id").groupby("variant")["wall_s"].median()
    if baseline not in per_run or variant not in per_run:
        return float("nan")
    return float(per_run[variant] / per_run[baseline])


def figures_of_merit(tests: pd.DataFrame) -> list[str]:
    """The figures of merit the table has the columns for (a table from another tool may have only some)."""
    need = {"tmtv_abs_error_ml": ["tmtv_error_ml"]} | {k: [n for n in v if n] for k, v in DETECTION.items()}
    return [n for n in list(MEASURES) + list(DETECTION) if all(c in tests for c in need.get(n, [n]))]


def summary_table(tests: pd.DataFrame, hard: set[str], n_boot: int = 2000, seed: int = 0,
                  baseline: str = BASELINE) -> pd.DataFrame:
    rows = []
    for variant, vt in tests.groupby("variant", sort=False):
        for subset, st in (("all", vt), ("hard", vt[vt["patient_id"].isin(hard)])):
            if st.empty:
                continue
            row = {"variant": variant, "subset": subset, "patients": st["patient_id"].nunique(),
                   "seeds": st["seed"].nunique(), "wall_time_vs_baseline": wall_time_ratio(tests, variant, baseline)}
            if "collapsed" in vt:
                row["collapsed_runs"] = int(vt.drop_duplicates("run_id")["collapsed"].sum())
            if "best_epoch" in vt:  # the epoch each run's delivered network came from
                row["selected_epoch_median"] = float(vt.drop_duplicates("run_id")["best_epoch"].median())
            if {"tmtv_true_ml", "fp_ml"} <= set(vt):  # what a network marks where there is nothing to mark
                free = st[st["tmtv_true_ml"] <= 0]
                row["fp_ml_lesion_free"] = float(free["fp_ml"].mean()) if len(free) else float("nan")
            for name in figures_of_merit(tests):
                est, lo, hi = bootstrap_ci(st, name, n_boot, seed)
                row |= {name: est, f"{name}_ci_low": lo, f"{name}_ci_high": hi}
            rows.append(row)
    return pd.DataFrame(rows)


def collapse_statement(tests: pd.DataFrame) -> list[str]:
    """Collapsed runs per arm (the tag clips.collapsed: a training whose validations stopped finding lesions),
    said, never averaged in silently; they stay in the analysis, since a collapse is what the recipe does."""
    if "collapsed" not in tests:
        return []
    runs = tests.drop_duplicates("run_id")
    counts = runs.groupby("variant", sort=False)["collapsed"].agg(["sum", "size"])
    listed = ", ".join(f"{v} {int(r['sum'])} of {int(r['size'])} runs" for v, r in counts.iterrows())
    return [f"Collapsed runs (validations that stopped finding lesions, tag {schema.COLLAPSED}): {listed}; "
            "they stay in every figure above, since a collapse is what the recipe does."]


def per_patient_table(tests: pd.DataFrame, hard: set[str]) -> pd.DataFrame:
    """One row per patient x curriculum x seed: the contract of per_patient.csv (``clips compare --per-patient``
    reads it back)."""
    t = tests.rename(columns={"variant": "curriculum"})
    t["hard"] = t["patient_id"].isin(hard).astype(int)
    first = ["patient_id", "curriculum", "seed", "fold", "hard", *PAIRED_MEASURES]
    return t[[c for c in first if c in t] + [c for c in t.columns if c not in first]]


# ----------------------------------------------------------------------------- figures
def fig_dice(tests: pd.DataFrame):
    order = list(dict.fromkeys(tests["variant"]))
    fig, ax = plt.subplots(figsize=(1.2 * len(order) + 2, 4.5))
    data = [tests.loc[tests["variant"] == v, "dice"].dropna().to_numpy() for v in order]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(order) + 1), order, rotation=30)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=10, alpha=0.6, color="C0")
    ax.set(ylabel="test Dice (patients x seeds)", title="Dice per variant")
    fig.tight_layout()
    return fig


def fig_heatmap(tests: pd.DataFrame, baseline: str = BASELINE):
    grid = tests.groupby(["patient_id", "variant"])["dice"].mean().unstack()
    order = list(dict.fromkeys(tests["variant"]))
    grid = grid[[v for v in order if v in grid]]
    key = grid[baseline] if baseline in grid else grid.mean(axis=1)
    grid = grid.loc[key.sort_values().index]  # hardest (lowest baseline Dice) on top
    fig, ax = plt.subplots(figsize=(1.0 * grid.shape[1] + 3, 0.25 * grid.shape[0] + 2))
    im = ax.imshow(grid.to_numpy(float), aspect="auto", cmap="magma", vmin=0, vmax=1)
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=6)
    ax.set(title="test Dice per patient (mean over seeds), hardest first")
    fig.colorbar(im, ax=ax, label="Dice")
    fig.tight_layout()
    return fig


def fig_bland_altman(tests: pd.DataFrame):
    order = list(dict.fromkeys(tests["variant"]))
    cols = min(4, len(order))
    rows = int(np.ceil(len(order) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, v in zip(axes.flat, order):
        draw_bland_altman(ax, tests[tests["variant"] == v], marker_size=8, legend=False)
        ax.set_title(v, fontsize=9)
    for ax in axes.flat[len(order):]:
        ax.axis("off")
    fig.supxlabel("mean of true and predicted TMTV (ml)")
    fig.supylabel("predicted - true (ml)")
    fig.tight_layout()
    return fig


def fig_learning(curves: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    if not curves.empty:
        for v, c in curves.groupby("variant", sort=False):
            m = c.groupby("epoch")[[schema.SAMPLES_SEEN, schema.VAL_DICE]].mean()
            ax.plot(m[schema.SAMPLES_SEEN], m[schema.VAL_DICE], marker=".", label=v)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, fontsize=8)  # outside the data
    ax.set(xlabel="training samples seen", ylabel="validation Dice (mean over seeds)", title="learning curves")
    fig.tight_layout()
    return fig


def fig_null(per_patient: pd.DataFrame, paired: pd.DataFrame, primary: list[str], baseline: str = BASELINE):
    """Per primary contrast and the A/A check: the sign-flip null distribution of the mean Dice difference
    (what swapping the arms within run pairs gives) with the observed difference marked."""
    pairs = [p for p in contrast_pairs(per_patient, primary, baseline) if p[3] in ("primary", CALIBRATION)]
    fig, axes = plt.subplots(1, max(1, len(pairs)), figsize=(3.8 * max(1, len(pairs)) + 1, 3.4), squeeze=False)
    for ax, (name, a, b, family, _) in zip(axes.flat, pairs):
        tables, _ = balanced_core(pair_runs(a, b, "dice"))
        if not tables:
            ax.axis("off")
            continue
        p, null = sign_flip(tables)
        observed = sum(t.sum() for t in tables) / sum(t.size for t in tables)
        ax.hist(null, bins=min(60, max(8, len(null) // 8)), color="0.7" if family == CALIBRATION else "C0")
        ax.axvline(observed, color="C3", lw=2, label=f"observed {observed:+.3f}\nrandomisation p = {p:.3g}")
        ax.set_title(("A/A check: " if family == CALIBRATION else "") + name, fontsize=9)
        ax.set_xlabel("mean Dice difference under sign flips")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("sign-flip null distributions (whole run pairs swapped)", fontsize=10)
    fig.tight_layout()
    return fig


FIGURES = {"dice_per_variant": fig_dice, "dice_heatmap": fig_heatmap, "tmtv_bland_altman": fig_bland_altman}
NEEDS = {"tmtv_bland_altman": ("tmtv_true_ml", "tmtv_pred_ml")}  # figures drawn only when the table has these


# ----------------------------------------------------------------------------- report
def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt_summary(summary: pd.DataFrame) -> pd.DataFrame:
    out = summary[["variant", "subset", "patients", "seeds"]].copy()
    out["wall time vs baseline"] = [f"{r:.2f}" if np.isfinite(r) else "n/a" for r in summary["wall_time_vs_baseline"]]
    for name in [n for n in list(MEASURES) + list(DETECTION) if n in summary]:
        out[name] = [(f"{e:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{e:.3f} [too few patients]")
                     if np.isfinite(e) else "n/a"
                     for e, lo, hi in zip(summary[name], summary[f"{name}_ci_low"], summary[f"{name}_ci_high"])]
    shown = {"collapsed_runs": "collapsed runs", "selected_epoch_median": "selected epoch (median)",
             "fp_ml_lesion_free": "false positives, lesion-free patients (ml)"}
    for column, title in shown.items():
        if column in summary:
            out[title] = [f"{v:g}" if np.isfinite(v) else "n/a" for v in summary[column].astype(float)]
    return out


def _markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured table (pandas' own to_markdown needs one more dependency)."""
    def cell(x):
        return f"{x:.4g}" if isinstance(x, float) else str(x)
    rows = [list(df.columns), ["---"] * len(df.columns)] + [[cell(x) for x in r] for r in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _paired_view(paired: pd.DataFrame) -> pd.DataFrame:
    """The paired table as shown: the estimate, its interval, the tests, the counts; components in paired.csv."""
    cols = ["contrast", "family", "subset", "measure", "patients", "runs", "mean_difference", "ci_low", "ci_high",
            "p_value", "p_randomisation", "p_holm", "improved", "worsened", "note"]
    return paired[cols]


def write_report(tests, curves, hard, hard_rule, out: Path, title: str, contrasts=PRIMARY_CONTRASTS,
                 difficulty: pd.DataFrame | None = None, recipe: str = "", baseline: str = BASELINE,
                 notes: list[str] = (), plan=None, exploratory: str = "") -> dict:
    """The report. ``plan`` (a SequentialPlan): the primary Dice contrasts analysed look by look (looks.csv, the
    decision columns of paired.csv); ``exploratory``: why every contrast is exploratory (a study grown beyond its
    declared seeds without a sequential plan), said at the top."""
    out.mkdir(parents=True, exist_ok=True)
    if "run_id" not in tests:  # a table from elsewhere: a run is a (variant, fold, seed)
        tests = tests.assign(run_id=tests["variant"] + ":" + tests["fold"].astype(str) + ":"
                             + tests["seed"].astype(str))
    summary = summary_table(tests, hard, baseline=baseline)
    per_patient = per_patient_table(tests, hard)
    paired = paired_table(per_patient, hard, list(contrasts), baseline, hard_is_flag=hard_rule == FLAGGED)
    check = calibration(paired)
    sequential = []
    if plan is not None:
        looks, decisions = sequential_tables(per_patient, hard, list(contrasts), plan, baseline,
                                             hard_is_flag=hard_rule == FLAGGED)
        looks.to_csv(out / "looks.csv", index=False)
        paired = paired.merge(decisions, on=["contrast", "subset", "measure"], how="left")
        primary = int((decisions["subset"] == "all").sum()) if len(decisions) else 0
        sequential = sequential_statement(decisions, plan, list(dict.fromkeys(tests["variant"])),
                                          max(1, int(tests.loc[tests["fold"] >= 0, "fold"].nunique())), primary)
    statements = (sequential + [calibration_statement(per_patient, paired, list(contrasts), baseline)]
                  + power_statement(per_patient, paired, hard, list(contrasts), baseline)
                  + collapse_statement(tests) + list(notes))
    corr_text, corr = difficulty_statement(per_patient, difficulty, baseline)
    statements.append(corr_text)
    banner = ("**The A/A calibration check failed: every contrast in this report is exploratory.**\n\n"
              if check["passed"] is False else "")
    if exploratory:
        banner += f"**Every contrast in this report is exploratory: {exploratory}.**\n\n"
    summary.to_csv(out / "comparison.csv", index=False)
    per_patient.to_csv(out / "per_patient.csv", index=False)
    paired.to_csv(out / "paired.csv", index=False)
    design = (f"{tests['patient_id'].nunique()} test patients, {tests['seed'].nunique()} seed(s)"
              + (f", {tests['fold'].nunique()}-fold cross-validation" if (tests["fold"] >= 0).any() else ", one split"))
    shown = _paired_view(paired)
    (out / "comparison.md").write_text(
        f"# {title}\n\n" + banner + (f"Recipe: {recipe}.\n\n" if recipe else "")
        + f"{design}. Hard patients ({len(hard)}): {hard_rule}. {SUMMARY_NOTE}\n\n{_markdown(_fmt_summary(summary))}"
        f"\n\n## Contrasts, paired per patient and run\n\n{CONTRAST_NOTE}\n\n"
        + (_markdown(shown) if len(paired) else NO_PAIRS)
        + "\n\n## Calibration, power, difficulty\n\n" + "\n".join(f"- {line}" for line in statements) + "\n")
    figs = {name: f(tests) for name, f in FIGURES.items() if all(c in tests for c in NEEDS.get(name, ()))}
    figs |= {"learning_curves": fig_learning(curves), "null_distribution": fig_null(per_patient, paired,
                                                                                    list(contrasts), baseline)}
    images = {}
    for name, fig in figs.items():
        fig.savefig(out / f"{name}.png", dpi=90)
        images[name] = _png(fig)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse;"
             "font-size:12px} td,th{border:1px solid #ccc;padding:3px 6px} th{background:#eee}"
             ".failed{background:#fdd;padding:8px;font-weight:bold}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<p class='failed'>The A/A calibration check failed: every contrast in this report is exploratory.</p>"
             if check["passed"] is False else "",
             f"<p class='failed'>Every contrast in this report is exploratory: {html.escape(exploratory)}.</p>"
             if exploratory else "", f"<p>Recipe: {html.escape(recipe)}.</p>" if recipe else "",
             f"<p>{tests['run_id'].nunique()} runs, {tests['variant'].nunique()} variants, "
             f"{tests['patient_id'].nunique()} test patients; hard patients ({len(hard)}): {html.escape(hard_rule)}. "
             f"Generated {when}.</p>",
             "<h2>Figures of merit</h2>", f"<p>{html.escape(SUMMARY_NOTE)}</p>",
             _fmt_summary(summary).to_html(index=False, border=0),
             "<h2>Contrasts, paired per patient and run</h2>", f"<p>{html.escape(CONTRAST_NOTE)}</p>",
             shown.to_html(index=False, border=0, float_format=lambda x: f"{x:.4g}") if len(paired)
             else f"<p>{NO_PAIRS}</p>",
             "<h2>Calibration, power, difficulty</h2><ul>"
             + "".join(f"<li>{html.escape(line)}</li>" for line in statements) + "</ul>"]
    for name, b64 in images.items():
        parts.append(f"<h2>{name.replace('_', ' ')}</h2><img src='data:image/png;base64,{b64}'/>")
    parts.append("</body></html>")
    (out / "report.html").write_text("\n".join(parts))
    return {"summary": summary, "paired": paired, "per_patient": per_patient, "statements": statements,
            "difficulty_correlation": corr, "calibration": check["passed"], "out": out,
            "decisions": decisions if plan is not None else None}


PER_PATIENT_KEYS = ("patient_id", "curriculum", "fold", "seed")


def read_tables(paths: str | Path | list, arm_column: str = "curriculum") -> tuple[pd.DataFrame, str]:
    """One per-patient table from one or several files (the chunks of a study: ``a.csv,b.csv``), and their names.

    A row is a (patient, arm, fold, seed): a key found in two files is refused, naming both. ``arm_column``
    names the column that tells the arms apart (``recipe`` for a table of recipes; a table whose rows have
    several curricula then names each arm ``curriculum@recipe``)."""
    paths = [Path(p) for p in (str(paths).split(",") if isinstance(paths, (str, Path)) else paths) if str(p)]
    parts = []
    for path in paths:
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise ClipsError(f"{path}: cannot read the per-patient table ({exc})") from None
        missing = [c for c in PER_PATIENT_KEYS + (arm_column,) if c not in table]
        if missing:
            raise ClipsError(f"{path}: column(s) {', '.join(dict.fromkeys(missing))} missing; a per-patient table has "
                             f"{', '.join(PER_PATIENT_KEYS)} and one column per measure (dice, ...)")
        if "dice" not in table:
            raise ClipsError(f"{path}: no 'dice' column; the comparison reports Dice first (other measures optional)")
        parts.append(table.assign(patient_id=table["patient_id"].astype(str), _file=path.name))
    table = pd.concat(parts, ignore_index=True)
    if arm_column != "curriculum":
        arm = table[arm_column].astype(str)
        table["curriculum"] = arm if table["curriculum"].nunique() == 1 else table["curriculum"] + "@" + arm
    keys = list(PER_PATIENT_KEYS)
    twice = table[table.duplicated(keys, keep=False)]
    if len(twice):
        row = twice.iloc[0]
        files = sorted(set(twice.loc[(twice[keys] == row[keys]).all(axis=1), "_file"]))
        raise ClipsError(f"patient {row['patient_id']}, arm {row['curriculum']}, fold {row['fold']}, seed "
                         f"{row['seed']} is in the table more than once ({', '.join(files)}): chunks must not overlap")
    return table.drop(columns=["_file"]), ",".join(p.name for p in paths)


def with_earlier(tests: pd.DataFrame | None, earlier: pd.DataFrame, flagged: set[str] | None
                 ) -> tuple[pd.DataFrame, set[str] | None]:
    """This store's test rows with the earlier chunks' (a run found in both counts once, as this store's), and the
    hard flags (this store's split file, else the earlier table's ``hard`` column). A (patient, arm, fold, seed)
    trained twice, once here and once in an earlier chunk, is refused: chunks must not overlap."""
    rows = earlier.rename(columns={"curriculum": "variant"})
    if flagged is None:
        flagged = hard_ids(rows)
    rows = rows.drop(columns=["hard"], errors="ignore")
    if tests is not None and len(tests):
        if "run_id" in rows:
            rows = rows[~rows["run_id"].isin(set(tests["run_id"]))]
        rows = pd.concat([rows, tests], ignore_index=True)
    keys = ["patient_id", "variant", "fold", "seed"]
    twice = rows[rows.duplicated(keys, keep=False)]
    if len(twice):
        r = twice.iloc[0]
        raise ClipsError(f"arm {r['variant']}, fold {r['fold']}, seed {r['seed']} is both in an earlier chunk's table "
                         "and trained in this store: chunks must not overlap")
    return rows, flagged


def compare_table(path, out_dir, contrasts=(), baseline: str = BASELINE, log=print,
                  arm_column: str = "curriculum", plan=None) -> dict:
    """The whole comparison from a per-patient table (``clips compare --per-patient``): columns patient_id,
    curriculum, fold, seed and one per measure (dice, ...), as in a study's per_patient.csv; ``hard`` (0/1)
    optional; several files (``a.csv,b.csv``, a study's chunks) are analysed as their union. No MLflow needed."""
    table, names = read_tables(path, arm_column)
    arms = set(table["curriculum"])
    for contrast in contrasts:
        if contrast.count(":") != 1 or not set(contrast.split(":")) <= arms:
            raise ClipsError(f"contrast {contrast!r}: VARIANT:REFERENCE with arms of {names} "
                             f"({', '.join(sorted(arms))})")
    if baseline not in arms:
        raise ClipsError(f"baseline {baseline!r} is not an arm of {names} ({', '.join(sorted(arms))}); "
                         "give --baseline")
    tests = table.rename(columns={"curriculum": "variant"})
    flagged = hard_ids(tests)
    tests = tests.drop(columns=["hard"], errors="ignore")
    hard, rule = hard_patients(tests, flagged, baseline)
    if plan is not None and not contrasts:
        raise ClipsError("a sequential analysis tests the declared primary contrasts: give --contrasts VARIANT:REF")
    result = write_report(tests, pd.DataFrame(), hard, rule, Path(out_dir), f"Comparison of {names}",
                          list(contrasts), baseline=baseline, plan=plan)
    log(f"comparison of {tests['variant'].nunique()} arms on {tests['patient_id'].nunique()} patients from {names} "
        f"written to {out_dir}")
    return result


def _title_and_recipe(experiment_id: str, parent_id: str | None) -> tuple[str, str]:
    """The study's name as the title, and its shared training recipe (the parent's ``train.*`` parameters)."""
    if not parent_id:
        return f"CLIPS curriculum comparison (experiment {experiment_id})", ""
    parent = mlflow.MlflowClient().get_run(parent_id)
    name = parent.data.tags.get(schema.STUDY_NAME) or parent.info.run_name or parent_id
    params = parent.data.params
    recipe = ", ".join(f"{k[len(schema.TRAIN):]}={v}" for k, v in sorted(params.items()) if k.startswith(schema.TRAIN))
    design = ", ".join(f"{k[len(schema.STUDY):]}={params[k]}" for k in (schema.STUDY + s for s in ("folds", "seeds",
                                                                                                   "selection"))
                       if k in params)
    if parent.data.tags.get(schema.DESIGN_CHANGES):
        design += f"; design changed since: {parent.data.tags[schema.DESIGN_CHANGES]}"
    return f"{name}: curriculum comparison", "; ".join(x for x in (recipe or "profile defaults", design) if x)


def compare_experiment(experiment: str, parent_id: str | None, out_dir, contrasts: list[str], log=print,
                       checkpoint: str = "delivered", plan=None) -> dict:
    """``clips compare``: the study runs of ``experiment`` (those of ``parent_id`` only, when given), with the
    contrasts given, else those the parent declared, else the default ones."""
    client = MlflowClient()
    from clips.tracking.runs import experiment_name

    experiment = experiment_name(experiment)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ClipsError(f"no experiment named {experiment!r}")
    said = client.get_run(parent_id).data.params.get(schema.CONTRASTS_PARAM, "") if parent_id else ""
    declared = contrasts or [c.strip() for c in said.split(",") if c.strip()]
    return compare_and_log(exp.experiment_id, parent_id, out_dir, log=log, checkpoint=checkpoint, plan=plan,
                           **({"contrasts": declared} if declared or parent_id else {}))


def compare_and_log(experiment_id: str, parent_id: str | None, out_dir=None, log=print,
                    contrasts=PRIMARY_CONTRASTS, checkpoint: str = "delivered", plan=None,
                    log_to_active: bool = True, earlier: pd.DataFrame | None = None) -> dict:
    """The comparison of a study's children, written to ``out_dir`` and logged to the active run (the parent)
    under comparison/ unless ``log_to_active`` is False (a sequential study's look logs its own table).
    ``earlier``: the per-patient rows of the study's earlier chunks (:func:`read_tables`), analysed with these."""
    try:
        tests, curves, flagged, difficulty = collect(experiment_id, parent_id, checkpoint)
    except ClipsError:
        if earlier is None or earlier.empty:
            raise
        tests, curves, flagged, difficulty = None, pd.DataFrame(), None, None  # this chunk has nothing finished yet
    if earlier is not None and not earlier.empty:
        tests, flagged = with_earlier(tests, earlier, flagged)
    hard, rule = hard_patients(tests, flagged)
    notes, exploratory = [], ""
    if parent_id:
        tags = MlflowClient().get_run(parent_id).data.tags
        notes = [f"withdrawn: {tags[k]}" for k in sorted(tags) if k.startswith(schema.WITHDRAWN + ".")]
        exploratory = tags.get(schema.EXPLORATORY, "")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(out_dir) if out_dir else Path(tmp)
        title, recipe = _title_and_recipe(experiment_id, parent_id)
        result = write_report(tests, curves, hard, rule, out, title, contrasts, difficulty, recipe, notes=notes,
                              plan=plan, exploratory=exploratory)
        if log_to_active and mlflow.active_run() is not None:
            mlflow.log_artifacts(str(out), "comparison")
            passed = result["calibration"]
            mlflow.set_tag(schema.CALIBRATION, {True: "passed", False: "failed"}.get(passed, "not possible"))
            for _, r in result["summary"][result["summary"]["subset"] == "all"].iterrows():
                mlflow.log_metric(f"compare.{r['variant']}.dice_mean", float(r["dice"]))
    log(f"comparison of {tests['variant'].nunique()} variants on {tests['patient_id'].nunique()} test patients"
        + (f" written to {out_dir}" if out_dir else ""))
    return result
