"""The TMTV-Net training loss, L = alpha * L_MS + beta * L_Dice + lambda * L_CE (Eq. 1 of the paper).

Returns one value per sample, so that a curriculum can weight samples. Deep
supervision heads are combined with weights 1, 1/2, 1/4 (normalised), as nnU-Net does.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from clips.data.preprocess import SUV_CHANNEL
from clips.losses.mumford_shah import mumford_shah_loss


@dataclass
class LossWeights:
    alpha: float = 1e-5
    beta: float = 1.0
    lam: float = 2.0
    eta: float = 1.0


class TMTVLoss(nn.Module):
    def __init__(self, weights: LossWeights | None = None):
        super().__init__()
        self.w = weights or LossWeights()
        self.dice = DiceLoss(include_background=False, to_onehot_y=True, softmax=True, reduction="none")

    def single(self, logits: torch.Tensor, target: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample terms for one head: logits (N, 2, ...), target (N, 1, ...) long, image (N, C, ...)."""
        n = logits.shape[0]
        dice = self.dice(logits, target).reshape(n, -1).mean(1)
        ce = F.cross_entropy(logits, target[:, 0], reduction="none").reshape(n, -1).mean(1)
        ms = mumford_shah_loss(logits.softmax(1), image[:, SUV_CHANNEL:SUV_CHANNEL + 1], self.w.eta)
        total = self.w.alpha * ms + self.w.beta * dice + self.w.lam * ce
        return {"total": total, "ms": ms, "dice": dice, "ce": ce}

    def forward(self, output: torch.Tensor, target: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``output`` is (N, 2, ...) or deep-supervision heads (N, H, 2, ...). Returns per-sample terms."""
        if output.ndim == target.ndim:
            return self.single(output, target, image)
        heads = output.shape[1]
        w = torch.tensor([0.5 ** i for i in range(heads)], device=output.device)
        w = w / w.sum()
        terms = [self.single(output[:, i], target, image) for i in range(heads)]
        return {k: sum(w[i] * t[k] for i, t in enumerate(terms)) for k in terms[0]}
