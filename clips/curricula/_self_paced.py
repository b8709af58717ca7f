from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from clips.curricula.base import Curriculum
from clips.curricula.pacing import PACINGS, pace
from clips.errors import ConfigError

SCHEMES = ("hard", "linear", "logarithmic", "mixture", "mixture_jiang")


def spl_weights(losses: np.ndarray, lam: float, scheme: str, gamma: float = 1.0) -> np.ndarray:
    """Self-paced weights v(l; lambda) in [0, 1] (docs/curricula.md has the formulas)."""
    l = np.asarray(losses, float)  # noqa: E741 - the papers' name for a loss
    if lam <= 0:
        return np.zeros_like(l)
    if scheme == "hard":  # Kumar et al. 2010
        return (l < lam).astype(float)
    if scheme == "linear":  # Jiang et al. 2014
        return np.clip(1.0 - l / lam, 0.0, 1.0)
    if scheme == "logarithmic":  # Jiang et al. 2014, on losses scaled to [0, 1) by the largest loss
        scale = max(float(l.max(initial=0.0)), lam) * (1 + 1e-6)
        ls, zeta = l / scale, 1.0 - lam / scale
        return np.where(ls < 1 - zeta, np.log(ls + zeta) / math.log(zeta), 0.0)
    # mixture: Zhao et al. 2015 (soft SPL regulariser); lambda the loss cut-off, gamma relative to sqrt(lambda)
    if scheme == "mixture":
        root = math.sqrt(lam)
        g = gamma * root
        full = (root * g / (root + g)) ** 2
        with np.errstate(divide="ignore"):
            mid = g * (1.0 / np.sqrt(np.maximum(l, 1e-12)) - 1.0 / root)
        return np.where(l <= full, 1.0, np.where(l >= lam, 0.0, np.clip(mid, 0.0, 1.0)))
    if scheme == "mixture_jiang":  # Jiang et al. 2014 (mixture weighting); zeta = gamma * lambda
        zeta = gamma * lam
        full = lam * zeta / (lam + zeta)
        with np.errstate(divide="ignore"):
            mid = zeta * (1.0 / np.maximum(l, 1e-12) - 1.0 / lam)
        return np.where(l <= full, 1.0, np.where(l >= lam, 0.0, np.clip(mid, 0.0, 1.0)))
    raise ConfigError(f"unknown self-paced scheme {scheme!r}; known: {', '.join(SCHEMES)}")


@dataclass
class SelfPacedOptions:
    scheme: str = "hard"
    # quantile: each epoch lambda = the q-th quantile of the current losses, q paced from quantile0 to 1
    # at full_at (as CurML does), so the curriculum acts whatever the scale of the loss and however fast
    # it falls. growth: Kumar et al.'s lambda_0 * mu^t, lambda_0 the quantile0 of the first epoch's losses.
    lambda_mode: str = "quantile"
    quantile0: float = 0.5
    mu: float = 1.15  # growth mode only
    pacing: str = "linear"  # quantile mode: how the quantile grows to 1
    full_at: float = 0.5
    gamma: float = 1.0  # mixture schemes

    def validate(self):
        if self.scheme not in SCHEMES:
            raise ConfigError(f"unknown self-paced scheme {self.scheme!r}; known: {', '.join(SCHEMES)}")
        if self.lambda_mode not in ("growth", "quantile"):
            raise ConfigError("lambda_mode must be growth or quantile")
        if self.pacing not in PACINGS or self.pacing == "exponential_step":
            raise ConfigError("self_paced pacing must be one of linear, root, root_p, geometric")
        if not 0 < self.quantile0 <= 1 or self.mu < 1 or not 0 < self.full_at <= 1 or self.gamma <= 0:
            raise ConfigError("self_paced needs 0 < quantile0 <= 1, mu >= 1, 0 < full_at <= 1, gamma > 0")


class SelfPaced(Curriculum):
    """Each epoch, the current model's loss on each patient (a few forward passes) sets its weight."""

    name = "self_paced"
    paper = "Kumar, Packer & Koller 2010 (self-paced learning); soft weights of Jiang et al. 2014, Zhao et al. 2015"
    Options = SelfPacedOptions

    @classmethod
    def ramp_epochs(cls, options, epochs):
        # growth mode: when lambda passes every loss depends on the losses; count the whole run
        return options.full_at * epochs if options.lambda_mode == "quantile" else float(epochs)

    def __init__(self, ctx, options):
        super().__init__(ctx, options)
        self.lam = float("nan")
        self.lambda0 = None
        self.v = np.ones(len(ctx.patient_ids))
        self.losses: np.ndarray | None = None

    def epoch_weights(self, epoch: int) -> np.ndarray:
        losses = np.asarray(self.ctx.score_patients(), float)
        self.losses = losses
        o = self.opt
        if o.lambda_mode == "growth":
            if self.lambda0 is None:
                self.lambda0 = float(np.quantile(losses, o.quantile0))
            self.lam = self.lambda0 * o.mu ** epoch
        else:
            q = pace(o.pacing, epoch, o.quantile0, o.full_at * self.ctx.epochs)
            self.lam = float(np.quantile(losses, q)) * (1 + 1e-9) if q < 1 else float(losses.max()) * 2 + 1e-9
        self.v = spl_weights(losses, self.lam, o.scheme, o.gamma)
        if not np.any(self.v > 0):  # never an empty epoch: keep the easiest patient
            self.v[int(np.argmin(losses))] = 1.0
        return (self.v > 0).astype(float)

    def patient_weights(self, sampling):
        return self.v

    def measured_losses(self):
        return self.losses

    def loss_weights(self, indices, losses):
        # The loop averages w * l over the batch. Dividing v by its mean over the patients in play keeps
        # the relative weights (a sample of weight 0.5 counts half of one of weight 1, the self-paced
        # objective sum v_i l_i) while the mean step size stays that of plain training.
        in_play = self.v[self.v > 0]
        w = self.v[np.asarray(indices)] / in_play.mean()
        return torch.as_tensor(w, dtype=losses.dtype, device=losses.device)

    def log_state(self):
        return {"lambda": self.lam, "mean_weight": float(self.v.mean())}

    def state_dict(self):
        return {"lambda0": self.lambda0}

    def load_state_dict(self, state):
        self.lambda0 = state.get("lambda0")
