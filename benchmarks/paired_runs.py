"""Two training recipes compared per patient: the test tables of runs A (variant) and B (reference).

    python benchmarks/paired_runs.py --variant RUN_ID[,RUN_ID...] --reference RUN_ID[,...] [--measure dice]

Runs of one arm are seeds, paired by position with the other arm's (same split). Prints the mean
paired difference (variant minus reference) with the study's run-aware interval and p-value (the
training run as a random factor) and the sign-flip p (clips/stats/run_aware.py), for recipes that a
study does not vary (e.g. augmentation). With one run per arm there is no test: say so, not a p.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402

from clips.stats.run_aware import pair_runs, run_aware_test  # noqa: E402
from clips.tracking.tables import run_table  # noqa: E402


def arm(run_ids: str) -> pd.DataFrame:
    client = mlflow.MlflowClient()
    tables = [run_table(client, r, "tables/test_per_patient.json").assign(seed=i, fold=-1)
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
        r = run_aware_test(pair_runs(variant, reference, measure))
        test = (f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}], p = {r.p_value:.3g}, sign-flip p = {r.p_randomisation:.3g}"
                if r.testable else f"no test ({r.note})")
        print(f"{measure}: variant {variant.groupby('patient_id')[measure].mean().mean():.3f}, reference "
              f"{reference.groupby('patient_id')[measure].mean().mean():.3f}; paired difference "
              f"{r.estimate:+.3f} {test}; {r.design.describe()}")

if __name__ == "__main__":
    main()
