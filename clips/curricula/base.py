"""The curriculum plug-in interface: a few hooks that the training loop calls.

A curriculum decides which training patients are in play in each epoch and with what
sampling weight, may choose the patients of each batch, may re-weight per-sample
losses, may wrap the model, and reports its state. Every hook has a neutral default,
so a strategy overrides only what it changes; ``none`` overrides nothing.

Hyperparameters are a typed dataclass (``Options``), filled from ``-P`` values or
``curriculum_options`` in YAML, checked by :meth:`Curriculum.parse_options`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from clips.errors import ConfigError


@dataclass
class CurriculumContext:
    """What a curriculum may know about, and ask of, the run."""

    patient_ids: list[str]  # training patients in a fixed order; hooks index into this list
    epochs: int
    steps_per_epoch: int
    seed: int
    difficulty: np.ndarray  # per training patient, higher = harder (clips.curricula.difficulty)
    # Per-patient loss of the current model, one forward pass of a fixed patch per patient.
    score_patients: Callable[[], np.ndarray] = field(default=lambda: np.zeros(0))
    # Per-sample losses of the model on a batch (x, y), without gradients.
    batch_losses: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None


@dataclass
class StepInfo:
    """What the loop knows after one optimisation step."""

    indices: np.ndarray
    losses: torch.Tensor  # per-sample losses before the update
    grad_sq_norm: torch.Tensor | None  # 0-d, on the training device; None unless the curriculum asked for it
    x: torch.Tensor
    y: torch.Tensor


@dataclass
class NoOptions:
    pass


class Curriculum:
    name = "abstract"
    paper = ""
    Options: type = NoOptions
    needs_grad_norm = False  # set when after_step reads StepInfo.grad_sq_norm
    patient_losses: np.ndarray | None = None  # per-patient losses the curriculum measured this epoch, if any

    def __init__(self, ctx: CurriculumContext, options):
        self.ctx, self.opt = ctx, options

    # ----------------------------------------------------------- configuration
    @classmethod
    def parse_options(cls, values: dict | None):
        """A typed Options instance from strings or YAML values; unknown names are an error."""
        from clips.config import apply_values  # noqa: PLC0415 - config imports the registry

        opt = cls.Options()
        known = {f.name for f in dataclasses.fields(opt)}
        unknown = sorted(set(values or {}) - known)
        if unknown:
            raise ConfigError(f"unknown parameter {', '.join(map(repr, unknown))}: neither a training parameter "
                              f"(clips/config.py) nor an option of curriculum {cls.name!r} "
                              f"(its options: {', '.join(sorted(known)) or 'none'})")
        apply_values(opt, values or {}, f"curriculum {cls.name}")
        if hasattr(opt, "validate"):
            opt.validate()
        return opt

    # ----------------------------------------------------------- hooks
    def epoch_weights(self, epoch: int) -> np.ndarray:
        """Sampling weight of each training patient in this epoch; 0 leaves the patient out."""
        return np.ones(len(self.ctx.patient_ids))

    def patient_weights(self, sampling: np.ndarray) -> np.ndarray:
        """Each patient's effective weight this epoch, for the long table (default: the sampling weights)."""
        return sampling

    def batch_indices(self, rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray | None:
        """The patients of the next batch; None lets the loop sample ``n`` by ``weights``."""
        return None

    def loss_weights(self, indices: np.ndarray, losses: torch.Tensor) -> torch.Tensor:
        """Weight of each sample's loss in the batch (``indices`` into ``ctx.patient_ids``)."""
        return torch.ones_like(losses)

    def after_step(self, info: StepInfo) -> None:
        """Called after every optimisation step."""

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """Return the network to train (e.g. with smoothing layers)."""
        return model

    def release(self) -> None:
        """Undo anything ``wrap_model`` did; called before the final evaluation and logging."""

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
