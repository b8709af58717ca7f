"""Wall time of a tiny study with 2 local workers against 1, on this machine.

    python benchmarks/bench_study_workers.py [--children 4] [--epochs 3]

Runs the same study twice (a fresh tracking store and queue each time, the tiny model on a tiny generated
cohort, `selection=last`): once with ``--workers 1`` (one worker, every core) and once with ``--workers 2`` (two
workers, each its share of the cores), and prints both wall times and their ratio. On a 2-core machine a study
step already uses both cores, so expect little; on a GPU machine with two GPUs, about 2.
The last line is ``ratio_2_vs_1=<t2/t1>``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from clips.data.synth import SynthConfig, write_cohort  # noqa: E402

CURRICULA = ("none", "random", "anti", "predefined", "smoothing", "self_paced")


def run(workers: int, folder: Path, data: Path, children: int, epochs: int) -> float:
    env = dict(os.environ, CLIPS_HOME=str(folder / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{folder / 'mlflow.db'}")
    args = [sys.executable, "-m", "clips", "study", "--curricula", ",".join(CURRICULA[:children]), "--seeds", "1",
            "--selection", "last", "--workers", str(workers), "--study-name", "bench",
            "-P", f"data_dir={data}", "-P", "model=tiny", "-P", f"epochs={epochs}", "-P", "steps_per_epoch=4",
            "-P", "patch_size=32", "-P", "spacing_mm=10"]
    # each run preprocesses the cohort into its own CLIPS_HOME first: the same work in both
    t0 = time.perf_counter()
    subprocess.run(args, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=4, choices=range(2, len(CURRICULA) + 1))
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cohort(tmp / "cohort", 8, 0, SynthConfig(spacing_mm=(10.0,) * 3), log=lambda *_: None)
        t1 = run(1, tmp / "one", tmp / "cohort", args.children, args.epochs)
        t2 = run(2, tmp / "two", tmp / "cohort", args.children, args.epochs)
    print(f"{args.children} children, {os.cpu_count()} cores: 1 worker {t1:.1f} s, 2 workers {t2:.1f} s")
    print(f"ratio_2_vs_1={t2 / t1:.3f}")


if __name__ == "__main__":
    main()
