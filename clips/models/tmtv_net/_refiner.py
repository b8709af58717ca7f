"""Stage 2 as released (ARCHITECTURE.md section 4): a full-resolution refiner of 361,796 parameters.

A 9^3 conv-norm-act (6 -> 32, no biases anywhere), four residual blocks (conv-norm-act, conv-norm, then the
activation after the sum), and a 1^3 conv-norm-act to 2 channels: its "logits" are instance-normalised and
leaky-rectified. The sixth input channel is stage 1's foreground probability on the native PET grid.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from clips.models.tmtv_net._blocks import NEGATIVE_SLOPE, Seq, conv, conv_norm_act, norm

IN_CHANNELS = 6
FEATURES = 32
BLOCKS = 4


class Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = conv_norm_act(channels, channels, 3, bias=False)
        self.block_2 = Seq(conv(channels, channels, 3, bias=False), norm(channels))
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)

    def forward(self, x):
        return self.act(x + self.block_2(self.block_1(x)))


class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.ops = nn.Sequential(conv_norm_act(IN_CHANNELS, FEATURES, 9, bias=False),
                                 *(Residual(FEATURES) for _ in range(BLOCKS)),
                                 conv_norm_act(FEATURES, 2, 1, bias=False))

    def forward(self, x):
        return self.ops(x)


class Refiner(nn.Module):
    """``forward(x6)``: (N, 6, D, H, W) -> (N, 2, D, H, W); any size of more than one voxel."""

    def __init__(self):
        super().__init__()
        self.model = Body()

    @property
    def first_conv(self) -> nn.Conv3d:
        return self.model.ops[0].ops[0].ops[0]  # conv_norm_act -> conv -> Conv3d (the released keys' nesting)

    @property
    def in_channels(self) -> int:
        return self.first_conv.in_channels

    def forward(self, x):
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"the TMTV-Net refiner takes (N, {self.in_channels}, D, H, W); got {tuple(x.shape)}")
        return self.model(x)


def with_input_channels(refiner: Refiner, channels: int) -> Refiner:
    """A copy of ``refiner`` whose first convolution takes ``channels`` inputs: the released 6 and zero weights for
    the rest, so that inputs padded with any values give the released outputs (exact: each added product is 0). The
    9^3 convolution with 6 inputs is about 39 % of stage 2's work, and an odd count of input channels can miss a
    GPU's tensor cores; 8 does not."""
    if channels < IN_CHANNELS:
        raise ValueError(f"the refiner needs at least its {IN_CHANNELS} released input channels; got {channels}")
    padded = copy.deepcopy(refiner)
    old = padded.first_conv
    new = nn.Conv3d(channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                    bias=old.bias is not None).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :IN_CHANNELS] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    padded.model.ops[0].ops[0].ops[0] = new
    return padded
