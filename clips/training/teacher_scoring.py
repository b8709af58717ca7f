"""Difficulty of each training patient before training starts: from the cohort, or from a teacher network."""
from __future__ import annotations

import numpy as np
import torch

from clips.curricula.difficulty import TEACHER_SCORES, feature_table, select_score, with_scores
from clips.inference.sliding_window import predict_probs, resolve_device
from clips.metrics.overlap import dice
from clips.training import checkpoint


def teacher_scores(teacher, cases, cfg, loss_fn) -> tuple[np.ndarray, np.ndarray]:
    """(loss, 1 - Dice) of the teacher on each whole preprocessed volume."""
    losses, dices = [], []
    device = resolve_device(cfg.device)
    teacher = teacher.to(device)
    for case in cases:
        p = predict_probs(teacher, case.image, cfg.patch_size, cfg.sw_overlap, cfg.sw_batch_size, device)
        label = np.asarray(case.label)
        probs = torch.from_numpy(np.stack([1 - p, p]))[None].clamp_min(1e-6)
        image = torch.from_numpy(np.asarray(case.image, np.float32))[None]
        target = torch.from_numpy(label.astype(np.int64))[None, None]
        with torch.no_grad():
            losses.append(float(loss_fn.single(probs.log(), target, image)["total"][0]))
        d = dice(label, p >= 0.5)
        dices.append(1.0 - (0.0 if np.isnan(d) else d))
    return np.asarray(losses), np.asarray(dices)


def difficulty_table(cohort, train_ids: list[str], cfg, options, loss_fn, log=print, features=None):
    """(score per training patient, higher = harder; the table logged as tables/difficulty.json).

    ``features``: the cohort's feature table (:func:`feature_table`) when already computed; the
    scores are ranked among the training patients either way."""
    cases = [cohort.cases[p] for p in train_ids]
    if features is None:
        features = feature_table(train_ids, cases, cfg.spacing_mm)
    table = with_scores(features.set_index("patient_id").loc[train_ids].reset_index())
    name = getattr(options, "difficulty", "cohort")
    if name in TEACHER_SCORES:
        log(f"scoring {len(cases)} training patients with the teacher {options.teacher_uri}")
        teacher = checkpoint.load_network(options.teacher_uri)
        loss, one_minus_dice = teacher_scores(teacher, cases, cfg, loss_fn)
        table["teacher_loss"], table["score_teacher_loss"] = loss, loss
        table["teacher_dice"], table["score_teacher_dice"] = 1 - one_minus_dice, one_minus_dice
    table["difficulty"] = select_score(table, name)
    table["difficulty_source"] = name
    return table["difficulty"].to_numpy(float), table
