"""Sparse geometry of binary masks: work on the foreground voxels only.

Whole-body masks are mostly empty (a TMTV of 1 litre is under 1% of a
200 x 200 x 300 scan), so connected components and surface elements are computed
from the list of foreground voxels instead of dense passes over the volume. Results
are identical to ``scipy.ndimage.label`` and to DeepMind's dense surfel code; the
tests check both.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

# Forward neighbour offsets: each undirected adjacency once.
_OFFSETS = {
    6: [(1, 0, 0), (0, 1, 0), (0, 0, 1)],
    18: [o for o in np.ndindex(3, 3, 3) if 0 < sum(abs(np.array(o) - 1)) <= 2],
    26: [o for o in np.ndindex(3, 3, 3) if o != (1, 1, 1)],
}
_OFFSETS[18] = [tuple(np.array(o) - 1) for o in _OFFSETS[18]]
_OFFSETS[26] = [tuple(np.array(o) - 1) for o in _OFFSETS[26]]
for _c in (18, 26):  # keep one of each +/- pair
    _OFFSETS[_c] = [o for o in _OFFSETS[_c] if o > (0, 0, 0)]


def linear_index(coords: np.ndarray, shape) -> np.ndarray:
    """Row-major linear index of integer (n, 3) coordinates in ``shape``."""
    return (coords[:, 0].astype(np.int64) * shape[1] + coords[:, 1]) * shape[2] + coords[:, 2]


def label_components(coords: np.ndarray, shape, connectivity: int = 6) -> tuple[np.ndarray, int]:
    """Labels 1..n of the connected components of the voxels at ``coords`` (sorted by linear index).

    Labels are numbered in order of each component's first voxel in row-major order,
    exactly as ``scipy.ndimage.label`` numbers them.
    """
    n = len(coords)
    if n == 0:
        return np.zeros(0, np.int64), 0
    if connectivity not in _OFFSETS:
        raise ValueError(f"connectivity must be 6, 18 or 26, not {connectivity}")
    lin = linear_index(coords, shape)
    rows, cols = [], []
    shape_arr = np.asarray(shape)
    for off in _OFFSETS[connectivity]:
        nb = coords + np.asarray(off)
        inside = np.all((nb >= 0) & (nb < shape_arr), axis=1)
        nb_lin = linear_index(nb[inside], shape)
        pos = np.searchsorted(lin, nb_lin)
        pos_c = np.minimum(pos, n - 1)
        hit = lin[pos_c] == nb_lin
        rows.append(np.nonzero(inside)[0][hit])
        cols.append(pos_c[hit])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.coo_matrix((np.ones(len(r), np.int8), (r, c)), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    # Renumber by first occurrence (voxels are in row-major order), as ndimage does.
    _, first = np.unique(comp, return_index=True)
    order = np.argsort(first)
    rank = np.empty(n_comp, np.int64)
    rank[order] = np.arange(1, n_comp + 1)
    return rank[comp], n_comp


# Bit of each voxel of the 2x2x2 neighbourhood of a voxel corner, in the order of
# DeepMind's ENCODE_NEIGHBOURHOOD_3D_KERNEL: the voxel at corner - 1 + o has bit KERNEL[o].
_KERNEL = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])


def surface_corners(coords: np.ndarray, shape):
    """(corner coordinates (m, 3), neighbour codes (m,)) of the surface corners of a mask.

    A corner c lies between voxels c-1 and c on each axis; its code has one bit per
    foreground voxel among its 8 neighbours. Corners with code 0 (outside) or 255
    (inside) are not on the surface and are dropped, as in Nikolov et al. 2021.
    """
    if len(coords) == 0:
        return np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    cshape = tuple(s + 1 for s in shape)
    lins, bits = [], []
    for o in np.ndindex(2, 2, 2):
        # voxel v is neighbour "corner - 1 + o" of corner v + 1 - o
        lins.append(linear_index(coords + 1 - np.asarray(o), cshape))
        bits.append(np.full(len(coords), _KERNEL[o], np.int64))
    corners, inverse = np.unique(np.concatenate(lins), return_inverse=True)
    codes = np.bincount(inverse, weights=np.concatenate(bits)).astype(np.int64)
    keep = codes != 255
    corners, codes = corners[keep], codes[keep]
    yz = cshape[1] * cshape[2]
    xyz = np.stack([corners // yz, (corners // cshape[2]) % cshape[1], corners % cshape[2]], axis=1)
    return xyz, codes
