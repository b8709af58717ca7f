"""The training step against the machine's limit: achieved FLOP/s of the study profile's step, the attainable peak
for the same kind of work on the same threads, and what thread and layout settings change, in one run.

    python benchmarks/bench_step.py [--quick] [--compile] [--json OUT.json]

The step is the trainer's own (clips/training/step.py:optimise, curriculum `none`, TMTV-Net loss with its
deep-supervision heads) on the study profile's sizes: small U-Net, 48^3 patches, batch 2, 5 channels, float32 on
the CPU. Its FLOPs are counted once with torch.utils.flop_counter (forward and backward). The peak is the larger
of two kernels on the same threads: a 2048^2 single-precision GEMM and a 3D convolution shaped like the U-Net's
widest full-resolution layer (32 -> 32 channels, 3^3, 64^3, batch 2), each counted the same way. Variants, each
a ratio of step time to the default measured in the same run (interleaved rounds, medians): channels_last_3d,
one thread, and with --compile torch.compile (its compile time reported apart, with the steps it takes to pay
back). The last line is `achieved_vs_peak=`.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from clips.curricula import get_curriculum  # noqa: E402
from clips.data.preprocess import N_CHANNELS  # noqa: E402
from clips.losses import TMTVLoss  # noqa: E402
from clips.models import SegNet  # noqa: E402
from clips.training.step import optimise  # noqa: E402


def flops_of(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def make_step(patch: int, batch: int, channels_last: bool = False, compiled: bool = False):
    torch.manual_seed(0)
    net = SegNet("small")
    if channels_last:
        net.to(memory_format=torch.channels_last_3d)
    net.train()
    forward = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = TMTVLoss()
    none = get_curriculum("none")
    cur = none(None, none.parse_options({}))
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((batch, N_CHANNELS, patch, patch, patch), dtype=np.float32))
    y = torch.from_numpy((rng.random((batch, 1, patch, patch, patch)) > 0.97).astype(np.int64))  # as the loader
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    idx = np.arange(batch)
    return lambda: optimise(forward, cur, idx, x, y, loss_fn, opt, "cpu")


def gemm_rate(n: int, repeats: int, device: torch.device | str = "cpu", dtype=torch.float32) -> float:
    """FLOP/s of an n x n matrix product (2 n^3 FLOPs) on ``device`` in ``dtype``, the GPU waited for: the
    machine's own peak for dense work (benchmarks/device_check.py sets the GPU step against it in bf16)."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)

    def gemm():
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return 2 * n ** 3 / seconds(gemm, repeats)


def peak_kernels(quick: bool) -> dict[str, float]:
    """FLOP/s of a large GEMM and of a large 3D convolution on the current threads."""
    conv = torch.nn.Conv3d(32, 32, 3, padding=1).eval()
    v = torch.randn(2, 32, 48 if quick else 64, 48 if quick else 64, 48 if quick else 64)

    def conv_fwd():
        with torch.no_grad():
            conv(v)

    repeats = 3 if quick else 5
    return {"gemm": gemm_rate(1536 if quick else 2048, repeats),
            "conv3d": flops_of(conv_fwd) / seconds(conv_fwd, repeats)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats: under 3 minutes on 2 cores")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the forward (slow to compile)")
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    threads = torch.get_num_threads()
    repeats = 3 if a.quick else 6
    rounds = 2 if a.quick else 3

    default = make_step(a.patch, a.batch)
    step_flops = flops_of(default)
    variants = {"default": default, "channels_last_3d": make_step(a.patch, a.batch, channels_last=True)}
    compile_s = None
    if a.compile:
        t0 = time.perf_counter()
        compiled = make_step(a.patch, a.batch, compiled=True)
        compiled()  # compiles on the first call
        compile_s = time.perf_counter() - t0
        variants["torch_compile"] = compiled
    times: dict[str, list[float]] = {k: [] for k in variants}
    one_thread: list[float] = []
    for _ in range(rounds):  # interleaved, so that machine noise hits every variant alike
        for name, fn in variants.items():
            times[name].append(seconds(fn, repeats))
        torch.set_num_threads(1)
        one_thread.append(seconds(default, max(2, repeats // 2)))
        torch.set_num_threads(threads)
    step_s = {k: float(np.median(v)) for k, v in times.items()}
    step_s["one_thread"] = float(np.median(one_thread))
    peaks = peak_kernels(a.quick)
    peak = max(peaks.values())
    achieved = step_flops / step_s["default"]
    ratios = {k: v / step_s["default"] for k, v in step_s.items()}
    result = {"threads": threads, "patch": a.patch, "batch": a.batch, "step_gflop": step_flops / 1e9,
              "step_s": step_s, "ratio_to_default": ratios, "peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
              "achieved_gflops": achieved / 1e9, "achieved_vs_peak": achieved / peak, "compile_s": compile_s}
    print(f"cpu, {threads} threads; study step: small U-Net, {a.patch}^3, batch {a.batch}: "
          f"{step_flops / 1e9:.1f} GFLOP (forward and backward)")
    for name, s in step_s.items():
        print(f"  {name:<17} {s:.3f} s per step  ratio {ratios[name]:.3f}")
    if compile_s is not None:
        gain = step_s["default"] - step_s["torch_compile"]
        pays = f"pays back after {compile_s / gain:.0f} steps" if gain > 0 else "never pays back"
        print(f"  torch.compile: {compile_s:.0f} s to compile, {pays} (a study child takes 480)")
    print(f"peak on {threads} threads: GEMM {peaks['gemm'] / 1e9:.1f} GFLOP/s, conv3d {peaks['conv3d'] / 1e9:.1f} "
          f"GFLOP/s; the step achieves {achieved / 1e9:.1f} GFLOP/s")
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    print(f"achieved_vs_peak={achieved / peak:.3f}")


if __name__ == "__main__":
    main()
