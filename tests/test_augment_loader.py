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


def _plan(sampler, seed: int, steps: int = 3):
    none = get_curriculum("none")
    cur = none(None, none.parse_options({}))
    rng = np.random.default_rng(seed)
    return [plan_batch(cur, sampler, rng, np.ones(len(sampler.cases)), 2) for _ in range(steps)]


def test_a_persistent_loader_keeps_its_workers_and_follows_a_patch_size_change():
    from clips.data.loader import PatchLoader

    sampler = PatchSampler(_cases(), (8, 8, 8), 0.7)
    loader = PatchLoader(PatchDataset(sampler, Augmentation("default")), workers=2)
    first = list(loader.epoch(iter(_plan(sampler, 0))))
    pids = sorted(w.pid for w in loader.loader._iterator._workers)
    sampler.patch = (12, 12, 12)  # what progressive_patch does between epochs, after the workers forked
    second = list(loader.epoch(iter(_plan(sampler, 1))))
    assert [x.shape[2:] for _, x, _ in first] == [(8, 8, 8)] * 3
    assert [x.shape[2:] for _, x, _ in second] == [(12, 12, 12)] * 3 and [y.shape[2:] for *_, y in second] == [
        (12, 12, 12)] * 3
    assert sorted(w.pid for w in loader.loader._iterator._workers) == pids  # the same processes, not new ones
    # and the same batches as a pass that starts its own workers (a training's path is the benchmarks' path)
    again = list(epoch_batches(PatchDataset(sampler, Augmentation("default")), iter(_plan(sampler, 1)), 0))
    for (i0, x0, y0), (i1, x1, y1) in zip(second, again, strict=True):
        assert np.array_equal(i0, i1) and torch.equal(y0, y1) and torch.allclose(x0, x1, atol=1e-5)


def test_a_loader_with_workers_starts_on_the_plan_when_the_epoch_begins():
    """The next epoch begins before validation (clips/training/trainer.py: begin_early): its workers must be
    preparing batches before the first is asked for; in this process (no workers) nothing is drawn ahead."""
    from clips.data.loader import PatchLoader

    sampler = PatchSampler(_cases(), (8, 8, 8), 0.7)
    for workers, ahead in ((1, 2), (0, 0)):  # a worker prepares PREFETCH (2) batches ahead
        pulled = []

        def plan(pulled=pulled):
            for batch in _plan(sampler, 0, steps=4):
                pulled.append(batch)
                yield batch

        loader = PatchLoader(PatchDataset(sampler, Augmentation("none")), workers=workers)
        batches = loader.epoch(plan())
        assert len(pulled) == ahead
        assert len(list(batches)) == 4 and len(pulled) == 4


def _noise_fires(aug: Augmentation, seed: int) -> bool:
    """Whether the device preset's noise transform adds noise to the patch of augmentation seed ``seed`` (its own
    random state, as the preset's Compose seeds it, decides)."""
    from clips.data.augment import _TorchGaussianNoised

    compose = aug.device_compose("cpu")
    compose.set_random_state(seed=seed % 2 ** 32)
    noise = next(t for t in compose.transforms if isinstance(t, _TorchGaussianNoised))
    noise.randomize(None)
    return noise._do_transform


@pytest.mark.parametrize("augmentation", ["none", "default", "physical"])
def test_augmentation_on_the_device_gives_the_workers_batches(augmentation):
    """augment_on=device, through the CPU device: workers hand over float16 and uint8 crops, the batch is
    augmented where it lies with each patch's seed, and it is the batch the workers' augmentation gives: the same
    labels, the same images but where the noise is drawn (by torch on the device, not NumPy: other numbers, the
    same spread), and the same again for the same seeds."""
    from clips.data.loader import PatchLoader

    cases = [Case(c.patient_id, c.image.astype(np.float16), c.label, c.tmtv_ml) for c in _cases()]  # as stored
    sampler = PatchSampler(cases, (16, 16, 16), 0.7)
    aug = Augmentation(augmentation, (4.0, 4.0, 4.0))
    raw = PatchDataset(sampler, aug, on_device=True)
    i, image, label, seed = raw[_plan(sampler, 0)[0][0]]
    assert image.dtype == torch.float16 and label.dtype == torch.uint8 and label.shape == (1, 16, 16, 16)
    steps = 12
    on_device = list(PatchLoader(raw, workers=0, device="cpu").epoch(iter(_plan(sampler, 5, steps))))
    again = list(PatchLoader(raw, workers=0, device="cpu").epoch(iter(_plan(sampler, 5, steps))))
    in_workers = list(epoch_batches(PatchDataset(sampler, Augmentation(augmentation, (4.0, 4.0, 4.0))),
                                    iter(_plan(sampler, 5, steps)), 0))
    plain = list(epoch_batches(PatchDataset(sampler, Augmentation("none")), iter(_plan(sampler, 5, steps)), 0))
    seeds = [raw[item][3] for batch in _plan(sampler, 5, steps) for item in batch]
    fired = [bool(aug) and _noise_fires(aug, s) for s in seeds]
    changed, k = 0, 0
    for (i0, x0, y0), (_, xa, ya), (i1, x1, y1), (_, xp, _) in zip(on_device, again, in_workers, plain, strict=True):
        assert x0.dtype == torch.float32 and y0.dtype == torch.int64 and x0.shape == (2, 5, 16, 16, 16)
        assert set(y0.unique().tolist()) <= {0, 1} and np.array_equal(i0, i1)
        assert torch.equal(x0, xa) and torch.equal(y0, ya)  # a seed is one training
        assert torch.equal(y0, y1)  # the same spatial draws
        for j in range(len(x0)):
            assert torch.allclose(x0[j], x1[j], atol=1e-5) != fired[k]  # the same patch, but for the noise
            k += 1
        changed += not torch.allclose(x0, xp)
    assert (augmentation == "none") == (changed == 0)  # the comparison is not of two untouched crops
    assert augmentation == "none" or 0 < sum(fired) < len(fired)  # both kinds of patch were compared


def test_the_device_noise_is_seeded_gaussian_noise_of_the_preset_spread():
    """_TorchGaussianNoised: MONAI's prob and spread (std drawn in [0, 0.02]), noise of mean 0 drawn by torch where
    the image lies, the same for the same seed, shared by the keys it names."""
    from clips.data.augment import _TorchGaussianNoised

    noise = _TorchGaussianNoised(("a", "b"), prob=1.0, std=0.02)
    data = {"a": torch.zeros(5, 24, 24, 24), "b": torch.ones(5, 24, 24, 24), "c": torch.zeros(3)}
    draws = []
    for seed in (1, 1, 2):
        noise.set_random_state(seed=seed)
        draws.append(noise(data))
    first, same, other = draws
    assert torch.equal(first["a"], same["a"]) and not torch.equal(first["a"], other["a"])
    assert torch.allclose(first["b"] - 1, first["a"], atol=1e-6) and torch.equal(first["c"], data["c"])
    std = float(first["a"].std())
    assert 0 < std <= 0.02 and abs(float(first["a"].mean())) < 4 * std / first["a"].numel() ** 0.5
    never = _TorchGaussianNoised("a", prob=0.0, std=0.02)
    assert never(data)["a"] is data["a"]
