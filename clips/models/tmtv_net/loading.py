"""Loading the released weights: ``e_latest.model`` (the stage-1 ensemble) and ``r_latest.model`` (the refiner).

A released file is a plain state_dict saved by ``torch.save``; it is read with ``weights_only=True`` (no pickled
code runs) and must match the architecture exactly: every key, shape and dtype, none missing, none extra. A
file that does not is refused with one line naming the file and the first offending key, before anything is
loaded, so a network is never half-loaded.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from clips.errors import ClipsError
from clips.models.tmtv_net._refiner import Refiner
from clips.models.tmtv_net._stacking import Stacking


class TMTVNet(nn.Module):
    """The released two-stage network. ``stage1(x)``: (N, 5, D, H, W) preprocessed channels -> the stacking
    layer's logits (N, 2, D, H, W); ``stage1.members[i](x)``: the i-th U-Net's logits; ``stage2(x6)``: (N, 6, ...)
    with stage 1's foreground probability as the sixth channel -> the refiner's output (N, 2, ...)."""

    def __init__(self):
        super().__init__()
        self.stage1 = Stacking()
        self.stage2 = Refiner()
        self.loaded: dict[str, str] = {}  # "ensemble"/"refiner" -> sha256 of the file loaded

    def forward(self, x):
        return self.stage1(x)


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ClipsError(f"{path}: no such file (the released TMTV-Net {what})")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a zip, pickle or torch error: one line naming the file
        raise ClipsError(f"{path}: not a PyTorch state_dict ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    if not isinstance(sd, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise ClipsError(f"{path}: not a state_dict (a mapping of names to tensors), but a {type(sd).__name__}")
    return sd


def check_matches(sd: dict[str, torch.Tensor], module: nn.Module, path: str | Path) -> None:
    """Refuses, naming the first offending key, a state_dict that is not exactly ``module``'s."""
    want = module.state_dict()
    for key, ref in want.items():
        if key not in sd:
            raise ClipsError(f"{path}: key {key} is missing ({len(set(want) - set(sd))} missing in all)")
        got = sd[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise ClipsError(f"{path}: key {key} has shape {tuple(got.shape)}, the released network's is "
                             f"{tuple(ref.shape)}")
        if got.dtype != ref.dtype:
            raise ClipsError(f"{path}: key {key} is {got.dtype}, the released network's is {ref.dtype}")
    extra = [k for k in sd if k not in want]
    if extra:
        raise ClipsError(f"{path}: key {extra[0]} is not in the released network ({len(extra)} extra in all)")


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_released(ensemble: str | Path | None = None, refiner: str | Path | None = None) -> TMTVNet:
    """The released TMTV-Net with the weights of either file or both (a stage without its file keeps the
    official initialisation); in eval mode. Both files are checked before either is loaded."""
    net = TMTVNet()
    parts = [(p, m, what) for p, m, what in ((ensemble, net.stage1, "ensemble"), (refiner, net.stage2, "refiner"))
             if p is not None]
    read = [(read_state_dict(p, what), m, p, what) for p, m, what in parts]
    for sd, module, path, _ in read:
        check_matches(sd, module, path)
    for sd, module, path, what in read:
        module.load_state_dict(sd, strict=True)
        net.loaded[what] = sha256(path)
    return net.eval()
