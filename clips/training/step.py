"""How a curriculum is built and how steps are taken, with the no-gradient loss passes curricula ask for (no MLflow
here: tests and benchmarks use exactly this path)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from clips.curricula import Curriculum, CurriculumContext, StepInfo
from clips.data.loader import PatchDataset, PatchLoader, epoch_batches
from clips.data.sampling import PatchSampler
from clips.training.batch_plan import plan_batch


@dataclass
class Schedule:
    """The shape of the training a curriculum steers."""

    patient_ids: list[str]  # the training patients, in the order the curriculum's hooks index
    epochs: int
    steps_per_epoch: int
    seed: int
    batch_size: int


def build_curriculum(cls: type[Curriculum], options, schedule: Schedule, difficulty, sampler: PatchSampler, loss_fn,
                     net: torch.nn.Module) -> tuple[Curriculum, torch.nn.Module]:
    """The curriculum of a training and the network to train (the curriculum's wrapper of ``net``, or ``net``).

    The one way a curriculum is made (trainer, tests, benchmarks): its context asks the *wrapped* network for
    scoring and batch losses, and the wrapper exists only once the curriculum does, so the context reads it
    through a holder filled last."""
    holder: dict = {}
    ctx = CurriculumContext(
        list(schedule.patient_ids), schedule.epochs, schedule.steps_per_epoch, schedule.seed,
        np.asarray(difficulty, float),
        score_patients=lambda: scoring_losses(holder["model"], sampler, loss_fn, schedule.batch_size),
        batch_losses=lambda x, y: batch_losses(holder["model"], loss_fn, x, y, training=True),
    )
    curriculum = cls(ctx, options)
    holder["model"] = curriculum.wrap_model(net)
    return curriculum, holder["model"]


def planned_batches(curriculum, patches: PatchDataset, rng: np.random.Generator, weights, batch_size: int,
                    steps: int, loader: PatchLoader | None = None, workers: int = 0,
                    device: str | torch.device = "cpu") -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """The (indices, x, y) of ``steps`` steps, each planned as the loader asks for it (the curriculum's batch hook,
    or a draw by ``weights``), cropped and augmented by the persistent ``loader`` a training keeps (whose workers
    start on the plan at once) or by ``workers`` processes of a pass of its own (0: this process)."""
    plan = (plan_batch(curriculum, patches.sampler, rng, weights, batch_size) for _ in range(steps))
    return loader.epoch(plan) if loader is not None else epoch_batches(patches, plan, workers, device)


def take_steps(model, curriculum, patches: PatchDataset, rng: np.random.Generator, weights, batch_size: int,
               steps: int, loss_fn, opt, device: str | torch.device = "cpu", workers: int = 0, amp: bool = False,
               grad_clip: float = 0.0, loader: PatchLoader | None = None
               ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """``steps`` optimisation steps as the trainer takes them: their batches (:func:`planned_batches`), each
    optimised. Yields (patient indices, loss terms) per step; benchmarks time exactly this path."""
    batches = planned_batches(curriculum, patches, rng, weights, batch_size, steps, loader, workers, device)
    yield from optimise_batches(model, curriculum, batches, loss_fn, opt, device, amp, grad_clip)


def optimise_batches(model, curriculum, batches, loss_fn, opt, device: str | torch.device = "cpu", amp: bool = False,
                     grad_clip: float = 0.0) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Each of ``batches`` (indices, x, y) optimised (:func:`optimise`): (patient indices, loss terms) per step."""
    for idx, x, y in batches:
        yield idx, optimise(model, curriculum, idx, x, y, loss_fn, opt, device, amp, grad_clip)


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
    # half-weight samples counts half), it is not renormalised away; with batch_dice the weights enter the pooled
    # Dice's sums (TMTVLoss.objective).
    loss = loss_fn.objective(terms, curriculum.loss_weights(idx, per_sample))
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
