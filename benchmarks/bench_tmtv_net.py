"""The released TMTV-Net's stage-1 ensemble forward on the CPU: seconds per tile and peak memory.

    python benchmarks/bench_tmtv_net.py [--quick] [--json OUT.json]

Random weights of the released architecture (the time does not depend on the values). Tiles of 64x48x48 and,
without --quick, the released 128x96x96; one warm-up forward at the small size. Peak resident memory of the
process (the model, 86 M parameters, and one tile's forward). The issue's reference figures for the official
code on this kind of 2-core machine: about 14 s (64x48x48) and 88 s (128x96x96).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from clips.models.tmtv_net import TMTVNet  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="only the 64x48x48 tile")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    net = TMTVNet().eval()
    sizes = [(64, 48, 48)] + ([] if a.quick else [(128, 96, 96)])
    out = {"threads": torch.get_num_threads()}
    with torch.no_grad():
        net.stage1(torch.rand(1, 5, 32, 32, 32))  # warm-up
        for size in sizes:
            x = torch.rand(1, 5, *size)
            t0 = time.perf_counter()
            net.stage1(x)
            out["x".join(map(str, size))] = time.perf_counter() - t0
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    for k, v in out.items():
        print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
