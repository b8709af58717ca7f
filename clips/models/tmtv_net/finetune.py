"""The released stage-1 ensemble as a CLIPS training network: fine-tuning TMTV-Net with any curriculum.

CLIPS trains on (N, 5, X, Y, Z) patches in RAS order at the profile's spacing; the released network was trained
on (z, y, x) arrays in the files' stored orientation. :class:`ReleasedStage1` transposes to (z, y, x) and back,
pads every side to a multiple of 16 (one side to at least 32) and crops the output, so it takes any patch and
the sliding window. What it does not undo: the axis *directions* of CLIPS's RAS grid may be flipped against a
file's stored order (fine-tuning adapts to it; the released inference pipeline, clips/models/tmtv_net/
pipeline.py, reads the stored order and is the faithful path).

``trainable``: ``stacking`` (the official recipe: the four U-Nets frozen, only the 1^3 stacking layer learns),
``members`` (the U-Nets, stacking frozen), ``members:0,2`` (those U-Nets), ``all``. The members are then trained
through the stacking output (their foreground probabilities with gradients); the official code trains each U-Net
on its own with deep supervision, which this does not reproduce. ``refiner``: stage 2 instead, the refiner fed by the
frozen ensemble (clips/models/tmtv_net/cascade.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clips.errors import ConfigError
from clips.models.tmtv_net._stacking import MEMBERS, Stacking
from clips.models.tmtv_net._unet import MULTIPLE

# The released TMTV-Net's one name: the model preset that fine-tunes it (here) and the kind of its imported MLflow
# model (clips/registry/tmtv_net_import.py), which prediction dispatches on; clips.models exports it as RELEASED_PRESET
PRESET = "tmtv_net_released"
REFINER = "refiner"  # finetune=refiner: stage 2 trains (cascade.py); every other value names a stage-1 part


def is_refiner(text: str) -> bool:
    """``finetune`` names stage 2 (the cascade), not a part of the stage-1 ensemble."""
    return text.strip().lower() == REFINER


def check_trainable(text: str) -> None:
    """Refuses, in one line, a ``finetune`` value that names nothing to train."""
    if not is_refiner(text):
        parse_trainable(text)


def parse_trainable(text: str) -> tuple[bool, tuple[int, ...]]:
    """(stacking trains, indices of the members that train)."""
    t = text.strip().lower()
    if t == "stacking":
        return True, ()
    if t == "all":
        return True, tuple(range(MEMBERS))
    if t == "members":
        return False, tuple(range(MEMBERS))
    if t.startswith("members:"):
        try:
            idx = tuple(sorted({int(i) for i in t[len("members:"):].split(",") if i.strip()}))
        except ValueError:
            idx = ()
        if idx and all(0 <= i < MEMBERS for i in idx):
            return False, idx
    raise ConfigError(f"finetune={text!r}: stacking, members, members:0,2 (indices 0-{MEMBERS - 1}), all or "
                      f"{REFINER}")


class ReleasedStage1(nn.Module):
    preset = PRESET
    multiple = MULTIPLE

    def __init__(self, trainable: str = "stacking"):
        super().__init__()
        self.stage1 = Stacking()
        self.trainable = trainable
        self.stacking_trains, self.members_train = parse_trainable(trainable)
        for p in self.stage1.staking_blocks.parameters():
            p.requires_grad_(self.stacking_trains)
        for i, member in enumerate(self.stage1.members):
            for p in member.parameters():
                p.requires_grad_(i in self.members_train)

    def load_released(self, source: str) -> None:
        """The released weights: an ``e_latest.model`` file or an imported model (``models:/tmtv-net-released/1``)."""
        from clips.models.tmtv_net.loading import check_matches, read_state_dict

        path = released_file(source, "ensemble")
        sd = read_state_dict(path, "ensemble")
        check_matches(sd, self.stage1, path)
        self.stage1.load_state_dict(sd, strict=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = x.permute(0, 1, 4, 3, 2)  # (x, y, z) -> the released (z, y, x)
        pad_to = [n + (-n) % MULTIPLE for n in x.shape[2:]]
        if max(pad_to) < 2 * MULTIPLE:
            pad_to[0] = 2 * MULTIPLE  # one side of at least 32: the 1/16 level needs more than one voxel
        pad = []
        for n, m in zip(reversed(x.shape[2:]), reversed(pad_to)):
            pad += [0, m - n]
        x = F.pad(x, pad)
        with torch.set_grad_enabled(torch.is_grad_enabled() and bool(self.members_train)):
            probs = torch.cat([torch.softmax(m(x), dim=1)[:, 1:2] for m in self.stage1.members], dim=1)
        out = self.stage1.staking_blocks(probs)
        out = out[..., : size[2], : size[1], : size[0]]
        return out.permute(0, 1, 4, 3, 2)


def released_file(source: str, part: str) -> str:
    """A released file's local path: the path itself, or the artifact of an imported model."""
    if source.startswith(("models:/", "runs:/")):
        import mlflow

        from clips.errors import ClipsError

        try:
            root = mlflow.artifacts.download_artifacts(artifact_uri=source)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for a bad URI
            raise ClipsError(f"cannot download {source}: {str(exc).splitlines()[0]}") from None
        from pathlib import Path

        artifacts = mlflow.models.Model.load(root).flavors.get("python_function", {}).get("artifacts", {})
        if part not in artifacts:
            raise ClipsError(f"{source} holds no released TMTV-Net {part} file (import it with "
                             "clips model import-tmtvnet)")
        return str(Path(root) / artifacts[part]["path"])
    return source

