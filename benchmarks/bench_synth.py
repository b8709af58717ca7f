"""How long the example cohort takes to generate, and where the time goes.

    python benchmarks/bench_synth.py [--patients 24] [--spacing 4] [--seed 0]

Writes a fresh cohort as ``clips synth`` does and reports the wall time, the time per patient, and, as the
reference measured in the same run, the time spent writing the same images to NIfTI (gzip): the ratio
``generation_vs_io`` says how much the drawing adds to the cost of merely saving the files.
The last line is ``seconds=<total> per_patient=<s> generation_vs_io=<ratio>``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from clips.data.synth import SynthConfig, write_cohort  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--spacing", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_cohort(Path(tmp) / "cohort", args.patients, args.seed, SynthConfig(spacing_mm=(args.spacing,) * 3),
                     log=lambda *_: None)
        total = time.perf_counter() - t0
        # reference: reading and writing the very same files again (the NIfTI/gzip part of the cost)
        t0 = time.perf_counter()
        for folder in sorted(p for p in (Path(tmp) / "cohort").iterdir() if p.is_dir()):
            for name in ("CTres", "SUV", "SEG"):
                img = nib.load(folder / f"{name}.nii.gz")
                arr = np.asarray(img.dataobj)
                nib.save(nib.Nifti1Image(arr, img.affine), Path(tmp) / f"again_{name}.nii.gz")
        io = time.perf_counter() - t0
    print(f"{args.patients} patients at {args.spacing:g} mm: {total:.1f} s ({total / args.patients:.2f} s/patient); "
          f"reading and writing the same files: {io:.1f} s")
    print(f"seconds={total:.1f} per_patient={total / args.patients:.2f} generation_vs_io={total / io:.2f}")


if __name__ == "__main__":
    main()
