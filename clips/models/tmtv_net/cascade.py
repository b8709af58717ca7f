"""Stage-2 fine-tuning: the released refiner trains in CLIPS's loop, fed by the frozen stage-1 ensemble.

``-P model=tmtv_net_released -P finetune=refiner``: :class:`ReleasedCascade` takes CLIPS's (N, 5, X, Y, Z) patch at
the run's spacing (set it to the PET's native spacing: the refiner works on the native grid), computes stage 1's
foreground probability for it as the released pipeline does between its stages (linearly to 6 mm, the ensemble,
the softmax's channel 1, linearly back), and gives the refiner the five channels plus that probability, its
sixth. Only the refiner's 361,796 parameters train; the ensemble stays bit-identical and in eval mode.

What differs from the released pipeline, said plainly (docs/tmtv_net.md): stage 1 sees the patch (or the sliding
window at evaluation), not the whole body tiled at 128 x 96 x 96, so near a patch's border its probability lacks
the context a whole-body pass has; the windowed channels are resampled, where the released pipeline resamples
CT and SUV and windows after (the two differ only where interpolation crosses a window's clipping edge); and the
patch is in CLIPS's grid at the run's spacing, not the file's stored grid. The faithful two-stage inference of
the released files stays clips/models/tmtv_net/pipeline.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clips.models.tmtv_net._refiner import Refiner
from clips.models.tmtv_net.finetune import PRESET, REFINER, ReleasedStage1, released_file

STAGE1_MM = 6.0  # the released stage 1's grid (ARCHITECTURE.md section 5)


class ReleasedCascade(nn.Module):
    preset = PRESET
    multiple = 1  # the refiner is all stride-1 convolutions; stage 1 pads its own input

    def __init__(self, spacing_mm=(STAGE1_MM,) * 3):
        super().__init__()
        self.trainable = REFINER
        self.spacing_mm = tuple(float(s) for s in spacing_mm)
        self.stage1 = ReleasedStage1("stacking")
        self.stage1.requires_grad_(False)
        self.refiner = Refiner()

    def train(self, mode: bool = True):
        super().train(mode)
        self.stage1.eval()  # frozen: its normalisations must not follow the fine-tuning batches
        return self

    def load_released(self, source: str) -> None:
        """Both released files: an imported model (``models:/tmtv-net-released/1``, which holds both) or the two
        files as ``e_latest.model,r_latest.model``; each is checked key by key before it loads."""
        from clips.errors import ClipsError
        from clips.models.tmtv_net.loading import check_matches, read_state_dict

        if source.startswith(("models:/", "runs:/")):
            ensemble, refiner = released_file(source, "ensemble"), released_file(source, "refiner")
        else:
            parts = [p.strip() for p in source.split(",")]
            if len(parts) != 2:
                raise ClipsError(f"init_weights {source}: finetune=refiner needs both released files, "
                                 "e_latest.model,r_latest.model (or an imported model, models:/tmtv-net-released/1)")
            ensemble, refiner = parts
        sd = read_state_dict(refiner, "refiner")
        check_matches(sd, self.refiner, refiner)
        self.stage1.load_released(ensemble)
        self.refiner.load_state_dict(sd, strict=True)

    def stage1_probability(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 5, X, Y, Z) at the run's spacing -> stage 1's foreground probability (N, 1, X, Y, Z) on that grid."""
        size = x.shape[2:]
        at_6mm = [max(2, round(n * s / STAGE1_MM)) for n, s in zip(size, self.spacing_mm)]
        with torch.no_grad():
            small = F.interpolate(x, size=at_6mm, mode="trilinear", align_corners=False)
            prob = torch.softmax(self.stage1(small), dim=1)[:, 1:2]
            return F.interpolate(prob, size=tuple(size), mode="trilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x6 = torch.cat([x, self.stage1_probability(x)], dim=1).permute(0, 1, 4, 3, 2)  # the released (z, y, x)
        return self.refiner(x6).permute(0, 1, 4, 3, 2)
