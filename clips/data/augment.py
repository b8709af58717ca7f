"""On-the-fly augmentation of training patches, with MONAI's transforms (none written here).

A preset is a list of MONAI dictionary transforms over ``{"image": (5, X, Y, Z), "label":
(1, X, Y, Z)}``: spatial ones move image and label together (the label with nearest-neighbour
interpolation), intensity ones touch the image only. Every patch carries its own seed, drawn
by the training process, so a run is reproducible whatever the number of loader workers.
The probabilities and ranges follow nnU-Net's default augmentation, as MONAI expresses it.
"""
from __future__ import annotations

import math

import numpy as np
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

from clips.errors import ConfigError

KEYS = ("image", "label")
ROTATE = math.radians(15)  # nnU-Net rotates up to 30 degrees; whole-body PET is acquired in a fixed pose


def _spatial(elastic: bool) -> list:
    out = [RandAffined(KEYS, prob=0.2, rotate_range=(ROTATE,) * 3, scale_range=(0.15,) * 3,
                       mode=("bilinear", "nearest"), padding_mode="zeros")]
    if elastic:
        out.append(Rand3DElasticd(KEYS, sigma_range=(5, 8), magnitude_range=(50, 150), prob=0.1,
                                  mode=("bilinear", "nearest"), padding_mode="zeros"))
    return out + [RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in range(3)]


def _intensity() -> list:
    return [
        RandGaussianNoised("image", prob=0.1, std=0.02),
        RandGaussianSmoothd("image", prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)),
        RandScaleIntensityd("image", prob=0.15, factors=0.25),  # brightness: x (1 +- 0.25)
        RandScaleIntensityFixedMeand("image", prob=0.15, factors=0.25, preserve_range=True),  # contrast
        RandSimulateLowResolutiond("image", prob=0.25, zoom_range=(0.5, 1.0)),
        RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5), retain_stats=True),  # gamma
    ]


PRESETS = {
    "none": lambda: [],
    "default": lambda: _spatial(elastic=False) + _intensity(),
    "strong": lambda: _spatial(elastic=True) + _intensity(),  # elastic deformation: slower
}


class Augmentation:
    """A preset, applied to one patch with that patch's own seed."""

    def __init__(self, name: str):
        if name not in PRESETS:
            raise ConfigError(f"unknown augmentation {name!r}; known: {', '.join(PRESETS)}")
        self.name = name
        self.transforms = PRESETS[name]()
        self.compose = Compose(self.transforms) if self.transforms else None

    def __bool__(self) -> bool:
        return self.compose is not None

    def __call__(self, image: np.ndarray, label: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if self.compose is None:
            return image, label
        self.compose.set_random_state(seed=int(seed) % (2 ** 32))
        out = self.compose({"image": image, "label": label[None].astype(np.float32)})
        image = np.asarray(out["image"], dtype=np.float32)
        label = np.asarray(out["label"])[0].round().astype(np.int64)
        return image, label
