"""Progressive growing of patch size (Fischer et al., MICCAI 2024; extended 2025).

The training patch grows in stages from a small size to the configured one; sliding-window
validation and inference always use the configured size. Stages are the patch sizes from
``start`` to the final size in steps of the network's stride, each equally long, the final
one reached at ``full_at`` of the run (0: the paper's schedule, every stage equally long
over the whole run, so the final size is trained for the last 1/n of it).

``axes``: ``together`` (the default, CLIPS's reading) grows every axis at each stage, 16^3, 24^3, ..., 48^3 in 5
stages; ``cycle`` is the paper's code, one axis per stage in turn (x, then y, then z), 16^3, 24x16x16,
24x24x16, 24^3, ..., 48^3 in 13 stages. The default stays until a study compares the two (docs/curricula.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clips.curricula.base import Curriculum
from clips.errors import ConfigError
from clips.models.unet import MIN_PATCH, PATCH_MULTIPLE

MODES = ("performance", "resource_efficient")
AXES = ("together", "cycle")


@dataclass
class ProgressivePatchOptions:
    # performance: the batch grows as the patch shrinks, so each step sees about the voxels of a
    # full-size batch (same steps as the baseline, more samples); resource_efficient: the batch
    # stays, so small-patch steps are cheaper (same samples as the baseline, less time).
    mode: str = "performance"
    start: int = 0  # first patch edge in voxels; 0: the smallest the network allows (MIN_PATCH, 16)
    full_at: float = 0.0  # fraction of the run at which the final size is reached; 0: the paper's equal stages
    max_batch: int = 16  # performance mode: the largest batch a small patch may get (memory)
    axes: str = "together"  # together: every axis grows each stage; cycle: one axis per stage, as the paper's code

    def validate(self):
        if self.mode not in MODES:
            raise ConfigError(f"unknown progressive_patch mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.axes not in AXES:
            raise ConfigError(f"unknown progressive_patch axes {self.axes!r}; known: {', '.join(AXES)}")
        if self.start and (self.start < MIN_PATCH or self.start % PATCH_MULTIPLE):
            raise ConfigError(f"progressive_patch start={self.start}: 0, or a multiple of {PATCH_MULTIPLE} "
                              f"of at least {MIN_PATCH}")
        if not 0 <= self.full_at <= 1 or self.max_batch < 1:
            raise ConfigError("progressive_patch needs 0 <= full_at <= 1 and max_batch >= 1")


def stages(start: int, final: tuple, axes: str = "together") -> list[tuple]:
    """Patch sizes from ``start`` (per axis, capped at the final size) to ``final``, growing by the stride:
    every axis at each stage, or with ``axes="cycle"`` one axis per stage in turn."""
    first = [min(max(start, MIN_PATCH), f) for f in final]
    if axes == "cycle":
        out, size, axis = [tuple(first)], list(first), 0
        while tuple(size) != tuple(final):
            while size[axis] >= final[axis]:
                axis = (axis + 1) % len(size)
            size[axis] = min(final[axis], size[axis] + PATCH_MULTIPLE)
            out.append(tuple(size))
            axis = (axis + 1) % len(size)
        return out
    n = 1 + max((f - s) // PATCH_MULTIPLE for s, f in zip(first, final))
    # every axis grows from its start to its final size in the same number of stages
    steps = [(f - s) / PATCH_MULTIPLE for s, f in zip(first, final)]
    return [tuple(s + PATCH_MULTIPLE * round(d * k / max(n - 1, 1)) for s, d in zip(first, steps)) for k in range(n)]


class ProgressivePatch(Curriculum):
    """The training patch grows from small to full size during training."""

    name = "progressive_patch"
    paper = "Fischer et al. 2024 (progressive growing of patch size, MICCAI); extended version 2025"
    Options = ProgressivePatchOptions

    @classmethod
    def final_epoch_fraction(cls, options, n_stages: int) -> float:
        return options.full_at or (n_stages - 1) / n_stages

    @classmethod
    def ramp_epochs(cls, options, epochs):
        # the stage count depends on the patch size, unknown here: the paper's schedule at most reaches 1
        return (options.full_at or 1.0) * epochs

    def __init__(self, ctx, options):
        super().__init__(ctx, options)
        self.patch: tuple = ()
        self.batch = 0

    def sample_shape(self, epoch, patch_size, batch_size):
        sizes = stages(self.opt.start, tuple(patch_size), self.opt.axes)
        self.patch = sizes[self.stage(self.schedule_epoch(epoch), len(sizes))]
        self.batch = batch_size
        if self.opt.mode == "performance":
            ratio = math.prod(patch_size) / math.prod(self.patch)
            self.batch = max(batch_size, min(self.opt.max_batch, int(batch_size * ratio)))
        return self.patch, self.batch

    def stage(self, epoch: int, n_stages: int) -> int:
        """The stage trained at ``epoch`` of the growing schedule."""
        # the epoch from which the final size is trained; at the latest the run's last epoch
        full = min(self.final_epoch_fraction(self.opt, n_stages) * self.ctx.epochs, self.ctx.epochs - 1)
        return n_stages - 1 if epoch >= full else min(n_stages - 1, int(epoch / full * (n_stages - 1)))

    def schedule_epoch(self, epoch: int) -> int:
        """The epoch of the growing schedule whose stage ``epoch`` trains: itself (the control arm reorders)."""
        return epoch

    def log_state(self):
        return {"patch_size": float(max(self.patch)) if self.patch else 0.0, "batch_size": float(self.batch)}


class PatchMix(ProgressivePatch):
    """progressive_patch's patches and batches without its growth: the same stages, in a shuffled order."""

    # The control arm of progressive_patch (issue #39): every epoch trains one of progressive_patch's stages (patch
    # and batch), each stage for exactly as many epochs as progressive_patch gives it, so the two arms see the same
    # patches, batches and voxels in the same steps; only the order differs: a random permutation of the epochs,
    # fixed by the seed, instead of small to large. progressive_patch:patch_mix isolates the curriculum (the
    # growing order) from the larger number of smaller patches per step.
    name = "patch_mix"
    paper = "control arm of progressive_patch (Fischer et al. 2024): its stages in a random order"

    def __init__(self, ctx, options):
        super().__init__(ctx, options)
        self.order = np.random.default_rng([ctx.seed, 39]).permutation(ctx.epochs)

    @classmethod
    def ramp_epochs(cls, options, epochs):
        return 0.0  # no ramp: the final size may come at any epoch

    def schedule_epoch(self, epoch: int) -> int:
        return int(self.order[epoch])
