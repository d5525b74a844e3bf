"""Peaks of the detection network's output: nucleus centres, refined below a voxel, at least a minimum distance
apart. Generic numpy/scipy on a (z, y, x) volume; the network that made the volume is not known here."""

from __future__ import annotations

import numpy as np


def find_peaks(centres: np.ndarray, threshold: float, min_distance_zyx_px: tuple[float, float, float]
               ) -> np.ndarray:
    """Local maxima above `threshold`, at least `min_distance` apart (an ellipsoid in pixels), as (n, 4):
    z, y, x refined to sub-voxel precision (see `_refine`), and peak value.

    Every local maximum of its 3 × 3 × 3 neighbourhood is a candidate; candidates are then taken from the
    highest down, each one kept unless a kept one lies within the minimum distance. (A maximum filter as
    wide as the minimum distance would also drop a weaker nucleus that sits on the slope of a stronger one.)
    A maximum on the outermost column or row in x or y is left out: the output still rises towards the
    edge there, so the nucleus lies mostly outside the image.
    """
    from scipy.spatial import cKDTree

    candidates = _plateau_centres(_local_maxima(centres, threshold))
    if len(candidates) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    peaks = np.array([_refine(centres, candidate) for candidate in candidates], dtype=np.float32)
    peaks = peaks[np.argsort(-peaks[:, 3], kind="stable")]
    scaled = peaks[:, :3] / np.maximum(np.asarray(min_distance_zyx_px, dtype=np.float32), 1e-6)
    tree = cKDTree(scaled)
    kept = np.zeros(len(peaks), dtype=bool)
    for index in range(len(peaks)):
        neighbours = tree.query_ball_point(scaled[index], r=1.0)
        kept[index] = not kept[neighbours].any()
    return peaks[kept]


MAXIMA_SLAB_VOXELS = 1 << 24  # the maximum filter runs on slabs of z planes of about this size (64 MB float32)


def _local_maxima(centres: np.ndarray, threshold: float) -> np.ndarray:
    """(n, 3) voxels (z, y, x, in raster order) that are the maximum of their 3 × 3 × 3 neighbourhood and above
    `threshold`, except those on the outermost column or row in x or y.

    Found slab by slab in z, each slab with its neighbouring planes, so that memory holds the filter output
    of a slab rather than of the whole volume."""
    from scipy import ndimage

    depth, height, width = centres.shape
    slab = max(1, MAXIMA_SLAB_VOXELS // (height * width))
    found = []
    for first in range(0, depth, slab):
        last = min(first + slab, depth)
        low, high = max(first - 1, 0), min(last + 1, depth)
        part = centres[low:high]
        maxima = part == ndimage.maximum_filter(part, size=3, mode="constant", cval=-np.inf)
        maxima &= part > threshold
        maxima = maxima[first - low:last - low]
        for axis in (1, 2):
            if part.shape[axis] > 2:
                edges = [slice(None)] * 3
                for edge in (0, -1):
                    edges[axis] = edge
                    maxima[tuple(edges)] = False
        found.append(np.argwhere(maxima) + (first, 0, 0))
    return np.concatenate(found)


def _plateau_centres(maxima: np.ndarray) -> np.ndarray:
    """(m, 3) the centre of each group of face-adjacent maxima (a plateau of equal values is one candidate), in
    the raster order of each group's first voxel."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(maxima) == 0:
        return np.zeros((0, 3))
    pairs = cKDTree(maxima).query_pairs(r=1.0, output_type="ndarray")  # whole voxels: distance 1 = a shared face
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(maxima), len(maxima)))
    count, labels = connected_components(graph, directed=False)
    first = np.full(count, len(maxima))
    np.minimum.at(first, labels, np.arange(len(maxima)))
    rank = np.empty(count, dtype=int)
    rank[np.argsort(first)] = np.arange(count)
    sums = np.zeros((count, 3))
    np.add.at(sums, rank[labels], maxima)
    return sums / np.bincount(rank[labels], minlength=count)[:, None]


def _refine(centres: np.ndarray, peak: np.ndarray) -> tuple[float, float, float, float]:
    """Sub-voxel position: per axis, the vertex of the parabola through the log values of the maximum and its
    two neighbours (exact for a Gaussian peak); no shift along an axis where a neighbour is missing."""
    index = np.round(peak).astype(int)
    value = float(centres[tuple(index)])
    refined = []
    for axis in range(3):
        if not 0 < index[axis] < centres.shape[axis] - 1:
            refined.append(float(index[axis]))
            continue
        before, after = index.copy(), index.copy()
        before[axis] -= 1
        after[axis] += 1
        logs = np.log(np.maximum([centres[tuple(before)], value, centres[tuple(after)]], 1e-6))
        curvature = logs[0] - 2 * logs[1] + logs[2]
        shift = 0.5 * (logs[0] - logs[2]) / curvature if curvature < 0 else 0.0
        refined.append(index[axis] + float(np.clip(shift, -0.5, 0.5)))
    return (*refined, value)
