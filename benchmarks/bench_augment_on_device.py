"""What ``augment_on=device`` draws where: the Gaussian noise of one patch as MONAI draws it (NumPy on the host, then
float32) against CLIPS's torch draw on ``--device`` (clips/data/augment.py: _TorchGaussianNoised), and the whole
``default`` preset per patch both ways (the worker's transforms on a host tensor; the device's, grids and noise on
``--device``), each patch with its own seed, in one run.

    python benchmarks/bench_augment_on_device.py [--device cpu] [--size 128] [--patches 8]

On the CPU the two noise draws run on the same cores, so the ratio is a lower bound of what a GPU gains: there the
device's draw is one kernel and the host's is NumPy plus an upload, serial with the step. Prints one line a row.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from _common import sync  # noqa: E402
from monai.data import set_track_meta  # noqa: E402
from monai.transforms import RandGaussianNoised  # noqa: E402

from clips.data.augment import Augmentation, _TorchGaussianNoised  # noqa: E402


def median_s(call, device, patches: int) -> float:
    times = []
    for seed in range(patches):
        sync(device)
        began = time.perf_counter()
        call(seed)
        sync(device)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--patches", type=int, default=8)
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    set_track_meta(False)
    shape = (5, a.size, a.size, a.size)
    image = torch.rand(shape)
    label = (torch.rand((1, *shape[1:])) > 0.9).float()
    rows = {}

    def noise(kind, where):
        transform = kind("image", prob=1.0, std=0.02)
        data = {"image": image.to(where)}

        def call(seed):
            transform.set_random_state(seed=seed)
            transform(data)
        return call

    rows["noise_monai_host_s"] = median_s(noise(RandGaussianNoised, "cpu"), device, a.patches)
    rows["noise_torch_device_s"] = median_s(noise(_TorchGaussianNoised, device), device, a.patches)
    aug = Augmentation("default", (2.0, 2.0, 2.0))
    on_host, on_device = (image, label), (image.to(device), label.to(device))
    rows["preset_worker_s"] = median_s(lambda s: aug._apply(*on_host, s), device, a.patches)
    rows["preset_device_s"] = median_s(lambda s: aug._apply(*on_device, s, aug.device_compose(device)), device,
                                       a.patches)
    for k, v in rows.items():
        print(f"{k}={v:.4f}")
    print(f"noise_host_over_device={rows['noise_monai_host_s'] / rows['noise_torch_device_s']:.2f} "
          f"preset_worker_over_device={rows['preset_worker_s'] / rows['preset_device_s']:.2f} "
          f"(device {device}, {a.size}^3 x 5, median of {a.patches} patches)")
    return rows


if __name__ == "__main__":
    main()
