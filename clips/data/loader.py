"""Training batches prepared by background workers while the network computes.

The training process plans each step (clips/training/batch_plan.py: which patients, by the
curriculum's batch hook or a draw by the epoch's weights, and one seed per patch). Workers (torch DataLoader processes)
crop and augment; the plan is pulled as the loader needs it, so a curriculum that decides
per step (``rl_teacher``) decides at most ``workers * PREFETCH`` steps ahead of the step
that trains on it. Every patch's randomness comes from its own seed: batches are the same
whatever the number of workers (up to floating-point rounding: a worker computes with one
thread). Cases stay memory-mapped; workers share them.

A training's workers are persistent (:class:`PatchLoader`): started with its first epoch, fed each epoch's plan,
never restarted; each planned item carries its patch size, so a curriculum that changes it between epochs
(``progressive_patch``) is followed by workers that forked before the change. With ``augment_on=device`` a
worker only crops and hands over the cases' stored float16 image and uint8 label (a quarter of the bytes) and the
patch's augmentation seed; the batch is augmented on the training device (:meth:`Augmentation.on_device`).
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
    """Item (patient index, seed[, lesion-centred[, patch size]]) -> (patient index, image patch, label patch,
    augmentation seed): cropped, and augmented here unless ``on_device`` (then float16 and uint8, augmented by
    the loader on the training device with that seed)."""

    def __init__(self, sampler: PatchSampler, augmentation: Augmentation, on_device: bool = False):
        self.sampler, self.augmentation, self.on_device = sampler, augmentation, on_device

    def __len__(self) -> int:
        return len(self.sampler.cases)

    def __getitem__(self, item):
        i, seed, *rest = item
        lesion, patch = (rest + [None, None])[:2]
        rng = np.random.default_rng(seed)
        image, label = self.sampler.crop(i, rng, lesion, patch, widen=not self.on_device)
        augment_seed = int(rng.integers(2 ** 32))
        if not self.on_device:
            image, label = self.augmentation(image, label, augment_seed)
        return (i, torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(label))[None],
                augment_seed)


def _one_thread(_):
    torch.set_num_threads(1)  # a worker crops and augments; the cores are the training process's


class _Feed:
    """A persistent loader's batch sampler: the DataLoader asks it for an iterator once per epoch, in the training
    process, and gets that epoch's plan."""

    def __init__(self):
        self.plan: Iterator[list] = iter(())

    def __iter__(self):
        return iter(self.plan)


class PatchLoader:
    """The batches of each epoch's plan, prepared by the same ``workers`` processes all training long (0: in this
    process); ``device``: where an ``on_device`` dataset's batches are augmented."""

    def __init__(self, dataset: PatchDataset, workers: int, device: torch.device | str = "cpu"):
        self.dataset, self.device, self.feed = dataset, torch.device(device), _Feed()
        self.loader = DataLoader(dataset, batch_sampler=self.feed, num_workers=workers,
                                 pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                                 prefetch_factor=PREFETCH if workers else None,
                                 worker_init_fn=_one_thread if workers else None,
                                 multiprocessing_context="fork" if workers else None)

    @property
    def workers(self) -> int:
        return self.loader.num_workers

    def epoch(self, plan: Iterator[list]) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """(indices, x, y) for each planned step of one epoch. The workers start on the plan now, not at the first
        batch asked for: a training begins its next epoch before validating this one (clips/training/trainer.py),
        so their first batches are ready when its steps start."""
        self.feed.plan = plan
        return self._batches(iter(self.loader))

    def _batches(self, batches) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        for idx, x, y, seeds in batches:
            if self.dataset.on_device:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                x, y = self.dataset.augmentation.on_device(x, y, seeds.tolist())
            yield idx.numpy(), x, y


def epoch_batches(dataset: PatchDataset, plan: Iterator[list], workers: int, device: torch.device | str = "cpu"):
    """(indices, x, y) for each planned step of one pass, by a loader of its own (a training keeps one
    :class:`PatchLoader` instead, so that its workers start once); batches bound for a GPU ``device`` come in
    pinned memory."""
    yield from PatchLoader(dataset, workers, device).epoch(plan)


__all__ = ["PatchDataset", "PatchLoader", "default_workers", "epoch_batches"]
