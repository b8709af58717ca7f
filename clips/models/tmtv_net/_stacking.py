"""Stage 1 as released (ARCHITECTURE.md section 3): four U-Nets and a learned 1^3 stacking convolution.

Each member's foreground *probability* (softmax over its two logits, channel 1) is computed without gradients
and detached; the four maps, in member order, go through ``staking_blocks`` (sic: the released key),
Conv3d(4, 2, 1), whose output is the stage-1 logits. Training the ensemble trains only that layer.
"""
from __future__ import annotations

import torch
from torch import nn

from clips.models.tmtv_net._unet import UNet

MEMBERS = 4


class Stacking(nn.Module):
    def __init__(self):
        super().__init__()
        self.base_models = nn.ModuleList(UNet() for _ in range(MEMBERS))
        self.staking_blocks = nn.Conv3d(MEMBERS, 2, kernel_size=1, bias=True)
        with torch.no_grad():  # an average before training, as the official initialisation
            self.staking_blocks.weight.fill_(1.0 / MEMBERS)
            self.staking_blocks.bias.zero_()

    @property
    def members(self) -> nn.ModuleList:
        return self.base_models

    def member_probabilities(self, x) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([torch.softmax(m(x), dim=1)[:, 1:2] for m in self.base_models], dim=1).detach()

    def forward(self, x):
        return self.staking_blocks(self.member_probabilities(x))
