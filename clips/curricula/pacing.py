"""Pacing functions: the fraction of the difficulty-sorted training set in play at epoch t.

Formulas of the survey of Wang et al. (IEEE TPAMI 2022), with the root-p form of
Platanios et al. (NAACL 2019, 1/p power as in their code), and the fixed exponential
pacing of Hacohen & Weinshall (ICML 2019). ``start`` is the starting fraction and
``full`` the epoch at which the whole set is in play (``full_at`` x epochs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from clips.errors import ConfigError

PACINGS = ("linear", "root", "root_p", "geometric", "exponential_step")


def exponential_steps(start: float, increase: float) -> int:
    """How many multiplications by ``increase`` take ``start`` to the whole set."""
    return max(1, math.ceil(math.log(1 / start) / math.log(increase) - 1e-9))


def pace(kind: str, t: float, start: float, full: float, p: float = 2.0, increase: float = 1.9) -> float:
    """Fraction in (0, 1] of the training set in play at epoch ``t`` (0-based)."""
    x = 1.0 if full <= 0 else min(1.0, t / full)
    if kind == "exponential_step":
        # Hacohen & Weinshall's fixed exponential pacing, its step length chosen so that the
        # last step lands at ``full``: the whole set is in play from ``full`` on, as for every pacing.
        steps = exponential_steps(start, increase)
        return min(1.0, start * increase ** math.floor(x * steps + 1e-9))
    if kind == "linear":
        g = start + (1 - start) * x
    elif kind == "root":
        g = math.sqrt(start ** 2 + (1 - start ** 2) * x)
    elif kind == "root_p":
        g = (start ** p + (1 - start ** p) * x) ** (1 / p)
    elif kind == "geometric":
        g = 2 ** (math.log2(start) - math.log2(start) * x)
    else:
        raise ConfigError(f"unknown pacing {kind!r}; known: {', '.join(PACINGS)}")
    return min(1.0, g)


@dataclass
class PacingOptions:
    """Options shared by every paced curriculum (predefined, random, anti, transfer_teacher)."""

    pacing: str = "linear"
    start_fraction: float = 0.3
    full_at: float = 0.5  # the whole set is in play from epoch full_at * epochs on
    root_p: float = 2.0
    increase: float = 1.9  # exponential_step: factor per step (Hacohen & Weinshall); step length from full_at
    difficulty: str = "cohort"  # which score orders the patients (clips/curricula/difficulty.py)
    teacher_uri: str = ""  # checkpoint or models:/ URI, for difficulty=teacher_loss|teacher_dice

    def validate(self):
        if self.pacing not in PACINGS:
            raise ConfigError(f"unknown pacing {self.pacing!r}; known: {', '.join(PACINGS)}")
        for name, lo, hi in (("start_fraction", 0.0, 1.0), ("full_at", 0.0, 1.0)):
            v = getattr(self, name)
            if not lo < v <= hi:
                raise ConfigError(f"{name}={v} must be in ({lo}, {hi}]")
        if self.root_p <= 0 or self.increase <= 1:
            raise ConfigError("root_p must be > 0 and increase > 1")
        from clips.curricula.difficulty import check_difficulty  # noqa: PLC0415

        check_difficulty(self.difficulty, self.teacher_uri)

    def fraction(self, epoch: int, epochs: int) -> float:
        return pace(self.pacing, epoch, self.start_fraction, self.full_at * epochs, self.root_p, self.increase)

    def ramp_epochs(self, epochs: int) -> float:
        return self.full_at * epochs
