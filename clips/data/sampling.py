"""Random training patches from preprocessed cases, with a lesion/background ratio."""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from clips.data.preprocess import Case

FG_RULES = ("patch", "batch")  # how lesion-centred patches are drawn (TrainConfig.fg_sampling)


class PatchSampler:
    """Crops ``patch_size`` patches centred on a lesion voxel at the rate ``pos_ratio``, by ``fg_rule``: ``patch``,
    each patch with that probability on its own (a batch may have none); ``batch``, by position in the batch, as
    nnU-Net does: the first :meth:`forced` patches of every batch lesion-centred, the others anywhere."""

    def __init__(self, cases: list[Case], patch_size, pos_ratio: float, fg_rule: str = "patch"):
        self.cases, self.patch, self.pos_ratio = cases, tuple(int(p) for p in patch_size), pos_ratio
        self.fg_rule = fg_rule
        # Lesion voxel coordinates, computed once (labels are small uint8 memory maps).
        self.fg = [np.argwhere(np.asarray(c.label)) if c.label is not None else np.empty((0, 3), int) for c in cases]
        self._scoring: dict[tuple, list[np.ndarray]] = {}

    def scoring_centres(self, i: int, lesion_patches: int = 3) -> list[np.ndarray]:
        """The fixed patches a curriculum scores patient ``i`` on: up to ``lesion_patches`` that
        together cover as many lesion voxels as possible (greedy over the lesions' centres), and
        one background patch at a point fixed by the patient's index."""
        key = (i, self.patch)  # the patch size may change during training (progressive_patch)
        if key not in self._scoring:
            shape = np.array(self.cases[i].image.shape[1:])
            centres = _covering_centres(self.cases[i].label, self.fg[i], self.patch, lesion_patches)
            centres.append(np.random.default_rng(i).integers(0, shape))
            self._scoring[key] = centres
        return self._scoring[key]

    def scoring_batch(self, i: int):
        """(x, y) of patient ``i``'s scoring patches."""
        crops = [self.crop_at(i, c) for c in self.scoring_centres(i)]
        return _stack(crops)

    def choose(self, weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` case indices drawn with probability proportional to ``weights``."""
        p = np.asarray(weights, float)
        p = p / p.sum()
        return rng.choice(len(self.cases), size=n, replace=True, p=p)

    def forced(self, batch_size: int) -> int:
        """With the ``batch`` rule, how many patches of a batch are lesion-centred: ``pos_ratio`` of it, rounded,
        and at least one."""
        return max(1, round(batch_size * self.pos_ratio)) if self.pos_ratio > 0 else 0

    def crop(self, i: int, rng: np.random.Generator, lesion: bool | None = None, patch=None, widen: bool = True):
        """A random patch: centred on a lesion voxel with probability pos_ratio (``lesion`` None), or on one
        whenever the patient has one (True), or anywhere (False); of size ``patch`` (default: the sampler's), in
        float32 and int64 (``widen``) or the cases' stored float16 and uint8."""
        fg = self.fg[i]
        shape = np.array(self.cases[i].image.shape[1:])
        if len(fg) and (rng.random() < self.pos_ratio if lesion is None else lesion):
            center = fg[rng.integers(len(fg))]
        else:
            center = np.array([rng.integers(s) for s in shape])
        return self.crop_at(i, center, patch, widen)

    def crop_at(self, i: int, center, patch=None, widen: bool = True):
        """The patch of patient ``i`` centred on ``center`` (moved inside the volume, zero-padded if larger)."""
        case = self.cases[i]
        patch = tuple(int(p) for p in (patch or self.patch))
        shape = np.array(case.image.shape[1:])
        half = np.array(patch) // 2
        lo = np.clip(center - half, 0, np.maximum(shape - patch, 0))
        sl = tuple(slice(a, a + p) for a, p in zip(lo, patch))
        img = np.asarray(case.image[(slice(None), *sl)], dtype=np.float32 if widen else None)
        lab = np.asarray(case.label[sl], dtype=np.int64 if widen else np.uint8)
        pad = [(0, p - s) for p, s in zip(patch, img.shape[1:])]
        if any(b for _, b in pad):  # volume smaller than the patch along some axis
            img = np.pad(img, [(0, 0), *pad])
            lab = np.pad(lab, pad)
        return img, lab

def _stack(crops):
    """(x (N, C, ...) float32, y (N, 1, ...) int64) from (image, label) crops."""
    return torch.from_numpy(np.stack([c[0] for c in crops])), torch.from_numpy(np.stack([c[1] for c in crops]))[:, None]


def _covering_centres(label, fg: np.ndarray, patch, k: int) -> list[np.ndarray]:
    """Up to ``k`` lesion-component centres whose patches greedily cover the most lesion voxels."""
    if not len(fg):
        return []
    comps, n = ndimage.label(np.asarray(label))
    candidates = []
    for j, c in enumerate(ndimage.center_of_mass(np.ones(comps.shape, bool), comps, range(1, n + 1))):
        members = fg[comps[tuple(fg.T)] == j + 1]
        candidates.append(members[np.argmin(((members - np.asarray(c)) ** 2).sum(1))])  # a voxel of the lesion
    half = np.asarray(patch) // 2
    uncovered = np.ones(len(fg), bool)
    chosen: list[np.ndarray] = []
    while len(chosen) < k and uncovered.any():
        cover = [uncovered & np.all(np.abs(fg - c) <= half, axis=1) for c in candidates]
        best = int(np.argmax([m.sum() for m in cover]))
        if not cover[best].any():
            break
        chosen.append(np.asarray(candidates[best]))
        uncovered &= ~cover[best]
    return chosen
