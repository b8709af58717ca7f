"""CPU, memory and GPU use of a training, one sample per epoch, logged as ``system/*`` metrics with the epoch's.

Why not MLflow's system-metrics monitor: its thread asks the server for the run every few seconds and a
run's end waits for it, so a lost server (docs/reliability.md) would hang the end of a training. These
samples travel with the epoch metrics through the same outage-proof path. Standard library and torch only.
"""
from __future__ import annotations

import os
import resource
import time

import torch


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime  # children: finished loaders


def _resident_gb() -> float:
    try:
        with open("/proc/self/statm") as fh:  # Linux: current resident set
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # elsewhere: the peak (kB on Linux)


class SystemSampler:
    def __init__(self, device: torch.device):
        self.device = device
        self._last = (time.perf_counter(), _cpu_seconds())

    def sample(self) -> dict[str, float]:
        """Use since the previous sample: CPU as a share of all cores, resident memory, GPU memory peak."""
        now, cpu = time.perf_counter(), _cpu_seconds()
        wall = max(now - self._last[0], 1e-9)
        out = {"system/cpu_percent": 100.0 * (cpu - self._last[1]) / wall / (os.cpu_count() or 1),
               "system/memory_gb": _resident_gb()}
        self._last = (now, cpu)
        if self.device.type == "cuda":
            out["system/gpu_memory_peak_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
            torch.cuda.reset_peak_memory_stats(self.device)
            try:
                out["system/gpu_utilization_percent"] = float(torch.cuda.utilization(self.device))
            except Exception:  # noqa: BLE001 - needs NVML (nvidia-ml-py); the memory figure is enough
                pass
        return out
