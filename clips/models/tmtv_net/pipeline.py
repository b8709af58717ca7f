"""The released TMTV-Net's inference, as its authors run it (ARCHITECTURE.md section 5).

Arrays are (D, H, W) = (z, y, x): the stored voxel grid of the PET file, transposed, which is what the official
code gets from SimpleITK (it never reorients). Stage 1: CT and SUV resampled linearly to 6 mm on a grid with
the PET's origin, size round(size x spacing / 6); the five windows; centred zero padding to a multiple of
128 x 96 x 96; tiles of 128 x 96 x 96 at a step of 64 x 48 x 48, each tile's softmax weighted by the
"weighted central" map and blended; the foreground probability resampled linearly onto the native PET grid.
Stage 2: the five windows on the native grid (cast to float16, as the official code does) and that
probability as the sixth channel; 96^3 tiles at 48^3 steps, the same blending; argmax.

Why not MONAI's sliding-window inference: it floors an importance map's zeros to a small positive value and
divides by the summed weights, where the official blend gives 0 to voxels whose summed weight is 0 (the outer
faces); the tile origins are otherwise the same. Why not nibabel's resampling: the official grid keeps the
PET's origin and rounds the size, which is a scaling of voxel indices, done here directly.
Deviations kept: none by default; ``accumulate=torch.float32`` instead of the official float16 accumulators is
an option (its effect on the mask is measured in docs/tmtv_net.md).

Every step runs in torch on the chosen device (a GPU: nothing but the two volumes up and the mask down crosses
the bus): the resampling is the separable form of SciPy's linear ``map_coordinates`` on the clamped grid (equal
to it to 1e-5 relative in the tests, which also check it against SimpleITK), the windows, the padding and the
blend. Options that leave the released outputs unchanged: ``tile_batch`` (tiles through the network together)
and ``refiner_channels`` (8: zero-weight input channels, exact); one that changes them slightly, off by default:
``autocast`` (half precision inside the networks; its deviation from float32 is measured by
benchmarks/device_check.py and should be measured on the real weights before a site adopts it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from clips.data.preprocess import CHANNEL_WINDOWS
from clips.models.tmtv_net._refiner import with_input_channels

CT_FILL, SUV_FILL = -1024.0, 0.0


@dataclass(frozen=True)
class PipelineConfig:
    """The released pipeline's sizes (the defaults); tests run the same code on small tiles."""

    stage1_spacing_mm: float = 6.0
    stage1_tile: tuple[int, int, int] = (128, 96, 96)
    stage1_step: tuple[int, int, int] = (64, 48, 48)
    stage2_tile: tuple[int, int, int] = (96, 96, 96)
    stage2_step: tuple[int, int, int] = (48, 48, 48)
    accumulate: torch.dtype = torch.float16  # the official accumulators; float32 is a deviation offered
    stage2: bool = True  # False: stop after stage 1 (its probability on the native grid > 0.5 is the mask)
    tile_batch: int = 1  # tiles through a network at once: the same outputs, fewer and larger launches on a GPU
    refiner_channels: int = 6  # 8: the refiner's input padded with zero-weight channels (exact; tensor cores)
    autocast: torch.dtype | None = None  # torch.bfloat16 / torch.float16 inside the networks; None: float32


RELEASED = PipelineConfig()
# The same code on small tiles, for the tests and the GPU check's CPU fallback (the released sizes take about 88 s
# a stage-1 tile on 2 cores).
SMALL = PipelineConfig(stage1_tile=(32, 16, 16), stage1_step=(16, 8, 8), stage2_tile=(16, 16, 16),
                       stage2_step=(8, 8, 8))


# ----------------------------------------------------------------------------- preprocessing
def windows(ct: torch.Tensor, suv: torch.Tensor) -> torch.Tensor:
    """The five input channels (5, D, H, W) float32, in the released order: ct, suv, ct_lung, ct_soft, suv_hot,
    each clipped to its window and scaled to [0, 1] (the same windows as CLIPS's own preprocessing)."""
    source = {"ct": ct.float(), "pet": suv.float()}
    return torch.stack([(source[kind].clamp(lo, hi) - lo) / (hi - lo) for kind, lo, hi in CHANNEL_WINDOWS])


def resample_scaled(volume: torch.Tensor, spacing: tuple[float, ...], target: float | tuple[float, ...],
                    fill: float, size: tuple[int, ...] | None = None) -> torch.Tensor:
    """Linear resampling of a (D, H, W) volume onto a grid with the same origin and spacing ``target``: new voxel
    j sits at old continuous index j * target / spacing. Inside the old image (continuous index within
    [-0.5, n - 0.5), as ITK counts it: half-open, checked against SimpleITK in the tests) neighbours are clamped
    to the border; outside, ``fill``. Default size: round(n * spacing / target), the official rule. The grid is a
    scaling of each axis, so the trilinear interpolation is three linear ones, one axis at a time, on the
    volume's device: no coordinate mesh."""
    spacing = np.asarray(spacing, float)
    target = np.broadcast_to(np.asarray(target, float), spacing.shape)
    n = volume.shape
    size = tuple(int(round(v)) for v in np.asarray(n) * spacing / target) if size is None else tuple(size)
    out, inside = volume.float(), None
    for axis, (m, s, t, sp) in enumerate(zip(n, size, target, spacing)):
        at = torch.arange(s, dtype=torch.float64, device=volume.device) * (t / sp)
        axis_inside = (at >= -0.5) & (at < m - 0.5)
        at = at.clamp(0, m - 1)
        low = at.floor().long()
        high = (low + 1).clamp(max=m - 1)
        view = [1, 1, 1]
        view[axis] = s
        frac = (at - low).float().view(view)
        below, above = out.index_select(axis, low), out.index_select(axis, high)
        out = below + (above - below) * frac
        inside = axis_inside.view(view) if inside is None else inside & axis_inside.view(view)
    return torch.where(inside, out, torch.tensor(float(fill), device=out.device))


def pad_centred(volume: torch.Tensor, multiple: tuple[int, int, int]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Zero padding of the last three axes to a multiple of ``multiple``, centred: diff // 2 on the left, the
    rest on the right. Returns the padded tensor and the (left, right) pads, for :func:`crop_centred`."""
    pads = []
    for n, m in zip(volume.shape[-3:], multiple):
        diff = (-n) % m
        pads.append((diff // 2, diff - diff // 2))
    return F.pad(volume, [p for pair in reversed(pads) for p in pair]), pads


def crop_centred(volume, pads: list[tuple[int, int]]):
    index = tuple(slice(left, volume.shape[-3 + i] - right) for i, (left, right) in enumerate(pads))
    return volume[(Ellipsis, *index)]


# ----------------------------------------------------------------------------- blending
def central_weighting(shape: tuple[int, int, int]) -> np.ndarray:
    """The "weighted central" tile weight: 1 in the middle half of each axis (the box
    S//2 - c <= i < S//2 + c, c = int(S * 0.5) // 2), and 1 - sqrt(d) / sqrt(max d) outside, d being the
    chessboard distance to the box."""
    dist = []
    for s in shape:
        c = int(s * 0.5) // 2
        lo, hi = s // 2 - c, s // 2 + c
        i = np.arange(s)
        dist.append(np.maximum(np.maximum(lo - i, 0), i - (hi - 1)))
    d = np.maximum(np.maximum(dist[0][:, None, None], dist[1][None, :, None]), dist[2][None, None, :])
    return (1.0 - np.sqrt(d) / np.sqrt(d.max())).astype(np.float32)


def tile_origins(size: int, tile: int, step: int) -> list[int]:
    return list(range(0, size - tile + 1, step))


def blend(fn, volume: torch.Tensor, tile: tuple[int, int, int], step: tuple[int, int, int],
          accumulate: torch.dtype = torch.float16, batch: int = 1) -> torch.Tensor:
    """Tiles of ``volume`` (C, D, H, W), origins 0, step, ... while the tile fits, z then y then x; ``fn`` maps
    tiles (B, C, *tile) to outputs (B, K, *tile), ``batch`` tiles at a time; outputs weighted by
    :func:`central_weighting`, summed in tile order and divided by the summed weight in ``accumulate`` precision
    (the official float16); voxels whose summed weight is 0 get 0."""
    weight = torch.from_numpy(central_weighting(tile)).to(volume.device)
    summed_weight = weight.to(accumulate)  # what each tile adds to the summed weight, converted once
    origins = [(z, y, x) for z in tile_origins(volume.shape[1], tile[0], step[0])
               for y in tile_origins(volume.shape[2], tile[1], step[1])
               for x in tile_origins(volume.shape[3], tile[2], step[2])]
    total = None
    summed = torch.zeros(volume.shape[1:], dtype=accumulate, device=volume.device)
    for first in range(0, len(origins), max(1, batch)):
        chunk = origins[first:first + max(1, batch)]
        wheres = [(slice(z, z + tile[0]), slice(y, y + tile[1]), slice(x, x + tile[2])) for z, y, x in chunk]
        outs = fn(torch.stack([volume[(slice(None), *where)] for where in wheres]))
        if total is None:
            total = torch.zeros((outs.shape[1], *volume.shape[1:]), dtype=accumulate, device=volume.device)
        for out, where in zip(outs, wheres):
            total[(slice(None), *where)] += (out * weight).to(accumulate)
            summed[where] += summed_weight
    covered = summed > 0
    return torch.where(covered, total.float() / torch.where(covered, summed, 1).float(), 0.0)


# ----------------------------------------------------------------------------- the two stages
@dataclass
class Prediction:
    mask: np.ndarray  # (D, H, W) uint8 on the native PET grid
    stage1_probability: np.ndarray  # (D, H, W) float32: stage 1's foreground probability on the native grid
    stage1_6mm: np.ndarray  # (D, H, W) at 6 mm: the blended stage-1 foreground probability
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: upload, stage1, resample, stage2, download


class _Phases:
    """Wall time per phase; on a GPU each phase waits for the device, so a phase holds its own kernels."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.last = device, {}, time.perf_counter()

    def done(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now


def _softmax_of(network, cfg: PipelineConfig, device: torch.device):
    def run(tiles: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=cfg.autocast or torch.float32, enabled=cfg.autocast is not None):
            return torch.softmax(network(tiles).float(), dim=1)

    return run


@torch.no_grad()
def predict(net, ct: np.ndarray, suv: np.ndarray, spacing_zyx: tuple[float, float, float],
            device: torch.device | str = "cpu", cfg: PipelineConfig = RELEASED) -> Prediction:
    """Both stages on one case: ``ct`` (HU) and ``suv`` as (D, H, W) arrays on the PET grid with spacing
    ``spacing_zyx`` (mm)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # the tile shapes repeat: pick the fastest convolution once
    net = net.to(device).eval()
    clock = _Phases(device)
    ct_t = _upload(ct, device)
    suv_t = _upload(suv, device)
    clock.done("upload")
    ct6 = resample_scaled(ct_t, spacing_zyx, cfg.stage1_spacing_mm, CT_FILL)
    suv6 = resample_scaled(suv_t, spacing_zyx, cfg.stage1_spacing_mm, SUV_FILL)
    x, pads = pad_centred(windows(ct6, suv6), cfg.stage1_tile)
    prob6 = blend(_softmax_of(net.stage1, cfg, device), x, cfg.stage1_tile, cfg.stage1_step, cfg.accumulate,
                  cfg.tile_batch)
    fg6 = crop_centred(prob6[1], pads)
    clock.done("stage1")
    cascade = resample_scaled(fg6, (cfg.stage1_spacing_mm,) * 3, spacing_zyx, 0.0, size=suv.shape)
    clock.done("resample")
    if not cfg.stage2:
        mask = cascade > 0.5  # 2 classes: argmax is p1 > 0.5
    else:
        native = windows(ct_t, suv_t).half().float()  # the official float16 cast, then promoted
        extra = cfg.refiner_channels - (native.shape[0] + 1)
        channels = [native, cascade[None]] + ([native.new_zeros((extra, *native.shape[1:]))] if extra > 0 else [])
        x6, pads2 = pad_centred(torch.cat(channels), cfg.stage2_tile)
        refiner = net.stage2 if extra <= 0 else with_input_channels(net.stage2, cfg.refiner_channels)
        prob = blend(_softmax_of(refiner, cfg, device), x6, cfg.stage2_tile, cfg.stage2_step, cfg.accumulate,
                     cfg.tile_batch)
        mask = crop_centred(prob.argmax(0), pads2)
        clock.done("stage2")
    out = Prediction(mask.to(torch.uint8).cpu().numpy(), cascade.cpu().numpy(), fg6.cpu().numpy())
    clock.done("download")
    out.seconds = clock.seconds
    return out


def _upload(volume: np.ndarray, device: torch.device) -> torch.Tensor:
    host = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host


def to_network_order(volume: np.ndarray) -> np.ndarray:
    """A CLIPS volume in its file's voxel order (x, y, z) -> the network's (z, y, x), as SimpleITK reads it."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))


def from_network_order(volume: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))


def predict_volumes(net, vols, device="cpu", cfg: PipelineConfig = RELEASED):
    """A CLIPS case (clips.data.io.PatientVolumes: CT on the PET grid, both in the file's voxel order) ->
    (mask in the same order, on the PET grid, the volumes)."""
    from clips.errors import DataError

    if vols.ct is None:
        raise DataError(vols.patient_id, "CTres.nii.gz", "the released TMTV-Net needs the CT")
    spacing = tuple(float(s) for s in vols.spacing[::-1])
    pred = predict(net, to_network_order(vols.ct), to_network_order(vols.pet), spacing, device, cfg)
    return from_network_order(pred.mask), vols
