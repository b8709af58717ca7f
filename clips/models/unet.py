"""The segmentation network: a 3D U-Net with deep supervision (MONAI's DynUNet), TMTV-Net style.

:class:`SegNet` pads its input to a multiple of the U-Net's total stride and crops
the output back, so the logged model runs on volumes of any size. In training mode
it returns the deep-supervision heads stacked on dim 1, ``(N, heads, 2, X, Y, Z)``;
in eval mode only the full-resolution logits ``(N, 2, X, Y, Z)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets import DynUNet
from torch import nn

from clips.data.preprocess import N_CHANNELS
from clips.errors import ConfigError

# Encoder channels per level. `large` has the released TMTV-Net's channel widths, nothing else of it (5.3 M
# parameters against 21.6 M per released U-Net: no 9^3 bottleneck, other blocks); the released network is
# clips/models/tmtv_net/. The preset was called `tmtv_net` before 2026-12-01 (RENAMED).
PRESETS = {
    "large": (64, 96, 128, 156),
    "small": (16, 32, 48, 64),
    "tiny": (8, 12, 16, 24),
}
RENAMED = {"tmtv_net": "large"}
DEEP_SUPERVISION_HEADS = 2
# Every preset has four levels, three downsamplings: the U-Net's total stride, the multiple
# every patch side must be (and the smallest patch it can take).
PATCH_MULTIPLE = 8
assert all(2 ** (len(f) - 1) == PATCH_MULTIPLE for f in PRESETS.values())
# Instance normalisation at the bottleneck needs more than one voxel: the smallest training patch side.
MIN_PATCH = 2 * PATCH_MULTIPLE


def dynunet_args(preset: str, in_channels: int = N_CHANNELS, out_channels: int = 2) -> dict:
    """MONAI DynUNet's arguments for a preset: the one definition, which the MONAI bundle export writes out."""
    filters = PRESETS[preset]
    strides = [1] + [2] * (len(filters) - 1)
    return dict(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, kernel_size=[3] * len(filters),
                strides=strides, upsample_kernel_size=strides[1:], filters=list(filters),
                norm_name=("INSTANCE", {"affine": True}), deep_supervision=True,
                deep_supr_num=DEEP_SUPERVISION_HEADS, res_block=True)


class SegNet(nn.Module):
    def __init__(self, preset: str = "small", in_channels: int = N_CHANNELS, out_channels: int = 2):
        super().__init__()
        if preset not in PRESETS:
            raise ConfigError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
        self.preset = preset
        self.multiple = PATCH_MULTIPLE
        self.unet = DynUNet(**dynunet_args(preset, in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        pad = []
        for n in reversed(size):
            pad += [0, (-n) % self.multiple]
        if any(pad):
            x = F.pad(x, pad)
        out = self.unet(x)
        crop = (..., slice(0, size[0]), slice(0, size[1]), slice(0, size[2]))
        return out[crop]


def build_model(preset: str) -> SegNet:
    return SegNet(preset)
