"""Scoring predicted nucleus positions against ground truth, as StarDist's `matching` module scores instances.

Per time point, true and predicted positions are matched one-to-one: as many pairs as possible within the
maximum distance, and among those the pairs with the smallest summed distance (the Hungarian method).
Matched predictions are true positives, unmatched predictions false positives and unmatched true positions
false negatives. Distances are in µm (pixel coordinates scaled by the voxel size, so z counts for what it
measures) or, with a distance in pixels, in pixels.

Which predictions count: by default only those at the time points of the ground truth, because users
annotate some time points only; a prediction at a time point without any ground truth is not counted.
Users often annotate only part of an image, too: `restrict_to_annotated_box` then ignores predictions
outside the box around each time point's true positions.

Uncertain annotations (position metadata `uncertain`, such as nuclei mostly outside the image) count
neither way: they are not matched with the others, and a prediction left unmatched that matches one of them
(one-to-one, within the same distance) is left out instead of being a false positive.

The matching itself (`Matching`) stays with the scores, so that links and divisions can be scored on it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from octrack.errors import UserError
from octrack.files import atomic_path
from octrack.tracking.model import Position, Tracking, VoxelSize

DEFAULT_MAX_DISTANCE_UM = 5.0
log = logging.getLogger(__name__)
UNIT_UM, UNIT_PX = "um", "px"


# Matching
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
    true_tree = cKDTree(_coordinates(true, voxel_size))
    predicted_tree = cKDTree(_coordinates(predicted, voxel_size))
    candidates = true_tree.sparse_distance_matrix(predicted_tree, max_distance, output_type="ndarray")
    rows, columns, distances = candidates["i"], candidates["j"], candidates["v"]
    pairs = []
    for group_rows, group_columns, group_distances in _groups(rows, columns, distances, len(true)):
        pairs.extend(_assign(group_rows, group_columns, group_distances))
    return sorted(pairs)


def _coordinates(positions: list[Position], voxel_size: VoxelSize | None) -> np.ndarray:
    """(n, 3) x, y, z in µm, or in pixels without a voxel size."""
    xyz = np.array([(p.x, p.y, p.z) for p in positions], dtype=np.float64).reshape(-1, 3)
    if voxel_size is None:
        return xyz
    return xyz * np.array([voxel_size.x_um, voxel_size.y_um, voxel_size.z_um])


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
        guesses = predicted.positions_at(time_point)
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
    corners = _coordinates(annotated, None)
    low, high = corners.min(axis=0) - margin_xyz, corners.max(axis=0) + margin_xyz
    xyz = _coordinates(positions, None)
    inside = np.all((xyz >= low) & (xyz <= high), axis=1)
    return [position for position, keep in zip(positions, inside) if keep]


# Scores
@dataclass(frozen=True)
class Counts:
    """True positives, false positives and false negatives, and the scores derived from them.

    A score whose denominator is 0 is 1.0 when there was nothing to get wrong (no false positives for
    precision, no false negatives for recall, neither for F1), else 0.0; so empty ground truth with an empty
    prediction scores 1.0 throughout, and any miss or spurious detection pulls the scores below 1.
    """

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def true_count(self) -> int:
        return self.true_positives + self.false_negatives

    @property
    def predicted_count(self) -> int:
        return self.true_positives + self.false_positives

    @property
    def precision(self) -> float:
        return _ratio(self.true_positives, self.predicted_count, perfect=self.false_negatives == 0)

    @property
    def recall(self) -> float:
        return _ratio(self.true_positives, self.true_count, perfect=self.false_positives == 0)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.true_positives, self.true_count + self.predicted_count, perfect=True)

    def _counts_json(self) -> dict[str, Any]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "true_positives": self.true_positives, "false_positives": self.false_positives,
                "false_negatives": self.false_negatives}


@dataclass(frozen=True)
class DetectionScores(Counts):
    """Detection counts and scores, overall and per time point, with the matching they come from."""

    max_distance: float
    distance_unit: str
    per_time_point: dict[int, DetectionScores] = field(default_factory=dict)
    matching: Matching | None = field(default=None, repr=False, compare=False)
    uncertain: int = 0  # uncertain annotations, which count neither way
    at_uncertain: int = 0  # predictions left out because they match one

    @classmethod
    def from_matching(cls, matching: Matching) -> DetectionScores:
        per_time_point = {time_point: cls._of_time_point(one, matching)
                          for time_point, one in matching.time_points.items()}
        return cls(sum(s.true_positives for s in per_time_point.values()),
                   sum(s.false_positives for s in per_time_point.values()),
                   sum(s.false_negatives for s in per_time_point.values()),
                   matching.max_distance, matching.distance_unit, per_time_point, matching,
                   sum(s.uncertain for s in per_time_point.values()),
                   sum(s.at_uncertain for s in per_time_point.values()))

    @classmethod
    def _of_time_point(cls, one: TimePointMatching, matching: Matching) -> DetectionScores:
        matched = len(one.pairs)
        alone = Matching({one.time_point: one}, matching.max_distance, matching.distance_unit)
        return cls(matched, len(one.predicted) - matched, len(one.true) - matched,
                   matching.max_distance, matching.distance_unit, matching=alone, uncertain=one.uncertain,
                   at_uncertain=one.at_uncertain)

    def to_json(self) -> dict[str, Any]:
        return {**self._counts_json(),
                "per_time_point": {str(t): scores._counts_json() for t, scores in self.per_time_point.items()},
                "max_distance": self.max_distance, "distance_unit": self.distance_unit,
                "uncertain_annotations": self.uncertain, "predictions_at_uncertain_annotations": self.at_uncertain}


def _ratio(numerator: int, denominator: int, *, perfect: bool) -> float:
    if denominator == 0:
        return 1.0 if perfect else 0.0
    return numerator / denominator


def score_detections(ground_truth: Tracking, predicted: Tracking, *, max_distance_um: float | None = None,
                     max_distance_px: float | None = None, voxel_size: VoxelSize | None = None,
                     time_points: list[int] | None = None, restrict_to_annotated_box: bool = False,
                     box_margin_px: float | None = None) -> DetectionScores:
    """Scores `predicted` against `ground_truth` (see the module's docstring for what counts).

    The voxel size is `voxel_size`, else the ground truth's, else the prediction's. Give at most one
    distance; without one it is `DEFAULT_MAX_DISTANCE_UM`, which needs a voxel size. A distance in pixels
    compares pixel coordinates as they are, whatever the voxel size.
    """
    voxel_size = voxel_size or ground_truth.voxel_size or predicted.voxel_size
    max_distance, unit = _resolve_distance(max_distance_um, max_distance_px, voxel_size)
    matching = match_trackings(ground_truth, predicted, max_distance=max_distance,
                               voxel_size=voxel_size if unit == UNIT_UM else None, time_points=time_points,
                               restrict_to_annotated_box=restrict_to_annotated_box, box_margin_px=box_margin_px)
    return DetectionScores.from_matching(matching)


def _resolve_distance(max_distance_um: float | None, max_distance_px: float | None,
                      voxel_size: VoxelSize | None) -> tuple[float, str]:
    if max_distance_um is not None and max_distance_px is not None:
        raise UserError("give the maximum distance either in µm (--max-distance-um) or in pixels "
                        "(--max-distance-px), not both")
    if max_distance_px is not None:
        return _checked_distance(max_distance_px, "--max-distance-px"), UNIT_PX
    if voxel_size is None and max_distance_um is None:
        log.warning(f"the voxel size is unknown: matching within {DEFAULT_MAX_DISTANCE_UM:g} pixels (choose with "
                    f"--max-distance-px, or give --voxel-size X Y Z)")
        return DEFAULT_MAX_DISTANCE_UM, UNIT_PX
    if voxel_size is None:
        raise UserError("the voxel size is unknown, so a distance in µm cannot be measured: pass "
                        "--max-distance-px D, or a voxel size with --voxel-size X Y Z")
    if min(voxel_size.zyx_um()) <= 0 or not all(map(math.isfinite, voxel_size.zyx_um())):
        raise UserError(f"voxel size {voxel_size.x_um} {voxel_size.y_um} {voxel_size.z_um} µm: every size "
                        f"must be a positive number")
    distance = DEFAULT_MAX_DISTANCE_UM if max_distance_um is None else max_distance_um
    return _checked_distance(distance, "--max-distance-um"), UNIT_UM


def _checked_distance(distance: float, option: str) -> float:
    if not math.isfinite(distance) or distance < 0:
        raise UserError(f"{option} {distance}: the maximum distance must be a number >= 0")
    return float(distance)


# Links, divisions and tracks
DIVISION_TOLERANCE = 1  # time points by which a found division may be off


@dataclass(frozen=True)
class TrackingScores:
    """Detection, link and division scores on one detection matching, and the true tracks (cell-cycle
    segments) that came out without any error."""

    detection: DetectionScores
    links: Counts
    divisions: Counts
    tracks: int
    tracks_without_error: int
    traccuracy: dict[str, Any] | None = None  # the package traccuracy's scores on the same matching, if asked

    @property
    def tracks_without_error_fraction(self) -> float:
        return self.tracks_without_error / self.tracks if self.tracks else 1.0

    def to_json(self) -> dict[str, Any]:
        return {**self.detection.to_json(), "link_f1": self.links.f1, "division_f1": self.divisions.f1,
                "links": self.links._counts_json(), "divisions": self.divisions._counts_json(),
                "tracks": self.tracks, "tracks_without_error": self.tracks_without_error,
                "tracks_without_error_fraction": self.tracks_without_error_fraction,
                **({"traccuracy": self.traccuracy} if self.traccuracy is not None else {})}


def score_tracking(ground_truth: Tracking, predicted: Tracking, detection: DetectionScores, *,
                   division_tolerance: int = DIVISION_TOLERANCE) -> TrackingScores:
    """Links, divisions and tracks, on the matching of `detection`, at its time points.

    A predicted link is right when the true positions matched to its ends are linked. A predicted division
    (a mother) is right when its matched true position is a true mother, or lies on the same cell up to
    `division_tolerance` time points before or after one; each true division is found at most once, the
    closest in time first. A true track is without error when every position of it is matched, and the
    links of each match are exactly the matches of the true links (into and out of the track included).
    """
    matching = detection.matching
    to_true = matching.predicted_to_true()
    scored_true = {p for one in matching.time_points.values() for p in one.true}
    scored_predicted = {p for one in matching.time_points.values() for p in one.predicted}
    true_links = {link for link in ground_truth.links() if link[0] in scored_true and link[1] in scored_true}
    predicted_links = [link for link in predicted.links()
                       if link[0] in scored_predicted and link[1] in scored_predicted]
    found = {(to_true.get(a), to_true.get(b)) for a, b in predicted_links} & true_links
    links = Counts(len(found), len(predicted_links) - len(found), len(true_links) - len(found))
    true_mothers = {m for m in ground_truth.divisions() if m in scored_true}
    predicted_mothers = [m for m in predicted.divisions() if m in scored_predicted]
    found_divisions = _matched_divisions(ground_truth, [to_true.get(m) for m in predicted_mothers], true_mothers,
                                         division_tolerance)
    divisions = Counts(found_divisions, len(predicted_mothers) - found_divisions, len(true_mothers) - found_divisions)
    tracks = [track for track in ground_truth.tracks() if all(p in scored_true for p in track)]
    from_true = {true: guess for guess, true in to_true.items()}
    without_error = sum(all(_same_links(ground_truth, predicted, p, from_true.get(p), to_true) for p in track)
                        for track in tracks)
    return TrackingScores(detection, links, divisions, len(tracks), without_error)


def _matched_divisions(ground_truth: Tracking, guesses: list[Position | None], true_mothers: set[Position],
                       tolerance: int) -> int:
    """How many true mothers the guessed ones (matched true positions) find, one each, closest first."""
    unmatched, found = set(true_mothers), 0
    remaining = [guess for guess in guesses if guess is not None]
    for steps in range(tolerance + 1):
        left = []
        for guess in remaining:
            hit = next((m for m in _same_cell(ground_truth, guess, steps) if m in unmatched), None)
            if hit is None:
                left.append(guess)
            else:
                unmatched.discard(hit)
                found += 1
        remaining = left
    return found


def _same_cell(tracking: Tracking, position: Position, steps: int) -> list[Position]:
    """The positions `steps` links before and after `position` along its cell (at most two)."""
    if steps == 0:
        return [position]
    found = []
    for neighbours in (tracking.future, tracking.past):
        current: Position | None = position
        for _ in range(steps):
            following = neighbours(current)
            current = following[0] if len(following) == 1 else None
            if current is None:
                break
        if current is not None:
            found.append(current)
    return found


def _same_links(ground_truth: Tracking, predicted: Tracking, true: Position, guess: Position | None,
                to_true: dict[Position, Position]) -> bool:
    if guess is None:
        return False
    linked = {to_true.get(p) for p in predicted.past(guess) + predicted.future(guess)}
    return linked == set(ground_truth.past(true) + ground_truth.future(true))


# Files, for the `evaluate` command
def evaluate_files(ground_truth_path: Path, predicted_path: Path, *, max_distance_um: float | None = None,
                   max_distance_px: float | None = None, voxel_size: VoxelSize | None = None,
                   time_range: str | None = None, restrict_to_annotated_box: bool = False,
                   traccuracy: bool = False) -> TrackingScores:
    """Loads both tracking files and scores detections, links and divisions (and with `traccuracy`, adds the
    scores of that package); `time_range` ("A:B", "A:", ":B" or "T") selects time points of the ground truth."""
    ground_truth = _load(ground_truth_path, voxel_size, "ground truth")
    predicted = _load(predicted_path, voxel_size, "predicted tracking")
    time_points = _selected_time_points(ground_truth, ground_truth_path, time_range)
    detection = score_detections(ground_truth, predicted, max_distance_um=max_distance_um,
                                 max_distance_px=max_distance_px, voxel_size=voxel_size, time_points=time_points,
                                 restrict_to_annotated_box=restrict_to_annotated_box)
    scores = score_tracking(ground_truth, predicted, detection)
    if traccuracy:
        from octrack.traccuracy_check import traccuracy_scores
        scores = dataclasses.replace(scores, traccuracy=traccuracy_scores(ground_truth, predicted, detection.matching))
    return scores


def _load(path: Path, voxel_size: VoxelSize | None, what: str) -> Tracking:
    from octrack.tracking.io import load_tracking
    if not path.exists():
        raise UserError(f"{what} {path} not found")
    return load_tracking(path, voxel_size)


def parse_time_range(text: str) -> tuple[int | None, int | None]:
    """"A:B" (both included), "A:", ":B" or one time point "T" as (first, last); None leaves an end open."""
    first, colon, last = text.strip().partition(":")
    try:
        bounds = (int(first) if first.strip() else None,
                  (int(last) if last.strip() else None) if colon else int(first))
    except ValueError:
        bounds = None
    if bounds is None or (bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]):
        raise UserError(f"--time-points {text!r}: expected A:B (A <= B, both included), A:, :B or one time "
                        f"point T")
    return bounds


def _selected_time_points(ground_truth: Tracking, path: Path, time_range: str | None) -> list[int]:
    available = ground_truth.time_points()
    if not available:
        raise UserError(f"ground truth {path} has no positions; there is nothing to score against")
    if time_range is None:
        return available
    first, last = parse_time_range(time_range)
    selected = [t for t in available if (first is None or t >= first) and (last is None or t <= last)]
    if not selected:
        raise UserError(f"--time-points {time_range}: the ground truth {path} has no positions there; it has "
                        f"time points {available[0]}-{available[-1]}")
    return selected


def format_report(scores: TrackingScores) -> str:
    """Overall scores (links, divisions and tracks where either tracking has links), then one table row per
    time point."""
    detection = scores.detection
    lines = [f"precision {detection.precision:.3f}   recall {detection.recall:.3f}   F1 {detection.f1:.3f}",
             f"TP {detection.true_positives}   FP {detection.false_positives}   FN {detection.false_negatives}   "
             f"(max distance {detection.max_distance:g} {detection.distance_unit}, "
             f"{len(detection.per_time_point)} time points)"]
    if detection.uncertain:
        lines.append(f"{detection.uncertain} uncertain annotations, counted neither way; "
                     f"{detection.at_uncertain} predictions matched them and are not counted")
    if scores.links.true_count or scores.links.predicted_count:
        lines += [_format_counts("links", scores.links),
                  _format_counts(f"divisions (±{DIVISION_TOLERANCE} time point)", scores.divisions),
                  f"tracks without error: {scores.tracks_without_error} of {scores.tracks} "
                  f"({scores.tracks_without_error_fraction:.3f})"]
    for metric, values in (scores.traccuracy or {}).items():
        lines.append(f"traccuracy {metric}: {_format_traccuracy(values)}")
    lines += ["", f"{'t':>6} {'true':>7} {'predicted':>10} {'TP':>7} {'FP':>7} {'FN':>7} {'F1':>6}"]
    for time_point, one in detection.per_time_point.items():
        lines.append(f"{time_point:>6} {one.true_count:>7} {one.predicted_count:>10} {one.true_positives:>7} "
                     f"{one.false_positives:>7} {one.false_negatives:>7} {one.f1:>6.3f}")
    return "\n".join(lines)


def _format_traccuracy(values: dict[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, dict):
            parts.append(f"{key}: ({_format_traccuracy(value)})")
        else:
            parts.append(f"{key}: {value:.4g}" if isinstance(value, (int, float)) else f"{key}: {value}")
    return ", ".join(parts)


def _format_counts(name: str, counts: Counts) -> str:
    return (f"{name}: precision {counts.precision:.3f}   recall {counts.recall:.3f}   F1 {counts.f1:.3f}   "
            f"(TP {counts.true_positives}   FP {counts.false_positives}   FN {counts.false_negatives})")


# Plot
def plot_time_point(scores: DetectionScores, target: Path, *, time_point: int | None = None,
                    images: str | os.PathLike | None = None, pattern: str | None = None) -> int:
    """Draws the matching of `time_point` (default: the first scored) to a PNG (or any format matplotlib
    writes, by the file's extension), over the maximum projection of that time point's image when `images`
    is given; returns the time point drawn."""
    time_point = _plotted_time_point(scores, time_point)
    background = None if images is None else _max_projection(Path(images), pattern, time_point)
    _draw(scores.per_time_point[time_point], background, target)
    return time_point


def _plotted_time_point(scores: DetectionScores, time_point: int | None) -> int:
    scored = list(scores.per_time_point)
    if not scored:
        raise UserError("no time points were scored, so there is nothing to plot")
    if time_point is None:
        return scored[0]
    if time_point not in scores.per_time_point:
        raise UserError(f"--plot-time-point {time_point} was not scored; scored time points: "
                        f"{scored[0]}-{scored[-1]}")
    return time_point


def _max_projection(images: Path, pattern: str | None, time_point: int) -> np.ndarray:
    """(y, x) maximum over z of one time point; a folder without `pattern` gets its pattern guessed."""
    from octrack.images import open_images
    from octrack.patterns import guess_pattern
    if pattern is None and images.is_dir():
        pattern = guess_pattern(images)[0]
    return open_images(images, pattern).read(time_point).max(axis=0)


def _draw(scores: DetectionScores, background: np.ndarray | None, target: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    image_format = target.suffix.lstrip(".").lower() or "png"
    (one,) = scores.matching.time_points.values()
    low, high = _extent(one, background)
    aspect = min(max((high[1] - low[1]) / max(high[0] - low[0], 1e-9), 0.25), 4.0)
    figure = Figure(figsize=(8, 8 * aspect))
    canvas = FigureCanvasAgg(figure)
    if image_format not in canvas.get_supported_filetypes():
        raise UserError(f"--plot {target}: cannot write .{image_format} files; use .png")
    axes = figure.add_subplot()
    if background is not None:
        axes.imshow(background, cmap="gray")
    pairs = [[(one.true[i].x, one.true[i].y), (one.predicted[j].x, one.predicted[j].y)] for i, j in one.pairs]
    axes.add_collection(LineCollection(pairs, colors="yellow", linewidths=0.8))
    matched_true = [one.true[i] for i, _ in one.pairs]
    matched_predicted = [one.predicted[j] for _, j in one.pairs]
    _scatter(axes, matched_true, "o", "limegreen", f"true, matched ({len(matched_true)})", hollow=True)
    _scatter(axes, one.unmatched_true(), "o", "orange", f"true, missed ({scores.false_negatives})", hollow=True)
    _scatter(axes, matched_predicted, "+", "deepskyblue", f"predicted, matched ({len(matched_predicted)})")
    _scatter(axes, one.unmatched_predicted(), "x", "red", f"predicted, false positive ({scores.false_positives})")
    axes.set_xlim(low[0], high[0])
    axes.set_ylim(high[1], low[1])  # image orientation: y down
    axes.set_aspect("equal")
    axes.set_title(f"t = {one.time_point}: precision {scores.precision:.3f}, recall {scores.recall:.3f}, "
                   f"F1 {scores.f1:.3f} (max distance {scores.max_distance:g} "
                   f"{'µm' if scores.distance_unit == UNIT_UM else 'px'})", fontsize=9)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.05), ncols=2, fontsize=8)  # off the positions
    with atomic_path(target) as temporary:
        figure.savefig(temporary, format=image_format, dpi=120, bbox_inches="tight")


def _extent(one: TimePointMatching, background: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) corners of the view: the image, or the positions with a margin."""
    if background is not None:
        return np.array([-0.5, -0.5]), np.array([background.shape[1] - 0.5, background.shape[0] - 0.5])
    xy = _coordinates(one.true + one.predicted, None)[:, :2]
    if len(xy) == 0:
        return np.zeros(2), np.ones(2)
    margin = max(float(np.ptp(xy, axis=0).max()) * 0.05, 5.0)
    return xy.min(axis=0) - margin, xy.max(axis=0) + margin


def _scatter(axes: Any, positions: list[Position], marker: str, colour: str, label: str, *,
             hollow: bool = False) -> None:
    xs, ys = [p.x for p in positions], [p.y for p in positions]
    if hollow:
        axes.scatter(xs, ys, marker=marker, s=60, facecolors="none", edgecolors=colour, linewidths=1.2,
                     label=label)
    else:
        axes.scatter(xs, ys, marker=marker, s=60, c=colour, linewidths=1.2, label=label)
