"""Losses: the TMTV-Net combination of Mumford-Shah, Dice and cross-entropy terms."""
from clips.losses.mumford_shah import mumford_shah_loss
from clips.losses.tmtv_loss import LossWeights, TMTVLoss

__all__ = ["LossWeights", "TMTVLoss", "mumford_shah_loss"]
