"""Which GPU and how many CPU threads each local worker gets."""
from __future__ import annotations

import os
from dataclasses import dataclass

from clips.errors import ConfigError


@dataclass(frozen=True)
class Slot:
    """One local worker's share of the machine."""

    gpu: str | None  # CUDA device index as the machine numbers it (None: CPU)
    threads: int  # torch threads

    @property
    def env(self) -> dict[str, str]:
        # Pinning through CUDA_VISIBLE_DEVICES: the worker then sees its GPU as cuda:0.
        return {"CUDA_VISIBLE_DEVICES": self.gpu} if self.gpu is not None else {}


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as indices the machine understands (honours CUDA_VISIBLE_DEVICES)."""
    import torch

    if not torch.cuda.is_available():
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if named:
        return [g.strip() for g in named.split(",") if g.strip()][: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def parse_gpus(text: str) -> list[str] | None:
    """``--gpus``: "" or "auto" (every visible GPU), "none" (CPU), or a list "0,1,3"."""
    text = (text or "").strip().lower()
    if text in ("", "auto"):
        return None
    if text == "none":
        return []
    gpus = [g.strip() for g in text.split(",")]
    if not all(g.isdigit() for g in gpus):
        raise ConfigError(f"--gpus {text!r}: comma-separated GPU indices, 'auto' or 'none'")
    return gpus


def assign(workers: int, gpus: list[str], cpu_count: int) -> list[Slot]:
    """``workers`` slots (0: one per GPU, or one on a CPU-only machine): GPUs round-robin, and each worker its
    share of the cores, so that K workers on a CPU machine do not each start a thread per core."""
    if workers < 0:
        raise ConfigError("workers must be at least 1 (or 0: one per GPU)")
    workers = workers or max(len(gpus), 1)
    threads = max(1, cpu_count // workers)
    return [Slot(gpus[i % len(gpus)] if gpus else None, threads) for i in range(workers)]


def local_slots(workers: int, gpus: str, train: dict | None = None) -> list[Slot]:
    """The slots of this machine's workers from the ``--workers`` and ``--gpus`` options (studies and tuning).
    With the shared training parameters ``train``, refuses CPU slots that would oversubscribe the cores."""
    named = parse_gpus(gpus)
    slots = assign(workers, visible_gpus() if named is None else named, os.cpu_count() or 1)
    check_cpu_budget(slots, int((train or {}).get("workers", -1)), os.cpu_count() or 1)
    return slots


def check_cpu_budget(slots: list[Slot], loader_workers: int, cores: int) -> None:
    """On the CPU, every worker's torch threads and loader processes together stay within the cores: two
    CPU-heavy processes on 2 cores slow each other about 8x (OpenMP threads spinning against each other).
    Loader workers default to none on the CPU (``loader_workers`` -1), so the default never oversubscribes."""
    cpu = [s for s in slots if s.gpu is None]
    busy = sum(s.threads + max(loader_workers, 0) for s in cpu)
    if len(cpu) > 1 and busy > cores:
        raise ConfigError(f"{len(cpu)} CPU workers with {cpu[0].threads} thread(s) and {loader_workers} loader "
                          f"process(es) each would keep {busy} processes busy on {cores} cores (each would run "
                          "several times slower): drop -P workers, or use fewer --workers")
