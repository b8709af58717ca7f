"""What the benchmarks share: a generated cohort, preprocessed, and a GPU-aware clock stop."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from clips.data.layout import discover  # noqa: E402
from clips.data.preprocess import CaseCache, PreprocessConfig  # noqa: E402
from clips.data.synth import SynthConfig, write_cohort  # noqa: E402


def sync(device: torch.device) -> None:
    """Wait for the GPU before reading the clock (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def whole_body_inference_s(net, device: torch.device, patch: int, batch: int, volume: tuple) -> float:
    """Seconds of one sliding-window inference of a random (5, *volume) image, after a one-window warm-up."""
    import time

    import numpy as np

    from clips.inference.sliding_window import predict_probs

    image = np.random.default_rng(0).random((5, *volume), dtype=np.float32)
    net.eval()
    predict_probs(net, image[:, :patch, :patch, :patch], (patch,) * 3, 0.25, batch, device)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    predict_probs(net, image, (patch,) * 3, 0.25, batch, device)
    sync(device)
    return time.perf_counter() - t0


def generated_cases(folder: Path, patients: int, spacing_mm: float, seed: int = 0, file_mm: float = 4.0):
    """(patient ids, preprocessed cases) of a freshly generated example cohort (files at ``file_mm``)."""
    write_cohort(folder / "cohort", patients, seed, SynthConfig(spacing_mm=(file_mm,) * 3), log=lambda *_: None)
    cache = CaseCache(folder / "cache", PreprocessConfig((spacing_mm,) * 3))
    files = discover(folder / "cohort")
    return [f.patient_id for f in files], [cache.get(f) for f in files]
