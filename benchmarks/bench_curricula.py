"""Benchmark: time per training step of every curriculum against `none`, same model and data, one run.

    python benchmarks/bench_curricula.py [--steps 12] [--rounds 3] [--model small] [--json OUT.json]

Steps go through the trainer's own path (`clips.training.step.take_steps`: the plan, the
DataLoader with the trainer's CPU default of no worker processes, the `--augmentation` preset, the
optimiser step with the curriculum's hooks), and each curriculum is made as the trainer makes it
(`build_curriculum`). Each round times `--steps` optimisation steps of every variant in turn (interleaved, so
machine noise hits all variants alike); the figure per variant is the median over
rounds of the mean step time. The per-epoch work of a curriculum (self_paced's scoring
pass: each training patient's fixed scoring patches, its lesions and some background)
and one-off work (the transfer teacher's
scoring of the cohort) are timed separately, as the issue asks.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import generated_cases, sync  # noqa: E402

from clips.curricula import REGISTRY  # noqa: E402
from clips.curricula.difficulty import cohort_difficulty, select_score  # noqa: E402
from clips.data.augment import Augmentation  # noqa: E402
from clips.data.loader import PatchDataset  # noqa: E402
from clips.data.sampling import PatchSampler  # noqa: E402
from clips.inference.sliding_window import resolve_device  # noqa: E402
from clips.losses import TMTVLoss  # noqa: E402
from clips.models import SegNet  # noqa: E402
from clips.training.step import Schedule, build_curriculum, take_steps  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--spacing", type=float, default=6.0)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--model", default="small")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--augmentation", default="default", help="the trainer's preset (none, default, ...)")
    ap.add_argument("--skip-teacher", action="store_true", help="skip the one-off transfer-teacher scoring")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = resolve_device(args.device)

    tmp = Path(tempfile.mkdtemp(prefix="clips-bench-"))
    spacing = (args.spacing,) * 3
    ids, cases = generated_cases(tmp, args.patients, args.spacing)
    difficulty = select_score(cohort_difficulty(ids, cases, spacing), "cohort")
    sampler = PatchSampler(cases, (args.patch,) * 3, 0.67)
    patches = PatchDataset(sampler, Augmentation(args.augmentation))

    def steps(model, cur, opt, rng, weights, batch, n=args.steps):
        for _ in take_steps(model, cur, patches, rng, weights, batch, n, loss_fn, opt, device):
            pass
    loss_fn = TMTVLoss()
    teacher = tmp / "teacher.pt"
    torch.save({"model": SegNet(args.model).state_dict(), "preset": args.model}, teacher)
    options = {"transfer_teacher": {"teacher_uri": str(teacher)}}

    setups = {}
    for name, cls in REGISTRY.items():
        torch.manual_seed(0)
        net = SegNet(args.model).to(device)
        cur, model = build_curriculum(cls, cls.parse_options(options.get(name, {})),
                                      Schedule(ids, 20, args.steps, 0, args.batch), difficulty, sampler, loss_fn, net)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        weights = cur.epoch_weights(0)
        epoch_s = time.perf_counter() - t0
        setups[name] = (model, cur, opt, np.random.default_rng(0), weights, epoch_s)
        model.train()
        steps(model, cur, opt, setups[name][3], weights, args.batch, 1)  # warm-up

    per_step = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, (model, cur, opt, rng, weights, _) in setups.items():
            sync(device)
            t0 = time.perf_counter()
            steps(model, cur, opt, rng, weights, args.batch)
            sync(device)
            per_step[name].append((time.perf_counter() - t0) / args.steps)

    for name, (model, cur, opt, rng, weights, _) in setups.items():  # per-epoch work, warmed up
        t0 = time.perf_counter()
        cur.epoch_weights(1)
        setups[name] = (model, cur, opt, rng, weights, time.perf_counter() - t0)
    base = float(np.median(per_step["none"]))
    result = {"setup": vars(args) | {"json": None, "threads": torch.get_num_threads(), "device": str(device),
                                     "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"},
              "variants": {}}
    print(f"{'variant':<18}{'s/step':>9}{'vs none':>10}{'epoch-start s':>15}")
    for name, times in per_step.items():
        med = float(np.median(times))
        epoch_s = setups[name][5]
        result["variants"][name] = {"s_per_step": med, "ratio_to_none": med / base, "epoch_start_s": epoch_s,
                                    "epoch_start_in_steps": epoch_s / base}
        print(f"{name:<18}{med:>9.3f}{med / base:>10.3f}{epoch_s:>15.3f}")
    result["progressive_patch_epoch_ratio"] = _progressive_schedule(setups["progressive_patch"], sampler, steps,
                                                                    args, base)
    if args.skip_teacher:
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return
    t0 = time.perf_counter()
    from clips.config import TrainConfig  # noqa: PLC0415
    from clips.training.teacher_scoring import teacher_scores  # noqa: PLC0415

    cfg = TrainConfig(patch_size=(args.patch,) * 3)
    teacher_scores(SegNet(args.model).eval(), cases, cfg, loss_fn)
    result["transfer_teacher_scoring_s"] = time.perf_counter() - t0
    print(f"transfer_teacher one-off scoring of {len(cases)} patients: {result['transfer_teacher_scoring_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


def _progressive_schedule(setup, sampler, steps, args, base: float) -> dict:
    """progressive_patch over its whole schedule (the context's 20 epochs): mean epoch time / none's, per mode.

    Each distinct (patch, batch) of the schedule is timed once over ``--steps`` steps; an
    epoch's time is that shape's, and the figure is the mean over the schedule's epochs."""
    model, cur, opt, rng, weights, _ = setup
    full, out = sampler.patch, {}
    for mode in ("performance", "resource_efficient"):
        c = type(cur)(cur.ctx, type(cur).parse_options({"mode": mode}))
        shapes = [c.sample_shape(e, full, args.batch) for e in range(cur.ctx.epochs)]
        per_step = {}
        for patch, batch in sorted(set(shapes)):
            sampler.patch = patch
            steps(model, c, opt, rng, weights, batch, 1)  # warm-up at this shape
            sync(model_device := next(model.parameters()).device)
            t0 = time.perf_counter()
            steps(model, c, opt, rng, weights, batch)
            sync(model_device)
            per_step[(patch, batch)] = (time.perf_counter() - t0) / args.steps
        out[mode] = float(np.mean([per_step[s] for s in shapes]) / base)
        stages = ", ".join(f"{max(p)}^3 x {b}: {per_step[(p, b)]:.3f} s" for p, b in sorted(set(shapes)))
        print(f"progressive_patch {mode}: epoch time {out[mode]:.3f} of none's over {len(shapes)} epochs ({stages})")
    sampler.patch = full
    return out


if __name__ == "__main__":
    main()
