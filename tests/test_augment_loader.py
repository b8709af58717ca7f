"""Augmentation and background loading: seeded, consistent for image and label, the same with any number of workers."""
import numpy as np
import pytest
import torch
from monai.transforms import Compose

from clips.config import build_config
from clips.curricula import get_curriculum
from clips.data.augment import Augmentation, _spatial
from clips.data.loader import PatchDataset, epoch_batches
from clips.data.preprocess import Case
from clips.data.sampling import PatchSampler
from clips.errors import ConfigError
from clips.training.batch_plan import plan_batch


def _cases(n=4, size=24):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        label = np.zeros((size, size, size), np.uint8)
        c = rng.integers(4, size - 8, 3)
        label[c[0]:c[0] + 5, c[1]:c[1] + 4, c[2]:c[2] + 3] = 1
        image = np.repeat(label[None].astype(np.float32), 5, axis=0) * 0.8 + 0.1
        out.append(Case(f"P{i}", image, label, float(label.sum())))
    return out


def test_presets_are_seeded_and_checked():
    aug = Augmentation("default")
    image, label = _cases(1)[0].image, _cases(1)[0].label.astype(np.int64)
    a, b = aug(image, label, 7), aug(image, label, 7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    differs = [not np.array_equal(aug(image, label, s)[0], image) for s in range(10)]
    assert sum(differs) >= 8  # almost every patch is changed by something
    assert set(np.unique(a[1])) <= {0, 1} and a[0].dtype == np.float32 and a[0].shape == image.shape
    assert not Augmentation("none") and Augmentation("none")(image, label, 1)[0] is image
    with pytest.raises(ConfigError, match="unknown augmentation 'heavy'"):
        build_config({"augmentation": "heavy"})
    assert build_config({"profile": "study"}).augmentation == "default" and build_config({}).augmentation == "none"


def test_spatial_transforms_move_image_and_label_together():
    spatial = Compose(_spatial(elastic=True))
    case = _cases(1)[0]
    for seed in range(6):
        spatial.set_random_state(seed=seed)
        out = spatial({"image": case.image.copy(), "label": case.label[None].astype(np.float32)})
        moved = np.asarray(out["image"])[0] > 0.5  # the image channel is the label, scaled
        label = np.asarray(out["label"])[0].round() > 0
        assert label.sum() > 0 and (moved == label).mean() > 0.99


@pytest.mark.parametrize("augmentation", ["none", "default"])
def test_batches_are_the_same_whatever_the_number_of_workers(augmentation):
    sampler = PatchSampler(_cases(), (16, 16, 16), 0.7)
    dataset = PatchDataset(sampler, Augmentation(augmentation))
    none = get_curriculum("none")
    cur = none(None, none.parse_options({}))

    def run(workers):
        rng = np.random.default_rng(3)
        plan = (plan_batch(cur, sampler, rng, np.ones(4), 2) for _ in range(5))
        return list(epoch_batches(dataset, plan, workers)), rng.bit_generator.state

    in_process, state0 = run(0)
    in_workers, state2 = run(2)
    assert state0 == state2  # the plan consumed the training process's generator identically
    for (i0, x0, y0), (i2, x2, y2) in zip(in_process, in_workers, strict=True):
        # the same patches; a worker computes with one thread, so sums may round differently
        assert np.array_equal(i0, i2) and torch.equal(y0, y2) and torch.allclose(x0, x2, atol=1e-5)
        assert x0.shape == (2, 5, 16, 16, 16) and y0.shape == (2, 1, 16, 16, 16) and y0.dtype == torch.int64
