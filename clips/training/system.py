"""CPU, memory and GPU use of a training, one sample per epoch, logged as ``system/*`` metrics with the epoch's,
and a watch for other work on the machine: on 2 cores a second CPU-heavy process slows a training about 8x
(OpenMP threads spinning against each other, niced or not), so a run that shared its cores says so.

Why not MLflow's system-metrics monitor: its thread asks the server for the run every few seconds and a
run's end waits for it, so a lost server (docs/reliability.md) would hang the end of a training. These
samples travel with the epoch metrics through the same outage-proof path. Standard library and torch only.
"""
from __future__ import annotations

import os
import resource
import time

import torch

from clips.tracking import schema


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime  # children: finished loaders


def _resident_gb() -> float:
    try:
        with open("/proc/self/statm") as fh:  # Linux: current resident set
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # elsewhere: the peak (kB on Linux)


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine have used since boot (Linux /proc/stat), None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait (steal and guest left out)
    return (sum(fields[:7]) - idle) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds() -> float:
    """CPU seconds of this process and its live descendants (loader workers), Linux; else this process."""
    try:
        children: dict[int, list[int]] = {}
        times: dict[int, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    rest = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(entry), int(rest[1])
            children.setdefault(ppid, []).append(pid)
            times[pid] = (int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])) / tick
        total, todo = 0.0, [os.getpid()]
        while todo:
            pid = todo.pop()
            total += times.get(pid, 0.0)
            todo += children.get(pid, [])
        return total
    except (OSError, ValueError, IndexError):
        return _cpu_seconds()


class SystemSampler:
    def __init__(self, device: torch.device):
        self.device = device
        self._last = (time.perf_counter(), _cpu_seconds(), _machine_busy_seconds(), _tree_cpu_seconds())

    def sample(self) -> dict[str, float]:
        """Use since the previous sample: CPU as a share of all cores, resident memory, the cores other
        processes used (``system/other_cores``, Linux), GPU memory peak."""
        now, cpu, machine, tree = time.perf_counter(), _cpu_seconds(), _machine_busy_seconds(), _tree_cpu_seconds()
        wall = max(now - self._last[0], 1e-9)
        out = {"system/cpu_percent": 100.0 * (cpu - self._last[1]) / wall / (os.cpu_count() or 1),
               "system/memory_gb": _resident_gb()}
        if machine is not None and self._last[2] is not None:
            out["system/other_cores"] = max(0.0, (machine - self._last[2] - (tree - self._last[3])) / wall)
        self._last = (now, cpu, machine, tree)
        if self.device.type == "cuda":
            out["system/gpu_memory_peak_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
            torch.cuda.reset_peak_memory_stats(self.device)
            try:
                out["system/gpu_utilization_percent"] = float(torch.cuda.utilization(self.device))
            except Exception:  # noqa: BLE001 - needs NVML (nvidia-ml-py); the memory figure is enough
                pass
        return out


BUSY_CORES = 0.5  # other processes using half a core or more: the run's timings are not comparable


def other_cores(window_s: float = 0.25) -> float | None:
    """Cores that other processes use now, over a short window (None where /proc is not there)."""
    began, machine, tree = time.perf_counter(), _machine_busy_seconds(), _tree_cpu_seconds()
    if machine is None:
        return None
    time.sleep(window_s)
    wall = time.perf_counter() - began
    return max(0.0, (_machine_busy_seconds() - machine - (_tree_cpu_seconds() - tree)) / wall)


class BusyWatch:
    """Notices other work on the machine at the start of a training and in every epoch, and says so once: a
    log line and the run tag ``clips.machine_busy``, so that a slow run explains itself."""

    def __init__(self, log=print):
        self.log, self.said = log, False
        self.at_start = other_cores()

    def tag_if_busy(self, set_tag) -> None:
        """At the start, once the run exists (``set_tag(key, value)``: the run's outage-proof tag setter)."""
        self.note_if_busy(-1, self.at_start, set_tag)

    def note_if_busy(self, epoch: int, cores: float | None, set_tag) -> None:
        """After each epoch (``epoch`` -1: at the start), with the cores other processes used meanwhile."""
        if self.said or cores is None or cores < BUSY_CORES:
            return
        when = "at the start" if epoch < 0 else f"in epoch {epoch + 1}"
        text = (f"other processes used {cores:.1f} of {os.cpu_count()} cores {when} (load average "
                f"{os.getloadavg()[0]:.1f}): this run's timings are not comparable with an idle machine's")
        self.log(f"warning: {text}")
        set_tag(schema.MACHINE_BUSY, text)
        self.said = True
