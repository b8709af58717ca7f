"""Benchmark: time per training step of every curriculum against `none`, same model and data, one run.

    python benchmarks/bench_curricula.py [--steps 12] [--rounds 3] [--model small] [--json OUT.json]

Each round times `--steps` optimisation steps of every variant in turn (interleaved, so
machine noise hits all variants alike); the figure per variant is the median over
rounds of the mean step time. The per-epoch work of a curriculum (self_paced's scoring
pass, one forward pass per training patient) and one-off work (the transfer teacher's
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

from clips.curricula import REGISTRY, CurriculumContext  # noqa: E402
from clips.curricula.difficulty import cohort_difficulty, select_score  # noqa: E402
from clips.data.layout import discover  # noqa: E402
from clips.data.preprocess import CaseCache, PreprocessConfig  # noqa: E402
from clips.data.sampling import PatchSampler  # noqa: E402
from clips.data.synth import SynthConfig, write_cohort  # noqa: E402
from clips.losses import TMTVLoss  # noqa: E402
from clips.models import SegNet  # noqa: E402
from clips.training.step import batch_losses, fixed_patch_losses, train_step  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


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
    ap.add_argument("--skip-teacher", action="store_true", help="skip the one-off transfer-teacher scoring")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))

    tmp = Path(tempfile.mkdtemp(prefix="clips-bench-"))
    write_cohort(tmp / "cohort", args.patients, 0, SynthConfig(spacing_mm=(4.0,) * 3), log=lambda *_: None)
    spacing = (args.spacing,) * 3
    cache = CaseCache(tmp / "cache", PreprocessConfig(spacing))
    files = discover(tmp / "cohort")
    cases = [cache.get(f) for f in files]
    ids = [f.patient_id for f in files]
    difficulty = select_score(cohort_difficulty(ids, cases, spacing), "cohort")
    sampler = PatchSampler(cases, (args.patch,) * 3, 0.67)
    loss_fn = TMTVLoss()
    teacher = tmp / "teacher.pt"
    torch.save({"model": SegNet(args.model).state_dict(), "preset": args.model}, teacher)
    options = {"transfer_teacher": {"teacher_uri": str(teacher)}}

    setups = {}
    for name, cls in REGISTRY.items():
        torch.manual_seed(0)
        net = SegNet(args.model).to(device)
        holder = {}
        ctx = CurriculumContext(ids, 20, args.steps, 0, difficulty,
                                score_patients=lambda h=holder: fixed_patch_losses(h["m"], sampler, loss_fn, args.batch),
                                batch_losses=lambda x, y, h=holder: batch_losses(h["m"], loss_fn, x, y))
        cur = cls(ctx, cls.parse_options(options.get(name, {})))
        model = holder["m"] = cur.wrap_model(net)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        weights = cur.epoch_weights(0)
        epoch_s = time.perf_counter() - t0
        setups[name] = (model, cur, opt, np.random.default_rng(0), weights, epoch_s)
        model.train()
        train_step(model, cur, sampler, loss_fn, opt, setups[name][3], weights, args.batch, device)  # warm-up

    per_step = {name: [] for name in setups}
    for _ in range(args.rounds):
        for name, (model, cur, opt, rng, weights, _) in setups.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                train_step(model, cur, sampler, loss_fn, opt, rng, weights, args.batch, device)
            _sync(device)
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
    if args.skip_teacher:
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
        return
    t0 = time.perf_counter()
    from clips.config import TrainConfig  # noqa: PLC0415
    from clips.training.difficulty import teacher_scores  # noqa: PLC0415

    cfg = TrainConfig(patch_size=(args.patch,) * 3)
    teacher_scores(SegNet(args.model).eval(), cases, cfg, loss_fn)
    result["transfer_teacher_scoring_s"] = time.perf_counter() - t0
    print(f"transfer_teacher one-off scoring of {len(cases)} patients: {result['transfer_teacher_scoring_s']:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
