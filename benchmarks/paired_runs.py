"""Two training recipes compared per patient: the test tables of runs A (variant) and B (reference).

    python benchmarks/paired_runs.py --variant RUN_ID[,RUN_ID...] --reference RUN_ID[,...] [--measure dice]

Runs of one arm are seeds: per patient the mean over them. Prints the mean paired difference
(variant minus reference) with its 95% bootstrap interval (patients, then seeds), the patients
improved and worsened, and the two-sided Wilcoxon p: the study's own statistics
(clips/study/stats.py), for recipes that a study does not vary (e.g. augmentation).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402

from clips.study.stats import paired_against_baseline, paired_bootstrap_ci  # noqa: E402
from clips.tracking.tables import run_table  # noqa: E402


def arm(run_ids: str) -> pd.DataFrame:
    client = mlflow.MlflowClient()
    tables = [run_table(client, r, "tables/test_per_patient.json").assign(seed=i)
              for i, r in enumerate(run_ids.split(","))]
    return pd.concat(tables, ignore_index=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--measure", action="append", default=None)
    a = ap.parse_args()
    variant, reference = arm(a.variant), arm(a.reference)
    for measure in a.measure or ["dice", "tmtv_abs_rel_error"]:
        r = paired_against_baseline(variant, reference, measure)
        low, high = paired_bootstrap_ci(variant, reference, measure)
        print(f"{measure}: variant {variant.groupby('patient_id')[measure].mean().mean():.3f}, reference "
              f"{reference.groupby('patient_id')[measure].mean().mean():.3f}; paired difference "
              f"{r['mean_difference']:+.3f} [{low:+.3f}, {high:+.3f}] over {r['patients']} patients, "
              f"{r['improved']} improved, {r['worsened']} worsened, Wilcoxon p = {r['p_wilcoxon']:.3g}")


if __name__ == "__main__":
    main()
