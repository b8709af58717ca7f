"""Random training patches from preprocessed cases, with a lesion/background ratio."""
from __future__ import annotations

import numpy as np
import torch

from clips.data.preprocess import Case


class PatchSampler:
    """Crops ``patch_size`` patches; with probability ``pos_ratio`` the patch is centred on a lesion voxel."""

    def __init__(self, cases: list[Case], patch_size, pos_ratio: float):
        self.cases, self.patch, self.pos_ratio = cases, tuple(patch_size), pos_ratio
        # Lesion voxel coordinates, computed once (labels are small uint8 memory maps).
        self.fg = [np.argwhere(np.asarray(c.label)) if c.label is not None else np.empty((0, 3), int) for c in cases]

    def choose(self, weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` case indices drawn with probability proportional to ``weights``."""
        p = np.asarray(weights, float)
        p = p / p.sum()
        return rng.choice(len(self.cases), size=n, replace=True, p=p)

    def crop(self, i: int, rng: np.random.Generator | None):
        """A random patch (lesion-centred with probability pos_ratio); with rng=None a fixed one.

        The fixed patch is centred on the median lesion voxel (the volume centre without
        lesions): curricula score each patient on it with one forward pass.
        """
        case, fg = self.cases[i], self.fg[i]
        shape = np.array(case.image.shape[1:])
        if rng is None:
            center = fg[len(fg) // 2] if len(fg) else shape // 2
        elif len(fg) and rng.random() < self.pos_ratio:
            center = fg[rng.integers(len(fg))]
        else:
            center = np.array([rng.integers(s) for s in shape])
        half = np.array(self.patch) // 2
        lo = np.clip(center - half, 0, np.maximum(shape - self.patch, 0))
        sl = tuple(slice(a, a + p) for a, p in zip(lo, self.patch))
        img = np.asarray(case.image[(slice(None), *sl)], dtype=np.float32)
        lab = np.asarray(case.label[sl], dtype=np.int64)
        pad = [(0, p - s) for p, s in zip(self.patch, img.shape[1:])]
        if any(b for _, b in pad):  # volume smaller than the patch along some axis
            img = np.pad(img, [(0, 0), *pad])
            lab = np.pad(lab, pad)
        return img, lab

    def batch(self, indices, rng: np.random.Generator | None):
        crops = [self.crop(int(i), rng) for i in indices]
        x = torch.from_numpy(np.stack([c[0] for c in crops]))
        y = torch.from_numpy(np.stack([c[1] for c in crops]))[:, None]
        return x, y
