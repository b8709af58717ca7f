"""Training batches prepared by background workers while the network computes.

The training process plans each step (clips/training/batch_plan.py: which patients, by the
curriculum's batch hook or a draw by the epoch's weights, and one seed per patch). Workers (torch DataLoader processes)
crop and augment; the plan is pulled as the loader needs it, so a curriculum that decides
per step (``rl_teacher``) decides at most ``workers * PREFETCH`` steps ahead of the step
that trains on it. Every patch's randomness comes from its own seed: batches are the same
whatever the number of workers (up to floating-point rounding: a worker computes with one
thread). Cases stay memory-mapped; workers share them.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clips.data.augment import Augmentation
from clips.data.sampling import PatchSampler

PREFETCH = 2  # batches each worker prepares ahead


def default_workers(device: torch.device | str = "cuda") -> int:
    """Loader processes by default. With a GPU: the cores but one, at most 8. On the CPU: none, because the
    step already computes on every core and a worker only competes with it (measured with
    benchmarks/bench_training.py: docs/results.md)."""
    if torch.device(device).type != "cuda":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class PatchDataset(Dataset):
    """Item (patient index, seed[, lesion-centred]) -> (patient index, image patch, label patch), cropped and
    augmented."""

    def __init__(self, sampler: PatchSampler, augmentation: Augmentation):
        self.sampler, self.augmentation = sampler, augmentation

    def __len__(self) -> int:
        return len(self.sampler.cases)

    def __getitem__(self, item):
        i, seed, *lesion = item
        rng = np.random.default_rng(seed)
        image, label = self.sampler.crop(i, rng, lesion[0] if lesion else None)
        image, label = self.augmentation(image, label, int(rng.integers(2 ** 32)))
        return i, torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(label))[None]


def _one_thread(_):
    torch.set_num_threads(1)  # a worker crops and augments; the cores are the training process's


def epoch_batches(dataset: PatchDataset, plan: Iterator[list], workers: int, pin_memory: bool = False):
    """(indices, x, y) for each planned step, prepared by ``workers`` processes (0: in this process)."""
    loader = DataLoader(dataset, batch_sampler=plan, num_workers=workers, pin_memory=pin_memory,
                        prefetch_factor=PREFETCH if workers else None, worker_init_fn=_one_thread if workers else None,
                        multiprocessing_context="fork" if workers else None)
    for idx, x, y in loader:
        yield idx.numpy(), x, y


__all__ = ["PatchDataset", "default_workers", "epoch_batches"]
