"""One optimisation step and the no-gradient loss passes curricula ask for (no MLflow here: benchmarks use it)."""
from __future__ import annotations

import numpy as np
import torch

from clips.curricula import StepInfo
from clips.data.sampling import PatchSampler


def train_step(model, curriculum, sampler: PatchSampler, loss_fn, opt, rng, weights, batch_size: int,
               device: str | torch.device = "cpu"):
    """One optimisation step with the curriculum's batch, loss-weight and after-step hooks."""
    idx = curriculum.batch_indices(rng, batch_size, weights)
    if idx is None:
        idx = sampler.choose(weights, batch_size, rng)
    x, y = sampler.batch(idx, rng)
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    terms = loss_fn(model(x), y, x)
    per_sample = terms["total"].detach()
    w = curriculum.loss_weights(idx, per_sample)
    loss = (w * terms["total"]).sum() / w.sum().clamp_min(1e-8)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_sq = grad_sq_norm(model) if curriculum.needs_grad_norm else None
    opt.step()
    curriculum.after_step(StepInfo(np.asarray(idx), per_sample, grad_sq, x, y))
    return idx, terms


def grad_sq_norm(model) -> torch.Tensor:
    """Squared gradient norm as a 0-d tensor on the model's device: no host synchronisation here."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return torch.stack(torch._foreach_norm(grads)).pow(2).sum()


@torch.no_grad()
def batch_losses(model, loss_fn, x, y) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return loss_fn(model(x), y, x)["total"]
    finally:
        model.train(was_training)


def fixed_patch_losses(model, sampler: PatchSampler, loss_fn, batch_size: int) -> np.ndarray:
    """Each training patient's loss on its fixed patch: one forward pass per patient, no gradients."""
    out = []
    for start in range(0, len(sampler.cases), batch_size):
        idx = np.arange(start, min(start + batch_size, len(sampler.cases)))
        x, y = sampler.batch(idx, None)
        device = next(model.parameters()).device
        out.append(batch_losses(model, loss_fn, x.to(device), y.to(device)).cpu().numpy())
    return np.concatenate(out)


