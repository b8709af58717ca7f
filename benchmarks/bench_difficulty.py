"""How well the cohort difficulty score separates a generated cohort's hard patients from the others.

    python benchmarks/bench_difficulty.py [--patients 36] [--seed 1] [--spacing 8] [--csv OUT.csv]

Generates a fresh example cohort (``clips synth``), computes every score as a run does
(``clips data difficulty``), and prints the area under the ROC curve of each score against
the generator's ``hard`` flag, and against each hard factor alone (factor vs not hard).
AUC 0.5 is chance; the last line is ``auc_cohort=<value>``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy.stats import mannwhitneyu  # noqa: E402

from clips.curricula.difficulty import COHORT_SCORES, difficulty_of_cohort  # noqa: E402
from clips.data.cohort import load_cohort  # noqa: E402
from clips.data.preprocess import PreprocessConfig  # noqa: E402
from clips.data.synth import HARD_FACTORS, SynthConfig, write_cohort  # noqa: E402


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (the Mann-Whitney U / n1 n2)."""
    if not len(positive) or not len(negative):
        return float("nan")
    return float(mannwhitneyu(positive, negative).statistic / (len(positive) * len(negative)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=36)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spacing", type=float, default=8.0, help="preprocessing spacing (the study profile's)")
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="clips-difficulty-"))
    write_cohort(tmp / "cohort", args.patients, args.seed, SynthConfig(spacing_mm=(4.0,) * 3), log=lambda *_: None)
    spacing = (args.spacing,) * 3
    cohort = load_cohort(tmp / "cohort", cache_root=tmp / "cache", pre=PreprocessConfig(spacing), seed=0,
                         val_fraction=0.2, test_fraction=0.2, log=lambda *_: None)
    table = difficulty_of_cohort(cohort, spacing)
    if args.csv:
        table.to_csv(args.csv, index=False)
    hard = table["hard"].astype(int).to_numpy() == 1
    print(f"{args.patients} patients (seed {args.seed}), {hard.sum()} hard; AUC of each score (higher = harder):")
    print(f"{'score':<18}{'all hard':>10}" + "".join(f"{f:>18}" for f in HARD_FACTORS))
    for name in COHORT_SCORES:
        s = table[f"score_{name}"].to_numpy(float)
        s = np.where(np.isnan(s), np.nanmedian(s), s)
        row = [auc(s[hard], s[~hard])] + [auc(s[table[f].astype(int).to_numpy() == 1], s[~hard]) for f in HARD_FACTORS]
        print(f"{name:<18}" + "".join(f"{v:>10.3f}" if i == 0 else f"{v:>18.3f}" for i, v in enumerate(row)))
    s = table["score_cohort"].to_numpy(float)
    print(f"auc_cohort={auc(s[hard], s[~hard]):.3f}")


if __name__ == "__main__":
    main()
