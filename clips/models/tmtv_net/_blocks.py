"""The released TMTV-Net's building blocks, named so that their parameters carry the released state_dict's keys.

The official code nests every layer in small containers whose attribute is always ``ops``; the released
files' keys spell that nesting out (``...downs.0.ops.ops.0.ops.0.weight``). Two containers reproduce it:
:class:`Seq` (``ops`` is a Sequential of layers) and :class:`Wrap` (``ops`` is one module).
"""
from __future__ import annotations

from torch import nn

NEGATIVE_SLOPE = 0.01  # LeakyReLU everywhere (ARCHITECTURE.md section 1)


class Seq(nn.Module):
    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.ops = nn.Sequential(*layers)

    def forward(self, x):
        return self.ops(x)


class Wrap(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.ops = inner

    def forward(self, *args):
        return self.ops(*args)


def conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> Seq:
    """A conv with 'same' zero padding (k // 2), in its container (keys ``ops.0.weight``)."""
    return Seq(nn.Conv3d(cin, cout, k, stride=stride, padding=k // 2, bias=bias))


def norm(channels: int) -> nn.InstanceNorm3d:
    # affine, no running statistics: each sample's own statistics, in eval() too (no buffers in the files)
    return nn.InstanceNorm3d(channels, eps=1e-5, affine=True, track_running_stats=False)


def conv_norm_act(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> Seq:
    """Conv3d, then InstanceNorm3d, then LeakyReLU (keys ``ops.0.ops.0.*`` conv, ``ops.1.*`` norm)."""
    return Seq(conv(cin, cout, k, stride, bias), norm(cout), nn.LeakyReLU(NEGATIVE_SLOPE))
