"""Stage 1's U-Net as released (ARCHITECTURE.md section 2): 5 channels in, 2 logits out, 21,594,530 parameters.

Init block 3^3 (5 -> 32) at full resolution; four strided 3^3 convolutions down (32 -> 64 -> 96 -> 128 -> 156,
to 1/16); a 9^3 middle convolution; four up blocks, each a trilinear x2 upsampling with a 3^3 conv-norm-act,
then the skip concatenated *first* and a 3^3 conv-norm-act; 1^3 heads on the four up outputs. Inference uses
only the last head; ``backbone.output`` and heads 0-2 are in the weights but never change the output.
Every input side must be a multiple of 16 (the up blocks need the upsampled size to equal the skip's).
"""
from __future__ import annotations

import torch
from torch import nn

from clips.models.tmtv_net._blocks import Seq, Wrap, conv, conv_norm_act, norm

CHANNELS = (64, 96, 128, 156)
IN_CHANNELS = 5  # ct, suv, ct_lung, ct_soft, suv_hot (clips/data/preprocess.py: CHANNEL_WINDOWS, same order)
MULTIPLE = 16


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, skip: int):
        super().__init__()
        self.ops_deconv = Seq(nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False),
                              nn.Conv3d(cin, cout, 3, padding=1), norm(cout), nn.LeakyReLU(0.01))
        self.ops_conv = conv_norm_act(skip + cout, cout, 3)

    def forward(self, x, skip):
        return self.ops_conv(torch.cat([skip, self.ops_deconv(x)], dim=1))


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        widths = (CHANNELS[0] // 2, *CHANNELS)  # 32, 64, 96, 128, 156
        # registered before init_block, as in the official code: the state_dict lists `downs` first
        self.downs = nn.ModuleList(Wrap(conv_norm_act(a, b, 3, stride=2)) for a, b in zip(widths, widths[1:]))
        self.init_block = conv_norm_act(IN_CHANNELS, widths[0], 3)
        self.middle_block = Wrap(conv_norm_act(widths[-1], widths[-1], 9))
        ups = list(zip(widths[:0:-1], widths[-2::-1]))  # (156, 128), (128, 96), (96, 64), (64, 32)
        self.ups = nn.ModuleList(Wrap(UpBlock(a, b, skip=b)) for a, b in ups)
        self.output = Seq(conv(widths[0], 2, 3))  # computed by the official code, discarded: not run here

    def forward(self, x) -> list[torch.Tensor]:
        """The four up-block outputs, coarsest first (128, 96, 64, 32 channels)."""
        skips = [self.init_block(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = self.middle_block(skips.pop())
        outs = []
        for up in self.ups:
            y = up(y, skips.pop())
            outs.append(y)
        return outs


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.outputs = nn.ModuleList(Seq(conv(c, 2, 1)) for c in (128, 96, 64, 32))


class UNet(nn.Module):
    """One member of the ensemble. ``forward(x)``: (N, 5, D, H, W) -> the logits of the head inference uses
    (N, 2, D, H, W); ``heads(x)``: all four heads' logits, coarsest first (deep supervision in training)."""

    def __init__(self):
        super().__init__()
        self.model = Net()

    def heads(self, x) -> list[torch.Tensor]:
        check_size(x)
        return [head(y) for head, y in zip(self.model.outputs, self.model.backbone(x))]

    def forward(self, x):
        check_size(x)
        return self.model.outputs[3](self.model.backbone(x)[-1])


def check_size(x: torch.Tensor) -> None:
    if x.dim() != 5 or x.shape[1] != IN_CHANNELS:
        raise ValueError(f"TMTV-Net takes (N, {IN_CHANNELS}, D, H, W); got {tuple(x.shape)}")
    if any(s % MULTIPLE for s in x.shape[2:]) or max(x.shape[2:]) < 2 * MULTIPLE:
        raise ValueError(f"TMTV-Net stage 1 needs every side a multiple of {MULTIPLE} and one side >= "
                         f"{2 * MULTIPLE}; got {tuple(x.shape[2:])}")
