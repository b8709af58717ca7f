"""Benchmark in nnU-Net's manner: the epoch time of the real pipeline against the same steps with no data loading.

    python benchmarks/bench_training.py [--quick] [--device auto] [--workers -1] [--json OUT.json]

Real pipeline: patients planned by the training process, patches cropped and augmented
(`--augmentation`, default `default`) by `--workers` loader processes (-1: the training
default, clips/data/loader.py:default_workers), the optimisation step (bfloat16 autocast
on a GPU). Reference, measured in the same run: the same number of steps on batches
already in memory ("no data loading"). Then
whole-body inference (sliding windows, the profile's patch) of one `--volume` sized image.
The last line is `loader_overhead_ratio=<real/no-loading>`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import generated_cases, sync, whole_body_inference_s  # noqa: E402

from clips.curricula import get_curriculum  # noqa: E402
from clips.data.augment import Augmentation  # noqa: E402
from clips.data.loader import PatchDataset, default_workers, epoch_batches  # noqa: E402
from clips.data.sampling import PatchSampler  # noqa: E402
from clips.inference.sliding_window import resolve_device  # noqa: E402
from clips.losses import TMTVLoss  # noqa: E402
from clips.models import SegNet  # noqa: E402
from clips.training.batch_plan import plan_batch  # noqa: E402
from clips.training.step import optimise  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small model and patches, few steps: under 3 min on 2 cores")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=-1)
    ap.add_argument("--augmentation", default="default")
    ap.add_argument("--model", default=None, help="default: small with --quick, else large")
    ap.add_argument("--patch", type=int, default=None, help="default: 48 with --quick, else 128")
    ap.add_argument("--batch", type=int, default=None, help="default: 2 with --quick, else 4")
    ap.add_argument("--steps", type=int, default=None, help="steps per epoch; default 6 with --quick, else 50")
    ap.add_argument("--spacing", type=float, default=None, help="default: 8 with --quick, else 4")
    ap.add_argument("--volume", default=None, help="inference volume X,Y,Z; default 70,38,125 with --quick, "
                                                   "else 400,400,300")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    q = a.quick
    model_name, patch = a.model or ("small" if q else "large"), a.patch or (48 if q else 128)
    batch, steps, spacing = a.batch or (2 if q else 4), a.steps or (6 if q else 50), a.spacing or (8.0 if q else 4.0)
    volume = tuple(int(v) for v in (a.volume or ("70,38,125" if q else "400,400,300")).split(","))
    device = resolve_device(a.device)
    workers = default_workers(device) if a.workers < 0 else a.workers
    amp = device.type == "cuda"

    tmp = Path(tempfile.mkdtemp(prefix="clips-bench-training-"))
    _, cases = generated_cases(tmp, 6, spacing)
    sampler = PatchSampler(cases, (patch,) * 3, 0.67)
    dataset = PatchDataset(sampler, Augmentation(a.augmentation))
    none = get_curriculum("none")
    cur = none(None, none.parse_options({}))
    torch.manual_seed(0)
    net = SegNet(model_name).to(device)
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last_3d)
        torch.backends.cudnn.benchmark = True
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = TMTVLoss()
    weights = np.ones(len(cases))

    def real_epoch(seed):
        rng = np.random.default_rng(seed)
        plan = (plan_batch(cur, sampler, rng, weights, batch) for _ in range(steps))
        sync(device)
        t0 = time.perf_counter()
        for idx, x, y in epoch_batches(dataset, plan, workers, device):
            optimise(net, cur, idx, x, y, loss_fn, opt, device, amp)
        sync(device)
        return time.perf_counter() - t0

    rng = np.random.default_rng(99)
    in_memory = [next(epoch_batches(dataset, iter([plan_batch(cur, sampler, rng, weights, batch)]), 0))
                 for _ in range(steps)]
    in_memory = [(i, x.to(device), y.to(device)) for i, x, y in in_memory]

    def no_loading_epoch():
        sync(device)
        t0 = time.perf_counter()
        for idx, x, y in in_memory:
            optimise(net, cur, idx, x, y, loss_fn, opt, device, amp)
        sync(device)
        return time.perf_counter() - t0

    real_epoch(0), no_loading_epoch()  # warm-up (cuDNN's algorithm search, worker start)
    rounds = 2 if q else 3
    real, ref = [], []
    for r in range(rounds):  # interleaved, so machine noise hits both
        real.append(real_epoch(r + 1))
        ref.append(no_loading_epoch())
    real_s, ref_s = float(np.median(real)), float(np.median(ref))

    infer_s = whole_body_inference_s(net, device, patch, batch, volume)

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    result = {"device": name, "model": model_name, "patch": patch, "batch": batch, "steps": steps, "workers": workers,
              "augmentation": a.augmentation, "amp_bf16": amp, "epoch_s_real": real_s, "epoch_s_no_loading": ref_s,
              "loader_overhead_ratio": real_s / ref_s, "inference_volume": volume, "inference_s": infer_s}
    print(f"device {name}; model {model_name}, patch {patch}^3, batch {batch}, {steps} steps, {workers} workers, "
          f"augmentation {a.augmentation}, bf16 autocast {amp}")
    print(f"epoch, real pipeline: {real_s:.2f} s; no data loading: {ref_s:.2f} s (median of {rounds})")
    print(f"whole-body inference of a {'x'.join(map(str, volume))} volume: {infer_s:.2f} s")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    print(f"loader_overhead_ratio={real_s / ref_s:.3f}")


if __name__ == "__main__":
    main()
