"""The curriculum plug-in interface: a few hooks that the training loop calls.

A curriculum decides which training patients are in play in each epoch and with
what sampling weight, may re-weight per-sample losses, may wrap the model, and
reports its state. Every hook has a neutral default, so a strategy overrides only
what it changes; ``none`` overrides nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class CurriculumContext:
    """What a curriculum may know about the run."""

    patient_ids: list[str]  # training patients, in a fixed order; hooks index into this list
    epochs: int
    steps_per_epoch: int
    seed: int


class Curriculum:
    name = "abstract"
    paper = ""

    def __init__(self, ctx: CurriculumContext):
        self.ctx = ctx

    def epoch_weights(self, epoch: int) -> np.ndarray:
        """Sampling weight of each training patient in this epoch; 0 leaves the patient out."""
        return np.ones(len(self.ctx.patient_ids))

    def loss_weights(self, indices: np.ndarray, losses: torch.Tensor) -> torch.Tensor:
        """Weight of each sample's loss in the batch (``indices`` into ``ctx.patient_ids``)."""
        return torch.ones_like(losses)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """Return the network to train (e.g. with smoothing layers); the logged model is always the plain one."""
        return model

    def end_epoch(self, epoch: int) -> None:
        """Called after every epoch, before the state is logged and checkpointed."""

    def log_state(self) -> dict[str, float]:
        """Numbers to log as ``curriculum.<key>`` metrics every epoch."""
        return {}

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly; saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
