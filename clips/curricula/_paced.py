from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clips.curricula.base import Curriculum
from clips.curricula.pacing import PacingOptions
from clips.errors import ConfigError


class Predefined(Curriculum):
    """Easy to hard: the easiest fraction g(t) of the training set, by the difficulty score."""

    name = "predefined"
    paper = "Bengio et al. 2009; pacing functions of Wang et al. 2022, Platanios et al. 2019, Hacohen & Weinshall 2019"
    Options = PacingOptions

    @classmethod
    def ramp_epochs(cls, options, epochs):
        return options.ramp_epochs(epochs)

    def order(self) -> np.ndarray:
        """Training patients in the order they enter the curriculum."""
        return np.argsort(self.ctx.difficulty, kind="stable")

    def __init__(self, ctx, options):
        super().__init__(ctx, options)
        self._order = self.order()
        self._fraction = 1.0

    def epoch_weights(self, epoch: int) -> np.ndarray:
        n = len(self.ctx.patient_ids)
        self._fraction = self.opt.fraction(epoch, self.ctx.epochs)
        w = np.zeros(n)
        w[self._order[: max(1, math.ceil(self._fraction * n))]] = 1.0
        return w

    def log_state(self) -> dict[str, float]:
        return {"pacing_fraction": self._fraction}


class RandomOrder(Predefined):
    """Control: the same pacing as predefined, in a random (seeded) order."""

    name = "random"
    paper = "control arm (random curriculum), Hacohen & Weinshall 2019"

    def order(self) -> np.ndarray:
        return np.random.default_rng(self.ctx.seed + 7919).permutation(len(self.ctx.patient_ids))


class AntiCurriculum(Predefined):
    """Control: the same pacing with the hardest patients first."""

    name = "anti"
    paper = "control arm (anti-curriculum), Hacohen & Weinshall 2019"

    def order(self) -> np.ndarray:
        return np.argsort(-self.ctx.difficulty, kind="stable")


@dataclass
class TeacherOptions(PacingOptions):
    difficulty: str = "teacher_loss"

    def validate(self):
        if not self.teacher_uri:
            raise ConfigError("transfer_teacher needs teacher_uri: a checkpoint path or a models:/ URI "
                              "(for example models:/clips-tmtv@champion)")
        if not self.difficulty.startswith("teacher_"):
            raise ConfigError("transfer_teacher orders by the teacher: difficulty must be teacher_loss or teacher_dice")
        super().validate()


class TransferTeacher(Predefined):
    """Difficulty = the loss of a pretrained teacher on each patient, then paced easy to hard."""

    name = "transfer_teacher"
    paper = "Hacohen & Weinshall 2019 (transfer teacher); bootstrapping arm of Yousefirizi et al. 2022"
    Options = TeacherOptions
    needs_teacher = True
