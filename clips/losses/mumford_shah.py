"""Mumford-Shah level-set loss of Kim & Ye (IEEE TIP 2020), in 3D.

For softmax probabilities ``p`` (N, K, X, Y, Z) and an intensity image ``I`` (N, 1, X, Y, Z):

    L_MS = sum_k sum_j |I_j - c_k|^2 p_jk  +  eta * sum_k sum_j |grad p_jk|

with ``c_k = sum_j I_j p_jk / sum_j p_jk`` and ``|grad p|`` the absolute forward
differences along each axis (the reference code's L1 gradient penalty). Sums, not
means, as in the reference; one value per sample.
"""
from __future__ import annotations

import torch

EPS = 1e-6


def mumford_shah_loss(probs: torch.Tensor, image: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    dims = tuple(range(2, probs.ndim))
    centroid = (probs * image).sum(dims, keepdim=True) / (probs.sum(dims, keepdim=True) + EPS)
    fidelity = ((image - centroid) ** 2 * probs).sum(dim=(1, *dims))
    tv = probs.new_zeros(probs.shape[0])
    for d in dims:
        tv = tv + probs.diff(dim=d).abs().sum(dim=tuple(range(1, probs.ndim)))
    return fidelity + eta * tv
