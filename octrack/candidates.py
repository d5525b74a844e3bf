"""Candidate links between the positions of consecutive time points: one rule for training and prediction.

For every position at t, its partners at t+1 are the positions within `factor` times the distance to its
nearest one there, at most `max_partners` of them, nearest first; the search runs the other way as well
(from every position at t+1 back to t), and a pair found either way is a candidate. Distances are measured
after the shift of the whole picture between the two time points (`frame_shift`: a drifting stage or sample),
so that the rule finds a cell's partner near where the picture moved it: on the breast-cancer movie, which
drifts by about 16 px per time point at 28 px between nuclei, 66 of its 2819 true links were no candidates
without the shift, none with it. The link network learns on exactly the pairs that it will score, and the
tracker chooses among the same pairs.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from octrack.tracking.model import Position, Tracking, coordinates_um

DEFAULT_FACTOR = 2.0
DEFAULT_MAX_PARTNERS = 5
SIGNIFICANT_SHIFT = 0.8  # a shift must leave the median nearest distance this much as large, or less
SHIFT_MIN_POSITIONS = 10  # at each time point, to tell a shift of the whole from cells moving together


def candidate_pairs(sources_um: np.ndarray, targets_um: np.ndarray, factor: float = DEFAULT_FACTOR,
                    max_partners: int = DEFAULT_MAX_PARTNERS) -> list[tuple[int, int]]:
    """(source index, target index) pairs by the rule above, sorted."""
    if len(sources_um) == 0 or len(targets_um) == 0:
        return []
    shifted = sources_um + frame_shift(sources_um, targets_um)[0]
    forward = _nearest_within_factor(shifted, targets_um, factor, max_partners)
    backward = _nearest_within_factor(targets_um, shifted, factor, max_partners)[:, ::-1]
    pairs = np.unique(np.concatenate([forward, backward]), axis=0)  # sorted, each pair once
    return list(map(tuple, pairs.tolist()))


def frame_shift(sources: np.ndarray, targets: np.ndarray, starts: list[np.ndarray] | None = None, rounds: int = 10
                ) -> tuple[np.ndarray, float]:
    """The shift of the whole picture from `sources` to `targets` (positions, (n, 3)) and the median distance
    that it leaves: the median displacement from each position to its nearest target, found again after
    shifting (as iterative closest points do), from no shift, from the displacement most of the positions share
    with one of their nearest targets (`_voted_shift`) and from each of `starts`; the start whose shift leaves
    the smallest median distance wins. No shift (zeros) unless one leaves the median distance
    `SIGNIFICANT_SHIFT` times as large or less (cells moving on their own are no drift), or where either side has
    fewer than `SHIFT_MIN_POSITIONS` positions."""
    if min(len(sources), len(targets)) < SHIFT_MIN_POSITIONS:
        return np.zeros(3), float("nan")
    tree = cKDTree(targets)
    unshifted = float(np.median(tree.query(sources)[0]))
    best: tuple[np.ndarray, float] = (np.zeros(3), unshifted * SIGNIFICANT_SHIFT)
    for shift in [np.zeros(3), _voted_shift(sources, targets, tree), *(starts or [])]:
        for _ in range(rounds):
            _, nearest = tree.query(sources + shift)
            shift = np.median(targets[nearest] - sources, axis=0)
        remaining = float(np.median(tree.query(sources + shift)[0]))
        if remaining < best[1]:
            best = (shift, remaining)
    return best


def _voted_shift(sources: np.ndarray, targets: np.ndarray, tree: cKDTree, partners: int = 5) -> np.ndarray:
    """The displacement from a position to one of its `partners` nearest targets that most such displacements
    lie near (within a quarter of the median nearest distance): where the whole picture moved."""
    distances, nearest = tree.query(sources, k=min(partners, len(targets)))
    vectors = (targets[nearest.reshape(len(sources), -1)] - sources[:, None, :]).reshape(-1, 3)
    radius = max(float(np.median(distances.reshape(len(sources), -1)[:, 0])) / 4, 1e-9)
    votes = cKDTree(vectors).query_ball_point(vectors, radius, return_length=True)
    return vectors[int(np.argmax(votes))]


def _nearest_within_factor(points: np.ndarray, partners: np.ndarray, factor: float, max_partners: int
                           ) -> np.ndarray:
    """(n, 2) (point, partner) for the nearest `max_partners` partners within `factor` × the nearest distance."""
    count = min(max_partners, len(partners))
    distances, indices = cKDTree(partners).query(points, k=count)
    distances, indices = distances.reshape(len(points), count), indices.reshape(len(points), count)
    limit = factor * distances[:, :1]
    rows, columns = np.nonzero(distances <= limit * (1 + 1e-9))
    return np.column_stack([rows, indices[rows, columns]]).astype(np.int64)


def candidate_links(tracking: Tracking, time_point: int, factor: float = DEFAULT_FACTOR,
                    max_partners: int = DEFAULT_MAX_PARTNERS) -> list[tuple[Position, Position]]:
    """Candidate links from the positions at `time_point` to those at `time_point + 1` of a tracking."""
    sources = tracking.positions_at(time_point)
    targets = tracking.positions_at(time_point + 1)
    pairs = candidate_pairs(coordinates_um(sources, tracking.voxel_size),
                            coordinates_um(targets, tracking.voxel_size), factor, max_partners)
    return [(sources[source], targets[target]) for source, target in pairs]
