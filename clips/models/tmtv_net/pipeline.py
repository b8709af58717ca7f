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
PET's origin and rounds the size, which is a scaling of voxel indices, done here with SciPy directly.
Deviations kept: none by default; ``accumulate=torch.float32`` instead of the official float16 accumulators is
an option (its effect on the mask is measured in docs/tmtv_net.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from clips.data.preprocess import CHANNEL_WINDOWS

CT_FILL, SUV_FILL = -1024.0, 0.0


@dataclass(frozen=True)
class PipelineConfig:
    """The released pipeline's sizes (the defaults); tests run the same code on small tiles."""

    stage1_spacing_mm: float = 6.0
    stage1_tile: tuple[int, int, int] = (128, 96, 96)
    stage1_step: tuple[int, int, int] = (64, 48, 48)
    stage2_tile: tuple[int, int, int] = (96, 96, 96)
    stage2_step: tuple[int, int, int] = (48, 48, 48)
    accumulate: torch.dtype = torch.float16  # the official accumulators; float32 is the one deviation offered
    stage2: bool = True  # False: stop after stage 1 (its probability on the native grid > 0.5 is the mask)


RELEASED = PipelineConfig()
# The same code on small tiles, for the tests and the GPU check's CPU fallback (the released sizes take about 88 s
# a stage-1 tile on 2 cores).
SMALL = PipelineConfig(stage1_tile=(32, 16, 16), stage1_step=(16, 8, 8), stage2_tile=(16, 16, 16),
                       stage2_step=(8, 8, 8))


# ----------------------------------------------------------------------------- preprocessing
def windows(ct: np.ndarray, suv: np.ndarray) -> np.ndarray:
    """The five input channels, in the released order: ct, suv, ct_lung, ct_soft, suv_hot, each clipped to its
    window and scaled to [0, 1] (the same windows as CLIPS's own preprocessing)."""
    source = {"ct": ct, "pet": suv}
    return np.stack([(np.clip(source[kind], lo, hi) - lo) / (hi - lo)
                     for kind, lo, hi in CHANNEL_WINDOWS]).astype(np.float32)


def resample_scaled(volume: np.ndarray, spacing: tuple[float, ...], target: float | tuple[float, ...],
                    fill: float, size: tuple[int, ...] | None = None) -> np.ndarray:
    """Linear resampling onto a grid with the same origin and spacing ``target``: new voxel j sits at old
    continuous index j * target / spacing. Inside the old image (continuous index within [-0.5, n - 0.5), as
    ITK counts it: half-open, checked against SimpleITK in the tests) neighbours are clamped to the border;
    outside, ``fill``. Default size: round(n * spacing / target), the official rule."""
    spacing = np.asarray(spacing, float)
    target = np.broadcast_to(np.asarray(target, float), spacing.shape)
    n = np.asarray(volume.shape)
    size = tuple(int(round(v)) for v in n * spacing / target) if size is None else tuple(size)
    axes = [np.arange(s) * t / sp for s, t, sp in zip(size, target, spacing)]
    inside = [(a >= -0.5) & (a < m - 0.5) for a, m in zip(axes, n)]
    coords = np.meshgrid(*[np.clip(a, 0, m - 1) for a, m in zip(axes, n)], indexing="ij")
    out = ndimage.map_coordinates(volume.astype(np.float32), coords, order=1, mode="nearest")
    mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    return np.where(mask, out, np.float32(fill)).astype(np.float32)


def pad_centred(volume: np.ndarray, multiple: tuple[int, int, int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Zero padding of the last three axes to a multiple of ``multiple``, centred: diff // 2 on the left, the
    rest on the right. Returns the padded array and the (left, right) pads, for :func:`crop_centred`."""
    pads = []
    for n, m in zip(volume.shape[-3:], multiple):
        diff = (-n) % m
        pads.append((diff // 2, diff - diff // 2))
    return np.pad(volume, [(0, 0)] * (volume.ndim - 3) + pads), pads


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
          accumulate: torch.dtype = torch.float16) -> torch.Tensor:
    """Tiles of ``volume`` (C, D, H, W), origins 0, step, ... while the tile fits, z then y then x; ``fn`` maps a
    tile (1, C, *tile) to an output (1, K, *tile); outputs weighted by :func:`central_weighting`, summed and
    divided by the summed weight in ``accumulate`` precision (the official float16); voxels whose summed weight
    is 0 get 0."""
    weight = torch.from_numpy(central_weighting(tile)).to(volume.device)
    total = None
    summed = torch.zeros(volume.shape[1:], dtype=accumulate, device=volume.device)
    for z in tile_origins(volume.shape[1], tile[0], step[0]):
        for y in tile_origins(volume.shape[2], tile[1], step[1]):
            for x in tile_origins(volume.shape[3], tile[2], step[2]):
                where = (slice(z, z + tile[0]), slice(y, y + tile[1]), slice(x, x + tile[2]))
                out = fn(volume[(slice(None), *where)][None])[0]
                if total is None:
                    total = torch.zeros((out.shape[0], *volume.shape[1:]), dtype=accumulate, device=volume.device)
                total[(slice(None), *where)] += (out * weight).to(accumulate)
                summed[where] += weight.to(accumulate)
    covered = summed > 0
    return torch.where(covered, total.float() / torch.where(covered, summed, 1).float(), 0.0)


# ----------------------------------------------------------------------------- the two stages
@dataclass
class Prediction:
    mask: np.ndarray  # (D, H, W) uint8 on the native PET grid
    stage1_probability: np.ndarray  # (D, H, W) float32: stage 1's foreground probability on the native grid
    stage1_6mm: np.ndarray  # (D, H, W) at 6 mm: the blended stage-1 foreground probability


@torch.no_grad()
def predict(net, ct: np.ndarray, suv: np.ndarray, spacing_zyx: tuple[float, float, float],
            device: torch.device | str = "cpu", cfg: PipelineConfig = RELEASED) -> Prediction:
    """Both stages on one case: ``ct`` (HU) and ``suv`` as (D, H, W) arrays on the PET grid with spacing
    ``spacing_zyx`` (mm)."""
    device = torch.device(device)
    net = net.to(device).eval()
    ct6 = resample_scaled(ct, spacing_zyx, cfg.stage1_spacing_mm, CT_FILL)
    suv6 = resample_scaled(suv, spacing_zyx, cfg.stage1_spacing_mm, SUV_FILL)
    x, pads = pad_centred(windows(ct6, suv6), cfg.stage1_tile)
    prob6 = blend(lambda t: torch.softmax(net.stage1(t), dim=1), torch.from_numpy(x).to(device), cfg.stage1_tile,
                  cfg.stage1_step, cfg.accumulate)
    fg6 = crop_centred(prob6[1], pads).cpu().numpy()
    cascade = resample_scaled(fg6, (cfg.stage1_spacing_mm,) * 3, spacing_zyx, 0.0, size=suv.shape)
    if not cfg.stage2:
        return Prediction((cascade > 0.5).astype(np.uint8), cascade, fg6)  # 2 classes: argmax is p1 > 0.5
    native = windows(ct, suv).astype(np.float16).astype(np.float32)  # the official float16 cast, then promoted
    x6, pads2 = pad_centred(np.concatenate([native, cascade[None]]), cfg.stage2_tile)
    prob = blend(lambda t: torch.softmax(net.stage2(t), dim=1), torch.from_numpy(x6).to(device), cfg.stage2_tile,
                 cfg.stage2_step, cfg.accumulate)
    mask = crop_centred(prob.argmax(0), pads2).cpu().numpy().astype(np.uint8)
    return Prediction(mask, cascade, fg6)


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
