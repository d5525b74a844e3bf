"""Peaks of the detection network's output: nucleus centres, refined below a voxel, at least a minimum distance
apart. Generic numpy/scipy on a (z, y, x) volume; the network that made the volume is not known here.

Every step works on whole arrays (no Python loop per candidate), and the number of candidates is capped, so
that decoding costs about a second per 512 × 512 × 32 frame whatever the network put out, pure noise included.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

# A nucleus spans far more than 100 voxels at the model's voxel size; more local maxima than one per 100 voxels
# above the threshold is noise (an untrained model, the wrong voxel size), and only the strongest are decoded.
MAX_CANDIDATES_PER_VOXEL = 0.01
MIN_CANDIDATE_CAP = 1000  # the cap of a small frame


def find_peaks(centres: np.ndarray, threshold: float, min_distance_zyx_px: tuple[float, float, float]
               ) -> np.ndarray:
    """Local maxima above `threshold`, at least `min_distance` apart (an ellipsoid in pixels), as (n, 4):
    z, y, x refined to sub-voxel precision (see `_refine`), and peak value, strongest first.

    Every local maximum of its 3 × 3 × 3 neighbourhood is a candidate; candidates are then taken from the
    highest down, each one kept unless a kept one lies within the minimum distance. (A maximum filter as
    wide as the minimum distance would also drop a weaker nucleus that sits on the slope of a stronger one.)
    A maximum on the outermost column or row in x or y is left out: the output still rises towards the
    edge there, so the nucleus lies mostly outside the image. At most `candidate_cap(centres.shape)`
    candidates, the strongest, are decoded (with a warning when there are more).
    """
    return find_peaks_at(centres, (threshold,), min_distance_zyx_px)[0]


def find_peaks_at(centres: np.ndarray, thresholds: Sequence[float], min_distance_zyx_px: tuple[float, float, float]
                  ) -> list[np.ndarray]:
    """`find_peaks` at each of several thresholds, from one set of candidates: the candidates above a higher
    threshold are the strongest of those above the lowest, and the suppression takes candidates from the
    strongest down, so the peaks at a higher threshold are the peaks at the lowest that pass it."""
    candidates = _candidates(centres, min(thresholds))
    peaks = candidates[_kept_apart(candidates[:, :3], min_distance_zyx_px)]
    return [peaks[peaks[:, 3] > threshold] for threshold in thresholds]


def candidate_cap(shape_zyx: tuple[int, ...]) -> int:
    """The most candidates decoded in a frame of this shape."""
    return max(MIN_CANDIDATE_CAP, int(MAX_CANDIDATES_PER_VOXEL * np.prod(shape_zyx)))


def _candidates(centres: np.ndarray, threshold: float) -> np.ndarray:
    """(n, 4) refined candidates (z, y, x, value), strongest first (ties in the raster order of each plateau's
    first voxel), at most `candidate_cap` of them."""
    cap = candidate_cap(centres.shape)
    maxima = _local_maxima(centres, threshold, PLATEAU_VOXELS_PER_CANDIDATE * cap)
    plateaus, first_voxels = _plateau_centres(maxima)
    levels = centres[tuple(maxima[first_voxels].T)]
    order = np.argsort(-levels, kind="stable")
    if len(order) > cap:
        log.warning(f"{len(order)} local maxima above the peak threshold {threshold:g} in a frame of z, y, x = "
                    f"{', '.join(map(str, centres.shape))}: far more than nuclei can be (a sign of an untrained "
                    f"model or the wrong voxel size); only the strongest {cap} are decoded")
        order = order[:cap]
    return _refine(centres, plateaus[order], levels[order])


MAXIMA_SLAB_VOXELS = 1 << 24  # the maximum filter runs on slabs of z planes of about this size (64 MB float32)
# maxima voxels kept per candidate of the cap: plateaus of a few voxels are common, a frame-wide plateau (a model
# that outputs a constant) is not, and grouping every voxel of one would cost many frames of memory
PLATEAU_VOXELS_PER_CANDIDATE = 8


def _local_maxima(centres: np.ndarray, threshold: float, limit: int) -> np.ndarray:
    """(n, 3) voxels (z, y, x, in raster order) that are the maximum of their 3 × 3 × 3 neighbourhood and above
    `threshold`, except those on the outermost column or row in x or y; at most `limit` of them, the first in
    raster order, with a warning where there are more.

    Found slab by slab in z, each slab with its neighbouring planes, so that memory holds the neighbourhood
    maxima of a slab rather than of the whole volume."""
    depth, height, width = centres.shape
    slab = max(1, MAXIMA_SLAB_VOXELS // (height * width))
    found, count = [], 0
    for first in range(0, depth, slab):
        last = min(first + slab, depth)
        low, high = max(first - 1, 0), min(last + 1, depth)
        part = centres[low:high]
        maxima = part == _neighbourhood_maximum(part)
        maxima &= part > threshold
        maxima = maxima[first - low:last - low]
        for axis in (1, 2):
            if part.shape[axis] > 2:
                edges = [slice(None)] * 3
                for edge in (0, -1):
                    edges[axis] = edge
                    maxima[tuple(edges)] = False
        flat = np.flatnonzero(maxima)
        if count + len(flat) > limit:
            log.warning(f"over {limit} voxels are local maxima above the peak threshold {threshold:g} in a frame "
                        f"of z, y, x = {', '.join(map(str, centres.shape))} (a model that outputs a constant?); "
                        f"only the first {limit} in raster order are decoded")
            flat = flat[:limit - count]
        count += len(flat)
        found.append(np.column_stack(np.unravel_index(flat, maxima.shape)) + (first, 0, 0))
        if count >= limit:
            break
    return np.concatenate(found)


def _neighbourhood_maximum(volume: np.ndarray) -> np.ndarray:
    """The maximum of each voxel's 3 × 3 × 3 neighbourhood within the volume (scipy's maximum_filter, about
    five times faster: one axis at a time, on shifted views)."""
    result = volume.copy()
    for axis in range(volume.ndim):
        source = result.copy() if axis else volume
        lower, upper = [slice(None)] * volume.ndim, [slice(None)] * volume.ndim
        lower[axis], upper[axis] = slice(None, -1), slice(1, None)
        lower, upper = tuple(lower), tuple(upper)
        np.maximum(result[lower], source[upper], out=result[lower])
        np.maximum(result[upper], source[lower], out=result[upper])
    return result


def _plateau_centres(maxima: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, 3) the centre of each group of face-adjacent maxima (a plateau of equal values is one candidate), in
    the raster order of each group's first voxel; and (m,) the index of that first voxel among the maxima."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = _face_neighbours(maxima)
    if len(pairs) == 0:
        return maxima.astype(np.float64), np.arange(len(maxima))
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(maxima), len(maxima)))
    count, labels = connected_components(graph, directed=False)
    first = np.full(count, len(maxima))
    np.minimum.at(first, labels, np.arange(len(maxima)))
    rank = np.empty(count, dtype=int)
    by_first = np.argsort(first)
    rank[by_first] = np.arange(count)
    sums = np.zeros((count, 3))
    np.add.at(sums, rank[labels], maxima)
    return sums / np.bincount(rank[labels], minlength=count)[:, None], first[by_first]


def _face_neighbours(voxels: np.ndarray) -> np.ndarray:
    """(p, 2) indices of the pairs of voxels (given in raster order) that share a face."""
    if len(voxels) == 0:
        return np.zeros((0, 2), dtype=np.intp)
    size = voxels.max(axis=0) + 2  # room for the neighbour one further along each axis
    flat = np.ravel_multi_index(tuple(voxels.T), tuple(size))  # increasing: raster order
    pairs = []
    for axis, stride in enumerate((size[1] * size[2], size[2], 1)):
        neighbour = np.searchsorted(flat, flat + stride).clip(max=len(flat) - 1)
        found = np.nonzero(flat[neighbour] == flat + stride)[0]
        pairs.append(np.stack([found, neighbour[found]], axis=1))
    return np.concatenate(pairs)


def _refine(centres: np.ndarray, candidates: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(n, 4) float32: sub-voxel z, y, x and the level (the value of the candidate's maxima). Per axis, the vertex
    of the parabola through the log values of the rounded candidate and its two neighbours (exact for a Gaussian
    peak); no shift along an axis where a neighbour is missing."""
    index = np.round(candidates).astype(np.intp)
    flat = centres.reshape(-1)
    strides = np.array([centres.shape[1] * centres.shape[2], centres.shape[2], 1])
    at = index @ strides
    log_value = np.log(np.maximum(flat[at].astype(np.float64), 1e-6))
    refined = index.astype(np.float64)
    for axis in range(3):
        inside = np.nonzero((index[:, axis] > 0) & (index[:, axis] < centres.shape[axis] - 1))[0]
        before, after = (np.log(np.maximum(flat[at[inside] + step].astype(np.float64), 1e-6))
                         for step in (-strides[axis], strides[axis]))
        curvature = before - 2 * log_value[inside] + after
        rising = curvature < 0
        shift = np.zeros(len(inside))
        shift[rising] = 0.5 * (before[rising] - after[rising]) / curvature[rising]
        refined[inside, axis] += np.clip(shift, -0.5, 0.5)
    return np.column_stack([refined, levels]).astype(np.float32)


def _kept_apart(points: np.ndarray, min_distance_zyx_px: tuple[float, float, float]) -> np.ndarray:
    """Which of the points (strongest first) the greedy rule keeps: each one unless an earlier kept one lies
    within the minimum distance.

    Decided in rounds over the pairs of points within that distance: a point none of whose earlier neighbours
    is still undecided is kept, and its later neighbours are dropped; the rounds number the longest chain of
    points that wait on each other, a few for a network's output."""
    from scipy.spatial import cKDTree

    scaled = points / np.maximum(np.asarray(min_distance_zyx_px, dtype=np.float32), 1e-6)
    pairs = cKDTree(scaled).query_pairs(r=1.0, output_type="ndarray")
    earlier, later = pairs.min(axis=1), pairs.max(axis=1)
    undecided = np.ones(len(points), dtype=bool)
    kept = np.zeros(len(points), dtype=bool)
    while undecided.any():
        waiting = np.zeros(len(points), dtype=bool)
        waiting[later] = True
        now = undecided & ~waiting
        kept |= now
        undecided &= ~now
        undecided[later[kept[earlier]]] = False
        open_pairs = undecided[earlier] & undecided[later]
        earlier, later = earlier[open_pairs], later[open_pairs]
    return kept
