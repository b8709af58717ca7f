"""One training step's plan, made in the training process: which patients (the curriculum's ``batch_indices``
hook, or the sampler's draw by the epoch's weights) and one seed per patch. The loader's workers
(clips/data/loader.py) crop and augment what is planned here; the plan is where the curriculum meets the data.
"""
from __future__ import annotations

import numpy as np

from clips.data.sampling import PatchSampler


def plan_batch(curriculum, sampler: PatchSampler, rng: np.random.Generator, weights, batch_size: int) -> list:
    """One step's patches: [(patient index, seed, lesion-centred, patch size), ...]; lesion-centred is None but
    with the sampler's ``batch`` rule. The patch size is the sampler's now: it travels with the item because a
    persistent loader worker holds a copy of the sampler made when it started (``progressive_patch`` grows it)."""
    idx = curriculum.batch_indices(rng, batch_size, weights)
    if idx is None:
        idx = sampler.choose(weights, batch_size, rng)
    seeds = rng.integers(0, 2 ** 63, size=len(idx))
    forced = sampler.forced(len(idx)) if sampler.fg_rule == "batch" else -1
    return [(int(i), int(s), (k < forced) if forced >= 0 else None, sampler.patch)
            for k, (i, s) in enumerate(zip(idx, seeds))]
