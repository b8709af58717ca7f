"""Benchmark: the full per-patient metric suite against a per-metric reference, on one core.

    python benchmarks/bench_metrics.py [--repeats 5] [--json OUT.json]

A generated whole-body volume of 200 x 200 x 300 voxels at 4.07 x 4.07 x 3 mm with 8
lesions of 1 to 300 ml and an imperfect prediction (shifted and eroded or dilated
lesions, one missed lesion, two false-positive blobs). In the same run it times
clips.metrics.evaluate_patient and benchmarks/reference_metrics.py (DeepMind's
surface-distance functions called per metric plus per-lesion NumPy matching), and
checks that both give the same values.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks.reference_metrics import reference_patient  # noqa: E402
from clips.metrics.patient import COLUMNS, COUNT_COLUMNS, EvalSettings, evaluate_patient  # noqa: E402

SHAPE = (200, 200, 300)
SPACING = (4.07, 4.07, 3.0)


def make_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    affine = np.diag([*SPACING, 1.0])
    voxel_mm3 = float(np.prod(SPACING))
    suv = rng.gamma(4.0, 0.25, SHAPE).astype(np.float32)  # background around SUV 1
    truth = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    volumes = np.exp(np.linspace(np.log(1.0), np.log(300.0), 8))  # 1 .. 300 ml
    for n, vol_ml in enumerate(volumes):
        r_mm = (3 * vol_ml * 1000 / (4 * np.pi)) ** (1 / 3)
        center = rng.uniform([30, 30, 40], [170, 170, 260])
        radii = r_mm / np.asarray(SPACING) * rng.uniform(0.85, 1.15, 3)
        lo = np.maximum(np.floor(center - radii - 2).astype(int), 0)
        hi = np.minimum(np.ceil(center + radii + 2).astype(int), SHAPE)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
        r2 = (((grid - center) / radii) ** 2).sum(-1)
        lesion = r2 <= 1
        truth[sl][lesion] = 1
        suv[sl][lesion] = rng.uniform(5, 15) * (1 - 0.4 * r2[lesion])
        if n == 1:
            continue  # one small lesion is missed
        shifted = ndimage.shift(lesion.astype(float), rng.uniform(-1.5, 1.5, 3), order=0) > 0.5
        shifted = ndimage.binary_dilation(shifted) if n % 2 else ndimage.binary_erosion(shifted)
        pred[sl] |= shifted.astype(np.uint8)
    for _ in range(2):  # false positives, e.g. bladder and myocardium
        c = rng.integers([20, 20, 20], [180, 180, 280])
        pred[tuple(slice(a, a + 6) for a in c)] = 1
    return truth, pred, suv, affine, voxel_mm3


def same(a: dict, b: dict) -> list[str]:
    bad = []
    for c in COLUMNS[1:]:
        x, y = a[c], b[c]
        if isinstance(x, float) and math.isnan(x):
            ok = math.isnan(y)
        elif c in COUNT_COLUMNS:
            ok = x == y
        else:
            ok = abs(x - y) <= 1e-6 * max(1.0, abs(y))
        if not ok:
            bad.append(f"{c}: {x} vs {y}")
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reference-repeats", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    truth, pred, suv, affine, _ = make_case()
    settings = EvalSettings()
    voxel_ml = float(np.prod(SPACING)) / 1000
    print(f"volume {SHAPE} at {SPACING} mm; TMTV {truth.sum() * voxel_ml:.1f} ml in "
          f"{ndimage.label(truth)[1]} lesions; prediction {pred.sum() * voxel_ml:.1f} ml")

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        row = evaluate_patient("bench", truth, pred, suv, affine, settings)
        times.append(time.perf_counter() - t0)
    ref_times = []
    for _ in range(args.reference_repeats):
        t0 = time.perf_counter()
        ref = reference_patient("bench", truth, pred, suv, affine, **settings.describe())
        ref_times.append(time.perf_counter() - t0)
    diffs = same(row, ref)
    result = {
        "clips_s_median": float(np.median(times)), "clips_s_min": float(np.min(times)),
        "reference_s_median": float(np.median(ref_times)),
        "speedup": float(np.median(ref_times) / np.median(times)),
        "identical": not diffs, "differences": diffs,
        "target": {"clips_s": 0.4, "speedup": 5.0},
        "row": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()},
    }
    print(f"clips.metrics: {result['clips_s_median']:.3f} s per patient (median of {args.repeats}, "
          f"min {result['clips_s_min']:.3f} s)")
    print(f"reference (DeepMind per metric + per-lesion NumPy): {result['reference_s_median']:.2f} s")
    print(f"speed-up x{result['speedup']:.1f}; identical values: {result['identical']}")
    for d in diffs:
        print("  DIFFERENT", d)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
