"""Where a training's time goes: wall seconds per phase, logged at the end as ``time/<phase>_s`` metrics.

The phases are the trainer's own (clips/training/trainer.py): ``data`` (finding and preprocessing the cohort,
cached after the first run), ``build`` (network, difficulty features and any teacher scoring), ``steps`` (the
optimisation steps, loading included), ``validation`` (sliding-window inference on the validation patients and
the best checkpoint), ``checkpoint`` (the last checkpoint and the epoch's logging), ``evaluation`` (the final
per-patient suite on the patients' own grids) and ``logging`` (parameters, inputs, tables, figures, the model).
``benchmarks/bench_child.py`` prints the split of one study child.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

from clips.tracking import schema

PHASES = ("data", "build", "steps", "validation", "checkpoint", "evaluation", "logging")


class PhaseTimer:
    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._started = time.perf_counter()

    @contextmanager
    def __call__(self, phase: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - began

    def metrics(self) -> dict[str, float]:
        out = {f"{schema.TIME}{p}_s": self.seconds[p] for p in PHASES if p in self.seconds}
        out[schema.TIME + "total_s"] = time.perf_counter() - self._started
        return out

    def split(self) -> str:
        """One line: each phase's share of the total."""
        total = max(time.perf_counter() - self._started, 1e-9)
        parts = [f"{p} {self.seconds[p]:.1f} s ({self.seconds[p] / total:.0%})" for p in PHASES if p in self.seconds]
        return f"time {total:.0f} s: " + ", ".join(parts)
