"""On-the-fly augmentation of training patches, with MONAI's transforms (none written here).

A preset is a list of MONAI dictionary transforms over ``{"image": (5, X, Y, Z), "label":
(1, X, Y, Z)}``: spatial ones move image and label together (the label with nearest-neighbour
interpolation), intensity ones touch the image only. Every patch carries its own seed, drawn
by the training process, so a run is reproducible whatever the number of loader workers.
The probabilities and ranges follow nnU-Net's default augmentation, as MONAI expresses it.

``default`` and ``strong`` give the blur and the low-resolution simulation in voxels, as nnU-Net does for its
native grids (about 2 mm): at CLIPS's 8 mm the simulation goes down to 16 mm and erases small lesions whose labels
stay, and brightness, contrast and gamma change the SUV that defines a lesion (SUV > 4). ``physical`` states those
scales in millimetres (blur 1-2 mm, simulated voxels at most 4 mm, each left out where the grid is already
coarser) and applies the intensity transforms to the CT channels only, so the PET channels keep their absolute
SUV (issue #39; whether it helps is measured in docs/results.md).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandSimulateLowResolutiond,
)

from clips.data.preprocess import CHANNEL_WINDOWS
from clips.errors import ConfigError

KEYS = ("image", "label")
PLACES = ("loader", "device")  # where a training augments (TrainConfig.augment_on)
# ``physical``: the image split by modality, so that intensity transforms can leave the PET (SUV) channels alone
CT_CHANNELS = [c for c, (kind, _, _) in enumerate(CHANNEL_WINDOWS) if kind == "ct"]
PET_CHANNELS = [c for c, (kind, _, _) in enumerate(CHANNEL_WINDOWS) if kind == "pet"]
PHYSICAL_KEYS = ("ct", "pet", "label")
BLUR_MM = (1.0, 2.0)  # nnU-Net's 0.5-1 voxel at its ~2 mm grids
COARSEST_MM = 4.0  # nnU-Net's low-resolution simulation at its ~2 mm grids: voxels down to 2x, about 4 mm
ROTATE = math.radians(15)  # nnU-Net rotates up to 30 degrees; whole-body PET is acquired in a fixed pose


class _TorchGaussianNoised(RandGaussianNoised):
    """MONAI's RandGaussianNoised with the noise drawn by torch where the image lies (``augment_on=device``).

    MONAI draws the noise with NumPy on the host: for a 5 x 128^3 patch, 10 M normal numbers and a 40 MB upload in
    the training process, serial with the step. This one draws from its own random state what MONAI's draws
    (whether, and the spread) and then a seed for a torch generator on the image's device, so a patch's seed still
    fixes its noise; the noise's numbers differ from the NumPy ones, its distribution does not. Every other
    transform of the preset draws what it draws in a worker: MONAI's Compose gives each transform its own random
    state."""

    def __call__(self, data):
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        spread = self.rand_gaussian_noise
        std = spread.R.uniform(0, spread.std) if spread.sample_std else spread.std
        first = d[self.first_key(d)]
        generator = torch.Generator(device=first.device).manual_seed(int(spread.R.randint(2 ** 31)))
        noise = torch.randn(first.shape, generator=generator, device=first.device) * std + spread.mean
        for key in self.key_iterator(d):  # every key the same noise, as MONAI's
            d[key] = d[key].float() + noise
        return d


def _noise(keys, device) -> object:
    noised = RandGaussianNoised if device is None else _TorchGaussianNoised
    return noised(keys, prob=0.1, std=0.02)


def _spatial(elastic: bool, keys=KEYS, device=None) -> list:
    """``device``: where the sampling grids are made (None: the host, as in a worker; a training device's batch
    gets them there, not built on the host and uploaded)."""
    modes = ("bilinear",) * (len(keys) - 1) + ("nearest",)  # the label is the last key
    out = [RandAffined(keys, prob=0.2, rotate_range=(ROTATE,) * 3, scale_range=(0.15,) * 3,
                       mode=modes, padding_mode="zeros", device=device)]
    if elastic:
        out.append(Rand3DElasticd(keys, sigma_range=(5, 8), magnitude_range=(50, 150), prob=0.1,
                                  mode=modes, padding_mode="zeros", device=device))
    return out + [RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(3)]


def _intensity(device=None) -> list:
    return [
        _noise("image", device),
        RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
        RandScaleIntensityd("image", prob=0.15, factors=0.25),  # brightness: x (1 +- 0.25)
        RandScaleIntensityFixedMeand("image", prob=0.15, factors=0.25, preserve_range=True),  # contrast
        RandSimulateLowResolutiond("image", prob=0.25, zoom_range=(0.5, 1.0)),
        RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5), retain_stats=True),  # gamma
    ]


def _physical(spacing_mm, device=None) -> list:
    """nnU-Net's default augmentation with its scales in millimetres and the SUV left alone (module docstring)."""
    finest = min(spacing_mm)
    out = _spatial(elastic=False, keys=PHYSICAL_KEYS, device=device) + [
        _noise("ct", device),
        RandScaleIntensityd("ct", prob=0.15, factors=0.25),
        RandScaleIntensityFixedMeand("ct", prob=0.15, factors=0.25, preserve_range=True),
        RandAdjustContrastd("ct", prob=0.3, gamma=(0.7, 1.5), retain_stats=True)]
    if BLUR_MM[1] / finest >= 0.5:  # a blur of under half a voxel changes nothing the network can see
        sigma = tuple(b / finest for b in BLUR_MM)
        out.append(RandGaussianSmoothd(("ct", "pet"), prob=0.2, sigma_x=sigma, sigma_y=sigma, sigma_z=sigma))
    if max(spacing_mm) < COARSEST_MM:
        zoom = (max(spacing_mm) / COARSEST_MM, 1.0)  # simulated voxels of at most COARSEST_MM
        out.append(RandSimulateLowResolutiond(("ct", "pet"), prob=0.25, zoom_range=zoom))
    return out


# name -> transforms for a grid of spacing_mm (x, y, z), computing on ``device`` (None: as in a loader worker)
PRESETS = {
    "none": lambda spacing_mm, device=None: [],
    "default": lambda spacing_mm, device=None: _spatial(False, device=device) + _intensity(device),
    # elastic deformation: slower; its offset field is still drawn by NumPy on the host, a grid's worth of numbers
    "strong": lambda spacing_mm, device=None: _spatial(True, device=device) + _intensity(device),
    "physical": _physical,
}


class Augmentation:
    """A preset, applied to one patch with that patch's own seed; ``spacing_mm`` is the grid's (``physical``
    sizes its blur and low-resolution simulation by it)."""

    def __init__(self, name: str, spacing_mm=(8.0, 8.0, 8.0)):
        if name not in PRESETS:
            raise ConfigError(f"unknown augmentation {name!r}; known: {', '.join(PRESETS)}")
        self.name, self.spacing_mm = name, tuple(float(s) for s in spacing_mm)
        self.transforms = PRESETS[name](self.spacing_mm)
        self.compose = Compose(self.transforms) if self.transforms else None
        self._on: dict[torch.device, Compose] = {}  # the preset made for each training device it has met

    def device_compose(self, device: torch.device | str) -> Compose:
        """The preset computing on ``device``: the same transforms in the same order (so the same random draws
        per transform), with the sampling grids made there and the noise drawn there (:class:`_TorchGaussianNoised`)."""
        device = torch.device(device)
        if device not in self._on:
            self._on[device] = Compose(PRESETS[self.name](self.spacing_mm, device))
        return self._on[device]

    def __bool__(self) -> bool:
        return self.compose is not None

    def __call__(self, image: np.ndarray, label: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One patch on the CPU (a loader worker): image (5, X, Y, Z) float32, label (X, Y, Z)."""
        if self.compose is None:
            return image, label
        out = self._apply(image, label[None].astype(np.float32), seed)
        return np.asarray(out[0], dtype=np.float32), np.asarray(out[1])[0].round().astype(np.int64)

    def on_device(self, x: torch.Tensor, y: torch.Tensor, seeds) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch where it lies (``augment_on=device``: a GPU, after the upload): x (N, 5, X, Y, Z) float16 or
        float32, y (N, 1, X, Y, Z) -> float32, int64. Each patch with its own seed, which draws the same transform
        parameters as in a worker, so a seed still means one training (the noise's numbers alone differ, drawn by
        torch on the device); MONAI's transforms compute on the tensors' device, with its metadata tracking off
        (plain tensors, nothing to carry)."""
        x, y = x.float(), y.long()
        if self.compose is None:
            return x, y
        from monai.data import get_track_meta, set_track_meta

        compose = self.device_compose(x.device)
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            outs = [self._apply(image, label.float(), seed, compose) for image, label, seed in zip(x, y, seeds)]
        finally:
            set_track_meta(tracking)
        return (torch.stack([torch.as_tensor(o[0]).float() for o in outs]),
                torch.stack([torch.as_tensor(o[1]).round().long() for o in outs]))

    def _apply(self, image, label, seed: int, compose: Compose | None = None):
        """(image, label (1, X, Y, Z) float) through the preset (``compose``: the device's; None: the worker's)
        with ``seed``: NumPy arrays or tensors alike."""
        compose = self.compose if compose is None else compose
        compose.set_random_state(seed=int(seed) % (2 ** 32))
        if self.name != "physical":
            out = compose({"image": image, "label": label})
            return out["image"], out["label"]
        out = compose({"ct": image[CT_CHANNELS], "pet": image[PET_CHANNELS], "label": label})
        ct, pet = out["ct"], out["pet"]
        if isinstance(ct, torch.Tensor):
            merged = torch.empty((len(CHANNEL_WINDOWS), *ct.shape[1:]), dtype=torch.float32, device=ct.device)
        else:
            merged = np.empty((len(CHANNEL_WINDOWS), *np.asarray(ct).shape[1:]), np.float32)
            ct, pet = np.asarray(ct), np.asarray(pet)
        merged[CT_CHANNELS], merged[PET_CHANNELS] = ct, pet
        return merged, out["label"]
