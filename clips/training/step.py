"""One optimisation step and the no-gradient loss passes curricula ask for (no MLflow here: benchmarks use it)."""
from __future__ import annotations

import numpy as np
import torch

from clips.curricula import CurriculumContext, StepInfo
from clips.data.sampling import PatchSampler


def make_context(patient_ids, epochs: int, steps_per_epoch: int, seed: int, difficulty, sampler: PatchSampler,
                 loss_fn, batch_size: int, model) -> CurriculumContext:
    """The curriculum's view of a training: ``model()`` returns the network being trained (it is
    wrapped by the curriculum after the context exists)."""
    return CurriculumContext(
        list(patient_ids), epochs, steps_per_epoch, seed, np.asarray(difficulty, float),
        score_patients=lambda: scoring_losses(model(), sampler, loss_fn, batch_size),
        batch_losses=lambda x, y: batch_losses(model(), loss_fn, x, y, training=True),
    )


def train_step(model, curriculum, sampler: PatchSampler, loss_fn, opt, rng, weights, batch_size: int,
               device: str | torch.device = "cpu"):
    """One step planned, loaded and taken in this process, without augmentation (benchmarks and tests)."""
    from clips.data.augment import Augmentation
    from clips.data.loader import PatchDataset, plan_batch

    items = plan_batch(curriculum, sampler, rng, weights, batch_size)
    dataset = PatchDataset(sampler, Augmentation("none"))
    idx, x, y = zip(*(dataset[item] for item in items))
    return np.asarray(idx), optimise(model, curriculum, np.asarray(idx), torch.stack(x), torch.stack(y), loss_fn, opt,
                                     device)


def optimise(model, curriculum, idx: np.ndarray, x: torch.Tensor, y: torch.Tensor, loss_fn, opt,
             device: str | torch.device = "cpu", amp: bool = False, grad_clip: float = 0.0) -> dict[str, torch.Tensor]:
    """One optimisation step on a loaded batch, with the curriculum's loss-weight and after-step hooks.

    ``amp``: bfloat16 autocast of the forward pass (on CUDA); the loss is computed in float32. ``grad_clip``
    > 0 clips the gradient norm (after the curriculum has read it)."""
    device = torch.device(device)
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        out = model(x)
    terms = loss_fn(out.float(), y, x)
    per_sample = terms["total"].detach()
    # The batch mean of weighted losses: a weight scales its sample's contribution (a batch of two
    # half-weight samples counts half), it is not renormalised away.
    loss = (curriculum.loss_weights(idx, per_sample) * terms["total"]).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_sq = grad_sq_norm(model) if curriculum.needs_grad_norm else None
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    curriculum.after_step(StepInfo(np.asarray(idx), per_sample, grad_sq, x, y))
    return terms


def grad_sq_norm(model) -> torch.Tensor:
    """Squared gradient norm as a 0-d tensor on the model's device: no host synchronisation here."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.stack(torch._foreach_norm(grads)).pow(2).sum()


@torch.no_grad()
def batch_losses(model, loss_fn, x, y, training: bool = False) -> torch.Tensor:
    """Per-sample losses without gradients: in evaluation mode (the full-resolution head), or with
    ``training`` exactly as the training step computes them (training mode, every head)."""
    was_training = model.training
    model.train(training)
    try:
        return loss_fn(model(x), y, x)["total"]
    finally:
        model.train(was_training)


def scoring_losses(model, sampler: PatchSampler, loss_fn, batch_size: int) -> np.ndarray:
    """Each training patient's mean loss over its fixed scoring patches (its lesions and some
    background, :meth:`PatchSampler.scoring_centres`), without gradients, in evaluation mode."""
    device = next(model.parameters()).device
    out = []
    for i in range(len(sampler.cases)):
        x, y = sampler.scoring_batch(i)
        losses = [batch_losses(model, loss_fn, x[j:j + batch_size].to(device), y[j:j + batch_size].to(device))
                  for j in range(0, len(x), batch_size)]
        out.append(float(torch.cat(losses).mean()))
    return np.asarray(out)
