"""The TMTV-Net training loss, L = alpha * L_MS + beta * L_Dice + lambda * L_CE (Eq. 1 of the paper).

Returns one value per sample, so that a curriculum can weight samples. Deep
supervision heads are combined with weights 1, 1/2, 1/4 (normalised), as nnU-Net does.

The training objective is :meth:`TMTVLoss.objective` of those terms and the curriculum's per-sample weights: the
batch mean of the weighted per-sample losses, or with ``batch_dice`` (nnU-Net's ``batch_dice``, its choice for
whole-body plans) the Dice term pooled over the batch, each sample's intersection and volumes multiplied by its
weight inside the pooled sums. A pooled Dice has a gradient on a lesion-free patch (its false positives enter the
denominator) and does not saturate on one small lesion; for a batch of one with weight 1 it is the per-sample Dice.
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
    batch_dice: bool = False  # pool the Dice term over the batch (objective)

SMOOTH = 1e-5  # MONAI DiceLoss's smooth_nr and smooth_dr, so that the pooled Dice of one sample is its own


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
        probs = logits.softmax(1)
        ms = mumford_shah_loss(probs, image[:, SUV_CHANNEL:SUV_CHANNEL + 1], self.w.eta)
        total = self.w.alpha * ms + self.w.beta * dice + self.w.lam * ce
        terms = {"total": total, "ms": ms, "dice": dice, "ce": ce}
        if self.w.batch_dice:  # the per-sample sums the pooled Dice needs (keys with "_": not loss terms)
            fg = (target[:, 0] == 1).to(probs.dtype)
            terms["_intersection"] = (probs[:, 1] * fg).reshape(n, -1).sum(1)[:, None]
            terms["_volumes"] = (probs[:, 1] + fg).reshape(n, -1).sum(1)[:, None]
            terms["_head_weights"] = torch.ones(1, device=logits.device)
        return terms

    def forward(self, output: torch.Tensor, target: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``output`` is (N, 2, ...) or deep-supervision heads (N, H, 2, ...). Returns per-sample terms."""
        if output.ndim == target.ndim:
            return self.single(output, target, image)
        heads = output.shape[1]
        w = torch.tensor([0.5 ** i for i in range(heads)], device=output.device)
        w = w / w.sum()
        terms = [self.single(output[:, i], target, image) for i in range(heads)]
        out = {k: sum(w[i] * t[k] for i, t in enumerate(terms)) for k in terms[0] if not k.startswith("_")}
        if self.w.batch_dice:  # pooled per head, then weighted: the per-head sums side by side
            out |= {k: torch.cat([t[k] for t in terms], 1) for k in ("_intersection", "_volumes")}
            out["_head_weights"] = w
        return out

    def objective(self, terms: dict[str, torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """The scalar a step minimises, from :meth:`forward`'s terms and per-sample ``weights`` (N,): the batch
        mean of the weighted per-sample totals; with ``batch_dice`` the Dice term pooled over the batch, the
        weights inside its sums (the other terms as before)."""
        if not self.w.batch_dice:
            return (weights * terms["total"]).mean()
        w = weights[:, None]
        pooled = 1 - (2 * (w * terms["_intersection"]).sum(0) + SMOOTH) / ((w * terms["_volumes"]).sum(0) + SMOOTH)
        rest = self.w.alpha * terms["ms"] + self.w.lam * terms["ce"]
        return (weights * rest).mean() + self.w.beta * (terms["_head_weights"] * pooled).sum()
