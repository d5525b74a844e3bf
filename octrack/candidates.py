"""Candidate links between the positions of consecutive time points: one rule for training and prediction.

For every position at t, its partners at t+1 are the positions within `factor` times the distance to its
nearest one there, at most `max_partners` of them, nearest first; the search runs the other way as well
(from every position at t+1 back to t), and a pair found either way is a candidate. The link network learns
on exactly the pairs that it will score, and the tracker chooses among the same pairs.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from octrack.tracking.model import Position, Tracking, coordinates_um

DEFAULT_FACTOR = 2.0
DEFAULT_MAX_PARTNERS = 5


def candidate_pairs(sources_um: np.ndarray, targets_um: np.ndarray, factor: float = DEFAULT_FACTOR,
                    max_partners: int = DEFAULT_MAX_PARTNERS) -> list[tuple[int, int]]:
    """(source index, target index) pairs by the rule above, sorted."""
    if len(sources_um) == 0 or len(targets_um) == 0:
        return []
    forward = _nearest_within_factor(sources_um, targets_um, factor, max_partners)
    backward = _nearest_within_factor(targets_um, sources_um, factor, max_partners)[:, ::-1]
    pairs = np.unique(np.concatenate([forward, backward]), axis=0)  # sorted, each pair once
    return list(map(tuple, pairs.tolist()))


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
