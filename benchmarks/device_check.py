"""The GPU check: one table of what a GPU machine does with CLIPS, in a few minutes, offline.

    bash benchmarks/device_check.sh [--tiny] [--out DIR]        # the wrapper: environment, then this script

On a GPU, the `gpu` profile's training step (the `large` U-Net preset, 128^3, batch 4): bfloat16 autocast
against float32, each with the real loader (patches cropped and augmented by loader processes) and without
loading (batches already on the GPU): nnU-Net's benchmark pair, whose ratio should stay <= 1.10 (over the
pass, and once the workers run: their start is paid once per epoch, 20 steps here, 250 in a `gpu` training);
the peak GPU memory of a step; whole-body inference of a 400x400x300 volume at the profile's patch; the released
TMTV-Net's two stages on an autoPET-sized whole body (400 x 400 x 326 at 2.04 x 2.04 x 3 mm: random weights,
since the time does not depend on them and the released files stay at the site), by phase, with batched tiles,
the refiner's input padded to 8 channels and half precision, each compared with the released settings' output;
the step without loading against the card's own bf16 GEMM rate (``step_achieved_vs_peak``) with channels-last,
the fused AdamW and torch.compile as ratios to it; the loader with augmentation on the device beside the
workers', and per patch the noise and the preset drawn on the host against on the device
(benchmarks/bench_augment_on_device.py); the environment the figures depend on; and one end-to-end MLflow
training of a few steps (a local SQLite store).
Each part has its own deadline (:func:`section`). ``--tiny`` runs the same code on small sizes on the CPU (the test
suite runs it so). Prints one table, row by row as measured, and writes ``device_check.json`` (under ``$OUT`` when
set, else ``--out``) after every row.

On a lent GPU machine (the device tool, which has no internet and no MLflow): ``make device-wheels`` here first,
then the tool's ``run`` with ``command="PYTHONUNBUFFERED=1 bash benchmarks/device_check.sh --out $OUT"``,
``carry=["wheels"]`` and ``timeout_s=480``; the JSON comes back under $OUT even if the run is stopped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import generated_cases, sync, whole_body_inference_s  # noqa: E402

from clips.curricula import get_curriculum  # noqa: E402
from clips.data.augment import Augmentation  # noqa: E402
from clips.data.loader import PatchDataset, PatchLoader, default_workers, epoch_batches  # noqa: E402
from clips.data.sampling import PatchSampler  # noqa: E402
from clips.inference.sliding_window import resolve_device  # noqa: E402
from clips.losses import TMTVLoss  # noqa: E402
from clips.models import SegNet  # noqa: E402
from clips.models.tmtv_net.loading import TMTVNet  # noqa: E402
from clips.models.tmtv_net.pipeline import RELEASED, SMALL, predict  # noqa: E402
from clips.training.batch_plan import plan_batch  # noqa: E402
from clips.training.step import optimise  # noqa: E402

SIZES = {  # (model, patch, batch, steps, spacing, inference volume, e2e profile)
    "gpu": ("large", 128, 4, 20, 4.0, (400, 400, 300), "gpu"),
    "tiny": ("tiny", 32, 2, 3, 10.0, (48, 40, 64), "smoke"),
}

# The released TMTV-Net's whole-body case: (D, H, W) = (z, y, x) as the pipeline takes it, spacing in mm, sizes.
TMTV_CASES = {
    "gpu": ((326, 400, 400), (3.0, 2.04, 2.04), RELEASED),
    "tiny": ((24, 20, 18), (4.0, 4.0, 4.0), SMALL),
}


def step_times(device, size, amp: bool, workers: int, cases, on_device: bool = False) -> dict:
    """The step with the real loader and without loading. ``on_device``: the workers only crop (float16, uint8)
    and the batch is augmented on the device (augment_on=device); else they crop and augment (today's default).
    One persistent loader for every pass, as a training keeps it."""
    model, patch, batch, steps = size[:4]
    sampler = PatchSampler(cases, (patch,) * 3, 0.67)
    dataset = PatchDataset(sampler, Augmentation("default"), on_device=on_device)
    loader = PatchLoader(dataset, workers, device)
    none = get_curriculum("none")
    cur = none(None, none.parse_options({}))
    torch.manual_seed(0)
    net = SegNet(model).to(device).train()
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last_3d)
        torch.backends.cudnn.benchmark = True
    opt, loss_fn = torch.optim.AdamW(net.parameters(), lr=1e-4), TMTVLoss()
    weights = np.ones(len(cases))

    def plan(seed):
        rng = np.random.default_rng(seed)
        return (plan_batch(cur, sampler, rng, weights, batch) for _ in range(steps))

    def real(seed):
        """(seconds a step over the whole pass, seconds until the first batch arrives, seconds a step after it):
        the workers persist from pass to pass as in a training (the warm-up pass starts them), so the first
        batch's wait is the plan's prefetch, not a start; the last figure is what loading costs once they run."""
        sync(device)
        t0 = time.perf_counter()
        first = None
        for idx, x, y in loader.epoch(plan(seed)):
            first = first or time.perf_counter()
            optimise(net, cur, idx, x, y, loss_fn, opt, device, amp)
        sync(device)
        end = time.perf_counter()
        return (end - t0) / steps, first - t0, (end - first) / steps

    held = [(i, x.to(device), y.to(device)) for i, x, y in epoch_batches(dataset, plan(99), 0, device)]

    def no_loading():
        sync(device)
        t0 = time.perf_counter()
        for idx, x, y in held:
            optimise(net, cur, idx, x, y, loss_fn, opt, device, amp)
        sync(device)
        return (time.perf_counter() - t0) / steps

    real(0), no_loading()  # warm-up: cuDNN's algorithm search, loader start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    r, n = [], []
    for k in range(2):
        r.append(real(k + 1))
        n.append(no_loading())
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")
    whole, start, running = (float(np.median(col)) for col in zip(*r))
    no_load = float(np.median(n))
    return {"step_s_real": whole, "step_s_no_loading": no_load, "loader_ratio": whole / no_load,
            "loader_start_s": start, "loader_ratio_running": running / no_load, "peak_memory_gb": peak, "net": net}


# The released pipeline's options (clips/models/tmtv_net/pipeline.py), each timed by phase on the whole body and
# compared with the released settings' outputs: the first two must not change them, half precision may.
TMTV_VARIANTS = {
    "released": {},
    "tiles_x4": {"tile_batch": 4},
    "refiner_8ch": {"refiner_channels": 8},
    "tiles_x4_8ch": {"tile_batch": 4, "refiner_channels": 8},
    "bf16": {"tile_batch": 4, "refiner_channels": 8, "autocast": torch.bfloat16},
    "fp16": {"tile_batch": 4, "refiner_channels": 8, "autocast": torch.float16},
}


def tmtv_net_variants(device, case, rows) -> None:
    """The released pipeline (both stages, pre- and post-processing on the device) on one whole body under each
    of TMTV_VARIANTS, after a warm-up on a corner of it (a third of each side, at least two stage-2 tiles: cuDNN's
    algorithm search is per tile shape, and the tiles are the same). Rows per variant: seconds, the phases, and
    against the released settings the relative L2 distance of stage 1's probability and the fraction of mask
    voxels that differ (random weights: the time does not depend on them; the deviation on real weights is a
    site's to measure, docs/tmtv_net.md)."""
    from dataclasses import replace

    shape, spacing, base = case
    rng = np.random.default_rng(0)
    ct, suv = rng.normal(0, 100, shape).astype(np.float32), rng.gamma(1.0, 1.0, shape).astype(np.float32)
    torch.manual_seed(0)
    net = TMTVNet()
    third = tuple(slice(0, max(n // 3, 2 * t)) for n, t in zip(shape, base.stage2_tile))
    reference = None
    for name, options in TMTV_VARIANTS.items():
        if device.type != "cuda" and (options.get("autocast") is torch.float16 or name in ("tiles_x4", "refiner_8ch")):
            continue  # the CPU fallback: float16 convolutions are a GPU's, and the pair runs the two options alone
        cfg = replace(base, **options)
        predict(net, ct[third], suv[third], spacing, device, cfg)
        sync(device)
        t0 = time.perf_counter()
        pred = predict(net, ct, suv, spacing, device, cfg)
        sync(device)
        rows[f"tmtv_{name}_s"] = time.perf_counter() - t0
        rows[f"tmtv_{name}_phases"] = ", ".join(f"{k} {v:.2f}" for k, v in pred.seconds.items())
        if reference is None:
            reference = pred
            continue
        diff = pred.stage1_probability - reference.stage1_probability
        rows[f"tmtv_{name}_stage1_rel_l2"] = float(np.linalg.norm(diff) / np.linalg.norm(reference.stage1_probability))
        rows[f"tmtv_{name}_mask_differs"] = float(np.mean(pred.mask != reference.mask))


def step_variants(device, size, amp: bool, rows) -> None:
    """The step without loading against the card's GEMM rate (``step_achieved_vs_peak``: FLOPs counted by
    torch.utils.flop_counter, forward and backward), and what each setting does to it, as ratios to the default
    in the same run: channels_last_3d off (the default on a GPU has it on), the fused AdamW, and on a GPU
    torch.compile (its compile time apart)."""
    from bench_step import flops_of, gemm_rate

    model, patch, batch = size[:3]
    x = torch.rand(batch, 5, patch, patch, patch, device=device)
    y = (torch.rand(batch, 1, patch, patch, patch, device=device) > 0.9).long()
    none = get_curriculum("none")
    cur = none(None, none.parse_options({}))
    loss_fn, idx = TMTVLoss(), np.arange(batch)

    def timed(channels_last=device.type == "cuda", fused=False, compiled=False, steps=5) -> tuple[float, float]:
        torch.manual_seed(0)
        net = SegNet(model).to(device).train()
        if channels_last:
            net.to(memory_format=torch.channels_last_3d)
        forward = torch.compile(net) if compiled else net
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=fused or None)
        t0 = time.perf_counter()
        optimise(forward, cur, idx, x, y, loss_fn, opt, device, amp)  # warm-up (and compilation)
        sync(device)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            optimise(forward, cur, idx, x, y, loss_fn, opt, device, amp)
        sync(device)
        return (time.perf_counter() - t0) / steps, first

    default, _ = timed()
    torch.manual_seed(0)
    net = SegNet(model).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    flops = flops_of(lambda: optimise(net, cur, idx, x, y, loss_fn, opt, device, amp))
    # the card's own dense rate: bf16 8192^2 on a GPU, float32 1024^2 on the CPU fallback
    peak = gemm_rate(8192, 5, device, torch.bfloat16) if device.type == "cuda" else gemm_rate(1024, 5)
    rows["step_tflop"] = flops / 1e12
    rows["gemm_peak_tflops"] = peak / 1e12
    rows["step_achieved_vs_peak"] = flops / default / peak
    rows["step_channels_last_flipped_vs_default"] = timed(channels_last=device.type != "cuda")[0] / default
    rows["step_fused_adamw_vs_default"] = timed(fused=True)[0] / default
    if device.type == "cuda":
        step_s, first = timed(compiled=True)
        rows["step_compiled_vs_default"] = step_s / default
        rows["compile_s"] = first


class _Deadline(Exception):
    """A section's time is up (raised by its alarm, caught by :func:`section` alone)."""


@contextlib.contextmanager
def section(rows, name: str, seconds: int):
    """A part of the check with its own deadline: past it, the part stops with a row saying so and the check
    goes on with the next (its rows so far are already in the JSON)."""
    def stop(*_):
        raise _Deadline(name)

    before = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    began = time.perf_counter()
    try:
        yield
        rows[f"section_{name}_s"] = time.perf_counter() - began
    except _Deadline:
        rows[f"section_{name}_s"] = f"stopped at its {seconds} s deadline"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def environment(device) -> dict:
    """What the figures depend on: the card, the CPU, /dev/shm (the loader's workers hand batches through it),
    TF32, versions."""
    import platform
    import shutil

    import monai

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    out = {"env_cpu": f"{cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
           "env_dev_shm_gb": shutil.disk_usage("/dev/shm").total / 1e9 if Path("/dev/shm").exists() else 0.0,
           "env_versions": f"python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}"}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out |= {"env_gpu": f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs",
                "env_cuda": f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}",
                "env_tf32": f"matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}"}
    return out


def end_to_end(size, device, folder: Path) -> dict:
    """One real MLflow training of a few steps through the command line, in its own store and home."""
    env = dict(os.environ, CLIPS_HOME=str(folder / "home"), MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db")
    cmd = [sys.executable, "-m", "clips", "train", "-P", f"profile={size[6]}", "-P", "epochs=1", "-P",
           "steps_per_epoch=3", "-P", f"device={device.type}", "-P", "example.patients=6", "-P",
           f"example.spacing_mm={size[4]}"]  # the example cohort's files at the size's spacing, as above
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    ok = out.returncode == 0 and "best val Dice" in out.stdout
    return {"e2e_ok": ok, "e2e_s": time.perf_counter() - t0,
            "e2e_tail": "" if ok else (out.stdout + out.stderr)[-1500:]}


class Table(dict):
    """The rows, printed and written to ``path`` (JSON) as each is measured: a run stopped at its time limit
    keeps what it measured."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if key != "e2e_tail":
            print(f"{key:<26}  {value:.4g}" if isinstance(value, float) else f"{key:<26}  {value}", flush=True)
        self.path.write_text(json.dumps(self, indent=1))

    def __ior__(self, other):
        for k, v in other.items():
            self[k] = v
        return self


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="small sizes (the CPU fallback the suite runs)")
    ap.add_argument("--workers", type=int, default=-1, help="loader processes (default: as a training takes them)")
    ap.add_argument("--out", type=Path, default=Path("."))
    a = ap.parse_args()
    device = resolve_device("auto")
    kind = "tiny" if a.tiny or device.type != "cuda" else "gpu"
    size = SIZES[kind]
    folder = Path(tempfile.mkdtemp(prefix="clips-device-check-"))
    workers = default_workers(device) if a.workers < 0 else a.workers
    rows = Table(Path(os.environ.get("OUT") or a.out) / "device_check.json")  # the device tool's $OUT if given
    cpu = f"cpu ({torch.get_num_threads()} threads)"
    rows["device"] = torch.cuda.get_device_name() if device.type == "cuda" else cpu
    rows |= {"torch": torch.__version__, "model": size[0], "patch": size[1], "batch": size[2],
             "loader_workers": workers}
    rows |= environment(device)
    amp = device.type == "cuda"  # bf16 autocast is a GPU's
    # Each part has its deadline (seconds on an H100, the 5 minutes of work in all); the CPU fallback's
    # tiny sizes finish each well inside it.
    with section(rows, "end_to_end", 90):
        rows |= end_to_end(size, device, folder / "e2e")  # first: it proves the environment in a few seconds
    with section(rows, "step", 60):
        step_variants(device, size, amp, rows)
    with section(rows, "loader", 120):
        # one cohort for every loader variant, its files at the size's spacing (the 4 mm example files on a GPU;
        # no finer than the run needs on the CPU fallback, where generating whole bodies at 4 mm was most of its
        # time)
        _, cases = generated_cases(folder, 4, size[4], file_mm=size[4])
        fp32 = step_times(device, size, amp=False, workers=workers, cases=cases)
        rows |= {f"fp32_{k}": v for k, v in fp32.items() if k != "net"}
        if amp:  # on the CPU a second pass would measure the same work again
            bf16 = step_times(device, size, amp=True, workers=workers, cases=cases)
            rows |= {f"bf16_{k}": v for k, v in bf16.items() if k != "net"}
            rows["bf16_vs_fp32_step"] = bf16["step_s_no_loading"] / fp32["step_s_no_loading"]
        on_device = step_times(device, size, amp=amp, workers=workers, cases=cases, on_device=True)
        rows |= {f"bf16_augment_on_device_{k}": v for k, v in on_device.items() if k != "net"}
        rows["inference_s"] = whole_body_inference_s(on_device["net"], device, size[1], size[2], size[5])
        rows["inference_volume"] = "x".join(map(str, size[5]))
    with section(rows, "augment", 30):
        import bench_augment_on_device  # the noise and the preset per patch, host against device

        measured = bench_augment_on_device.main(["--device", str(device), "--size", str(size[1]), "--patches", "4"])
        rows |= {f"augment_{k}": v for k, v in measured.items()}
    with section(rows, "tmtv_net", 120):
        rows["tmtv_net_volume"] = "x".join(map(str, TMTV_CASES[kind][0][::-1]))
        tmtv_net_variants(device, TMTV_CASES[kind], rows)
    if rows.get("e2e_tail"):
        print(rows["e2e_tail"])
    sys.exit(0 if rows.get("e2e_ok") else 1)


if __name__ == "__main__":
    main()
