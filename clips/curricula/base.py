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
from clips.values import apply_values


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
    # Per-sample losses of the model on a batch (x, y), without gradients, computed as the training
    # step computes them (training mode, every deep-supervision head): comparable with StepInfo.losses.
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


# What tuning and studies put in teacher_uri to check a variant's options before a teacher exists.
TEACHER_STAND_IN = "runs:/stand-in/model"


class Curriculum:
    """Base of every variant. Class attributes describe it to training, tuning and studies."""

    name = "abstract"
    paper = ""
    Options: type = NoOptions
    needs_grad_norm = False  # set when after_step reads StepInfo.grad_sq_norm
    needs_teacher = False  # set when the variant cannot run without options.teacher_uri (a study supplies one)

    def __init__(self, ctx: CurriculumContext, options):
        self.ctx, self.opt = ctx, options

    # ----------------------------------------------------------- what tuning and studies ask
    @classmethod
    def ramp_epochs(cls, options, epochs: int) -> float:
        """Epochs until the curriculum's schedule has reached the plain training regime (0: it
        has no ramp). Tuning does not prune a trial before the longest ramp of its space."""
        return 0.0

    @classmethod
    def stand_in_values(cls) -> dict:
        """Option values that stand in for resources made later (a study's own teacher), so that
        options can be checked before any training."""
        return {"teacher_uri": TEACHER_STAND_IN} if cls.needs_teacher else {}

    # ----------------------------------------------------------- configuration
    @classmethod
    def parse_options(cls, values: dict | None):
        """A typed Options instance from strings or YAML values; unknown names are an error."""
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

    def sample_shape(self, epoch: int, patch_size: tuple, batch_size: int) -> tuple[tuple, int]:
        """The training patch size and batch size of this epoch (validation and inference always
        use the configured ``patch_size``)."""
        return tuple(patch_size), batch_size

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

    def model_is_final(self) -> bool:
        """Whether the network being trained is the network the run delivers (after ``release``);
        only then can a validation make it the best checkpoint."""
        return True

    def end_epoch(self, epoch: int) -> None:
        """Called after every epoch, before the state is logged and checkpointed."""

    def measured_losses(self) -> np.ndarray | None:
        """Per-patient losses the curriculum measured itself this epoch (shown in the long table
        instead of the mean step losses); None if it measured none."""
        return None

    def log_state(self) -> dict[str, float]:
        """Numbers to log as ``curriculum.<key>`` metrics every epoch."""
        return {}

    def state_dict(self) -> dict:
        """What a resumed run needs to continue exactly; saved in every checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
