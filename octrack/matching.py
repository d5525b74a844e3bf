"""One-to-one matching of predicted to true positions per time point, as StarDist's `matching` module matches
instances; `octrack evaluate` scores on it (octrack/scoring.py) and `octrack merge` joins shards with it.

Per time point, true and predicted positions are matched one-to-one: as many pairs as possible within the
maximum distance, and among those the pairs with the smallest summed distance (the Hungarian method).
Distances are in µm (pixel coordinates scaled by the voxel size, so z counts for what it measures) or, with a
distance in pixels, in pixels.

Users often annotate only part of an image: `restrict_to_annotated_box` then ignores predictions outside the
box around each time point's true positions. Uncertain annotations (position metadata `uncertain`, such as
nuclei mostly outside the image) are not matched with the others, and a prediction left unmatched that
matches one of them (one-to-one, within the same distance) is left out. Tentative detections (position metadata
`detection_tentative`: peaks below the detection threshold that no track took) are no predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from octrack.tracking.model import Position, Tracking, VoxelSize, coordinates_um

UNIT_UM, UNIT_PX = "um", "px"


def match_time_point(true: list[Position], predicted: list[Position], max_distance: float,
                     voxel_size: VoxelSize | None) -> list[tuple[int, int]]:
    """One-to-one (index in `true`, index in `predicted`) pairs: the most pairs within `max_distance`
    (µm via `voxel_size`, pixels when it is None), and of those the smallest summed distance.

    Only pairs within the distance are candidates (a k-d tree finds them), and the assignment is solved
    per connected group of candidates: thousands of nuclei per time point take a fraction of a second (only
    when most positions lie within the distance of each other does it approach a dense Hungarian).
    """
    if not true or not predicted:
        return []
    true_tree = cKDTree(coordinates_um(true, voxel_size))
    predicted_tree = cKDTree(coordinates_um(predicted, voxel_size))
    candidates = true_tree.sparse_distance_matrix(predicted_tree, max_distance, output_type="ndarray")
    rows, columns, distances = candidates["i"], candidates["j"], candidates["v"]
    pairs = []
    for group_rows, group_columns, group_distances in _groups(rows, columns, distances, len(true)):
        pairs.extend(_assign(group_rows, group_columns, group_distances))
    return sorted(pairs)


def _groups(rows: np.ndarray, columns: np.ndarray, distances: np.ndarray, true_count: int
            ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The candidate pairs split into connected components of the bipartite graph: independent problems."""
    if len(rows) == 0:
        return []
    nodes = true_count + int(columns.max()) + 1
    graph = coo_matrix((np.ones(len(rows)), (rows, columns + true_count)), shape=(nodes, nodes))
    _, labels = connected_components(graph, directed=False)
    pair_labels = labels[rows]
    order = np.argsort(pair_labels, kind="stable")
    splits = np.flatnonzero(np.diff(pair_labels[order])) + 1
    return [(rows[part], columns[part], distances[part]) for part in np.split(order, splits)]


def _assign(rows: np.ndarray, columns: np.ndarray, distances: np.ndarray) -> list[tuple[int, int]]:
    """Dense Hungarian on one component; non-candidate pairs cost more than any set of real pairs could,
    so the assignment first maximises the number of real pairs, then minimises their summed distance."""
    row_ids, local_rows = np.unique(rows, return_inverse=True)
    column_ids, local_columns = np.unique(columns, return_inverse=True)
    forbidden = (min(len(row_ids), len(column_ids)) + 1) * (float(distances.max()) + 1.0)
    costs = np.full((len(row_ids), len(column_ids)), forbidden)
    costs[local_rows, local_columns] = distances
    allowed = np.zeros(costs.shape, dtype=bool)
    allowed[local_rows, local_columns] = True
    chosen_rows, chosen_columns = linear_sum_assignment(costs)
    return [(int(row_ids[r]), int(column_ids[c])) for r, c in zip(chosen_rows, chosen_columns)
            if allowed[r, c]]


@dataclass(frozen=True)
class TimePointMatching:
    """The matching of one time point; `pairs` are (index in `true`, index in `predicted`)."""

    time_point: int
    true: list[Position]  # the certain annotations
    predicted: list[Position]  # the predictions that count: inside the annotated box, where restricted
    pairs: list[tuple[int, int]]
    uncertain: int = 0  # uncertain annotations
    at_uncertain: int = 0  # predictions left out because they match an uncertain annotation

    def predicted_to_true(self) -> dict[Position, Position]:
        return {self.predicted[j]: self.true[i] for i, j in self.pairs}

    def unmatched_true(self) -> list[Position]:
        matched = {i for i, _ in self.pairs}
        return [position for i, position in enumerate(self.true) if i not in matched]

    def unmatched_predicted(self) -> list[Position]:
        matched = {j for _, j in self.pairs}
        return [position for j, position in enumerate(self.predicted) if j not in matched]


@dataclass(frozen=True)
class Matching:
    """Ground truth matched to the prediction at every scored time point."""

    time_points: dict[int, TimePointMatching]
    max_distance: float
    distance_unit: str  # UNIT_UM or UNIT_PX

    def predicted_to_true(self) -> dict[Position, Position]:
        """Every matched predicted position mapped to its true position, over all time points."""
        return {predicted: true for matching in self.time_points.values()
                for predicted, true in matching.predicted_to_true().items()}


def match_trackings(ground_truth: Tracking, predicted: Tracking, *, max_distance: float,
                    voxel_size: VoxelSize | None, time_points: list[int] | None = None,
                    restrict_to_annotated_box: bool = False, box_margin_px: float | None = None) -> Matching:
    """Matches every time point of `time_points` (default: those of the ground truth).

    Distances are in µm via `voxel_size`, or in pixels when it is None. With `restrict_to_annotated_box`,
    predictions outside the box around the true positions of their time point, widened on every side by
    `box_margin_px` (default: `max_distance` in pixels along each axis), are left out.
    """
    margin_xyz = _box_margin_xyz(max_distance, voxel_size, box_margin_px)
    matchings = {}
    for time_point in ground_truth.time_points() if time_points is None else sorted(set(time_points)):
        annotated = ground_truth.positions_at(time_point)
        true = [p for p in annotated if not ground_truth.is_uncertain(p)]
        uncertain = [ground_truth.image_position(p) for p in annotated if ground_truth.is_uncertain(p)]
        guesses = [p for p in predicted.positions_at(time_point) if not predicted.is_tentative(p)]
        if restrict_to_annotated_box:
            guesses = _inside_box(guesses, annotated, margin_xyz)
        # distances in image pixels: .aut files may shift positions by per-time-point image offsets
        guessed = [predicted.image_position(p) for p in guesses]
        pairs = match_time_point([ground_truth.image_position(p) for p in true], guessed, max_distance, voxel_size)
        kept = without_uncertain_matches(pairs, guessed, uncertain, max_distance, voxel_size)
        new_index = {old: new for new, old in enumerate(kept)}
        matchings[time_point] = TimePointMatching(time_point, true, [guesses[j] for j in kept],
                                                  [(i, new_index[j]) for i, j in pairs], len(uncertain),
                                                  len(guesses) - len(kept))
    return Matching(matchings, max_distance, UNIT_PX if voxel_size is None else UNIT_UM)


def without_uncertain_matches(pairs: list[tuple[int, int]], predicted: list[Position], uncertain: list[Position],
                              max_distance: float, voxel_size: VoxelSize | None) -> list[int]:
    """Indices of the predictions that count: all but the unmatched ones (not in `pairs`) that match an
    uncertain annotation one-to-one within the distance."""
    matched = {j for _, j in pairs}
    unmatched = [j for j in range(len(predicted)) if j not in matched]
    at_uncertain = match_time_point(uncertain, [predicted[j] for j in unmatched], max_distance, voxel_size)
    left_out = {unmatched[j] for _, j in at_uncertain}
    return [j for j in range(len(predicted)) if j not in left_out]


def _box_margin_xyz(max_distance: float, voxel_size: VoxelSize | None, box_margin_px: float | None
                    ) -> np.ndarray:
    if box_margin_px is not None:
        return np.full(3, float(box_margin_px))
    if voxel_size is None:
        return np.full(3, max_distance)
    return max_distance / np.array([voxel_size.x_um, voxel_size.y_um, voxel_size.z_um])


def _inside_box(positions: list[Position], annotated: list[Position], margin_xyz: np.ndarray) -> list[Position]:
    """The positions inside the cuboid around `annotated` (none when nothing is annotated)."""
    if not annotated or not positions:
        return []
    corners = coordinates_um(annotated, None)
    low, high = corners.min(axis=0) - margin_xyz, corners.max(axis=0) + margin_xyz
    xyz = coordinates_um(positions, None)
    inside = np.all((xyz >= low) & (xyz <= high), axis=1)
    return [position for position, keep in zip(positions, inside) if keep]
