"""nnU-Net's own trainer at the budget a CLIPS study gives it; imported only by clips/peers/_nnunet_run.py, in
nnU-Net's own subprocess (with nnunetv2 installed), never by CLIPS's process.

Everything of nnU-Net's method is kept (its planned network and patch, its augmentation, SGD with its poly
learning rate, deep supervision, its loss); only the budget changes, read from the JSON file that
``CLIPS_NNUNET_BUDGET`` names (written by clips/peers/_nnunet.py):

- ``epochs`` x ``iterations_per_epoch`` optimiser steps (nnU-Net's defaults: 1000 x 250) and
  ``val_iterations`` validation batches per epoch (its default 50; they only choose ``checkpoint_best``);
- ``wall_s`` > 0: an equal-wall-time budget instead, for the training loop (its epochs with their validation
  batches; nnU-Net's set-up before the first epoch is not counted, as CLIPS's loop phases do not count its):
  after the first epoch the number of whole epochs nearest to the budget is fixed from its measured time (rounded,
  so the budget is met on average, not always undershot), and the poly schedule
  is stretched to end there (so the learning rate still decays to zero, as in a full nnU-Net training);
- ``seed``: torch, numpy and Python's generators at the start (nnU-Net itself does not seed);
- ``threads`` > 0: torch's threads on a CPU (nnU-Net takes every core).

The final validation of nnU-Net (``perform_actual_validation``: every validation case predicted at full size
with mirroring) is skipped: CLIPS scores the fold's test patients itself.
"""
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class _BudgetSpent(Exception):
    pass


def epochs_that_fit(wall_s: float, epoch_s: float, most: int) -> int:
    """The whole epochs nearest to the budget (at least one): rounding, not flooring, so that the budget is met
    on average instead of always undershot (a 255 s epoch in a 369 s budget: 1 either way; in a 480 s one, 2, where
    flooring would give nnU-Net 53 % of its time)."""
    return max(1, min(most, round(wall_s / epoch_s)))


class nnUNetTrainerCLIPS(nnUNetTrainer):  # noqa: N801 - nnU-Net's naming; its checkpoints record the class name
    def __init__(self, plans, configuration, fold, dataset_json, device=None):
        super().__init__(plans, configuration, fold, dataset_json, device or torch.device("cuda"))
        budget = json.loads(Path(os.environ["CLIPS_NNUNET_BUDGET"]).read_text())
        self.num_epochs = int(budget["epochs"])
        self.num_iterations_per_epoch = int(budget["iterations_per_epoch"])
        self.num_val_iterations_per_epoch = int(budget["val_iterations"])
        self.clips_wall_s = float(budget.get("wall_s", 0))
        self.clips_threads = int(budget.get("threads", 0))
        self.clips_epochs = self.num_epochs  # the epochs this training will run (the wall budget sets it)
        seed = int(budget.get("seed", 0))
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def on_train_start(self):
        if self.clips_threads and self.device.type == "cpu":
            torch.set_num_threads(self.clips_threads)
        self.clips_started = time.perf_counter()
        super().on_train_start()

    def on_epoch_start(self):
        if self.current_epoch >= self.clips_epochs:
            raise _BudgetSpent
        if self.current_epoch == 0:
            self.clips_first_epoch = time.perf_counter()
        super().on_epoch_start()

    def on_epoch_end(self):
        super().on_epoch_end()
        if self.clips_wall_s > 0 and self.current_epoch == 1:  # the first epoch measured: how many fit
            now = time.perf_counter()
            setup, per_epoch = self.clips_first_epoch - self.clips_started, now - self.clips_first_epoch
            self.clips_epochs = epochs_that_fit(self.clips_wall_s, per_epoch, self.num_epochs)
            self.lr_scheduler.max_steps = self.clips_epochs
            self.print_to_log_file(f"CLIPS wall-time budget {self.clips_wall_s:.0f} s: set-up {setup:.1f} s, first "
                                   f"epoch {per_epoch:.1f} s: {self.clips_epochs} epoch(s)")

    def run_training(self):
        try:
            super().run_training()
        except _BudgetSpent:  # raised before an epoch began: the state is that of a finished training
            self.on_train_end()
        self.print_to_log_file(f"CLIPS budget: {self.current_epoch} epoch(s) x {self.num_iterations_per_epoch} "
                               f"iterations, {time.perf_counter() - self.clips_started:.1f} s")

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("CLIPS: nnU-Net's final validation skipped (CLIPS evaluates the test patients)")
