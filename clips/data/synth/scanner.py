"""What the scanner does to the activity: resolution, reconstruction filter and count-dependent noise.

Each patient gets their own point-spread function (FWHM 5.5-8 mm), post-reconstruction filter (FWHM 2-5 mm) and
noise level. The noise level is set as the liver's coefficient of variation (CoV, the EARL image-quality
measure): it grows with body size (attenuation) and falls with the counts (dose x time per bed):
CoV = 0.085 * scale^2 / sqrt(counts). Low-count patients get a CoV of 0.17-0.28.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from clips.data.synth.phantom import Grid, gaussian_sigma_vox

LOW_COUNT_COV = (0.17, 0.28)


@dataclass(frozen=True)
class Scanner:
    psf_fwhm_mm: float
    filter_fwhm_mm: float
    liver_cov: float  # noise level, as the liver's coefficient of variation it produces
    counts: float  # relative to a standard acquisition
    ct_noise_hu: float


def draw_scanner(rng, scale: float, low_counts: bool) -> Scanner:
    psf, filt, ct_noise = rng.uniform(5.5, 8.0), rng.uniform(2.0, 5.0), rng.uniform(8, 15)
    if low_counts:
        cov = rng.uniform(*LOW_COUNT_COV)
        counts = (0.085 * scale**2 / cov) ** 2
    else:
        counts = rng.uniform(0.8, 1.6)
        cov = 0.085 * scale**2 / np.sqrt(counts)
    return Scanner(float(psf), float(filt), float(cov), float(counts), float(ct_noise))


def acquire(suv: np.ndarray, ct: np.ndarray, grid: Grid, sc: Scanner, liver_suv: float, rng):
    """Reconstructed PET (float32 SUV) and CT (int16 HU) from the true activity and densities."""
    fwhm = float(np.hypot(sc.psf_fwhm_mm, sc.filter_fwhm_mm))  # resolution after the post-filter
    pet = ndimage.gaussian_filter(suv, gaussian_sigma_vox(fwhm, grid.spacing), mode="nearest")
    noise = ndimage.gaussian_filter(rng.standard_normal(grid.shape).astype(np.float32),
                                    gaussian_sigma_vox(sc.filter_fwhm_mm, grid.spacing))
    noise /= noise.std() + 1e-8
    # variance proportional to the signal, scaled so that the liver shows the planned CoV
    level = sc.liver_cov * np.sqrt(liver_suv)
    pet = np.clip(pet + level * np.sqrt(np.maximum(pet, 0)) * noise, 0, None).astype(np.float32)
    ct = ndimage.gaussian_filter(ct, 0.6) + rng.normal(0, sc.ct_noise_hu, grid.shape)
    return pet, np.clip(np.round(ct), -1024, 3071).astype(np.int16)
