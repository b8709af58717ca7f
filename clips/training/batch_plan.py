"""One training step's plan, made in the training process: which patients (the curriculum's ``batch_indices``
hook, or the sampler's draw by the epoch's weights) and one seed per patch. The loader's workers
(clips/data/loader.py) crop and augment what is planned here; the plan is where the curriculum meets the data.
"""
from __future__ import annotations

import numpy as np

from clips.data.sampling import PatchSampler


def plan_batch(curriculum, sampler: PatchSampler, rng: np.random.Generator, weights, batch_size: int) -> list:
    """One step's patches: [(patient index, seed), ...], with the sampler's ``batch`` rule [(patient index, seed,
    lesion-centred), ...]."""
    idx = curriculum.batch_indices(rng, batch_size, weights)
    if idx is None:
        idx = sampler.choose(weights, batch_size, rng)
    seeds = rng.integers(0, 2 ** 63, size=len(idx))
    if sampler.fg_rule == "batch":
        forced = sampler.forced(len(idx))
        return [(int(i), int(s), k < forced) for k, (i, s) in enumerate(zip(idx, seeds))]
    return [(int(i), int(s)) for i, s in zip(idx, seeds)]
