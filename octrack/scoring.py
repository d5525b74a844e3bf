"""Scores of predicted positions, links, divisions and tracks against ground truth, on one detection matching
(octrack/matching.py).

Matched predictions are true positives, unmatched predictions false positives and unmatched true positions
false negatives. Which predictions count: by default only those at the time points of the ground truth,
because users annotate some time points only; a prediction at a time point without any ground truth is not
counted. Uncertain annotations count neither way (see octrack/matching.py).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from octrack.errors import UserError
from octrack.matching import UNIT_PX, UNIT_UM, Matching, TimePointMatching, match_trackings
from octrack.tracking.model import Position, Tracking, VoxelSize

DEFAULT_MAX_DISTANCE_UM = 5.0
log = logging.getLogger(__name__)


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
                    f"--max-distance-px, or give --voxel-size Z Y X)")
        return DEFAULT_MAX_DISTANCE_UM, UNIT_PX
    if voxel_size is None:
        raise UserError("the voxel size is unknown, so a distance in µm cannot be measured: pass "
                        "--max-distance-px D, or a voxel size with --voxel-size Z Y X")
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
    segments) that came out without any error. Divisions are scored within `DIVISION_TOLERANCE` time points
    (`divisions`) and at the exact time point (`divisions_exact`)."""

    detection: DetectionScores
    links: Counts
    divisions: Counts
    tracks: int
    tracks_without_error: int
    divisions_exact: Counts | None = None
    skip_links: int = 0  # predicted links that skip time points (scored as traccuracy's relax_skips_pred)
    traccuracy: dict[str, Any] | None = None  # the package traccuracy's scores on the same matching, if asked
    error_calibration: ErrorCalibration | None = None  # where the predicted links carry marginal probabilities

    @property
    def tracks_without_error_fraction(self) -> float:
        return self.tracks_without_error / self.tracks if self.tracks else 1.0

    def to_json(self) -> dict[str, Any]:
        exact = self.divisions_exact or self.divisions
        return {**self.detection.to_json(), "link_f1": self.links.f1, "division_f1": self.divisions.f1,
                "division_f1_exact": exact.f1, "links": self.links._counts_json(),
                "divisions": self.divisions._counts_json(), "divisions_exact": exact._counts_json(),
                "division_tolerance": DIVISION_TOLERANCE, "skip_links": self.skip_links,
                "tracks": self.tracks, "tracks_without_error": self.tracks_without_error,
                "tracks_without_error_fraction": self.tracks_without_error_fraction,
                **({"traccuracy": self.traccuracy} if self.traccuracy is not None else {}),
                **({"error_calibration": self.error_calibration.to_json()} if self.error_calibration else {})}


def score_tracking(ground_truth: Tracking, predicted: Tracking, detection: DetectionScores, *,
                   division_tolerance: int = DIVISION_TOLERANCE) -> TrackingScores:
    """Links, divisions and tracks, on the matching of `detection`, at its time points (see `tracking_errors`);
    divisions also at the exact time point.

    A true track is without error when every position of it is matched, and the links of each match are exactly
    the matches of the true links (into and out of the track included).
    """
    errors = tracking_errors(ground_truth, predicted, detection, division_tolerance=division_tolerance)
    exact = errors if division_tolerance == 0 else tracking_errors(ground_truth, predicted, detection,
                                                                    division_tolerance=0)
    links = Counts(len(errors.found_links), len(errors.false_links), len(errors.missed_links))
    matching = detection.matching
    to_true = matching.predicted_to_true()
    scored_true = {p for one in matching.time_points.values() for p in one.true}
    tracks = [track for track in ground_truth.tracks() if all(p in scored_true for p in track)]
    from_true = {true: guess for guess, true in to_true.items()}
    without_error = sum(all(_same_links(ground_truth, predicted, p, from_true.get(p), to_true) for p in track)
                        for track in tracks)
    skips = sum(1 for a, b in predicted.links() if b.t - a.t > 1)
    return TrackingScores(detection, links, _division_counts(errors), len(tracks), without_error,
                          _division_counts(exact), skips,
                          error_calibration=error_calibration(predicted, errors))


def _division_counts(errors: TrackingErrors) -> Counts:
    return Counts(len(errors.found_divisions), len(errors.false_divisions), len(errors.missed_divisions))


@dataclass(frozen=True)
class TrackingErrors:
    """Which links and divisions were right, wrong or missed: what `score_tracking` counts and `evaluate --plot`
    draws. Predicted links and mothers are predicted positions; missed ones are true positions."""

    found_links: list[tuple[Position, Position]]  # predicted links whose matched ends are linked in the truth
    false_links: list[tuple[Position, Position]]
    missed_links: list[tuple[Position, Position]]  # true links no predicted link matches
    found_divisions: list[Position]  # predicted mothers that find a true one
    false_divisions: list[Position]
    missed_divisions: list[Position]  # true mothers no predicted one finds


def tracking_errors(ground_truth: Tracking, predicted: Tracking, detection: DetectionScores, *,
                    division_tolerance: int = DIVISION_TOLERANCE) -> TrackingErrors:
    """A predicted link is right when the true positions matched to its ends are linked. A link that skips time
    points is right, as traccuracy's `relax_skips_pred` has it, when its ends match a true position and one of
    its descendants whose true positions in between are matched to nothing; the true links it covers then
    count as found.

    A predicted division is right, as the Cell Tracking Challenge's BC(i) and traccuracy's division metrics
    have it, when its mother and both daughters are right: the mother's matched true position is a true mother,
    or lies on the same cell up to `division_tolerance` time points before or after one (the shift), and its two
    daughters reach the two true daughters, one each, within the same shift (`_daughters_agree`). Each true
    division is found at most once, the closest in time first. A true division with an uncertain daughter (a
    nucleus mostly outside the image, say) counts neither way, as uncertain annotations do: it is not missed,
    and a predicted division on its mother's cell within the shift is not false."""
    matching = detection.matching
    to_true = matching.predicted_to_true()
    scored_true = {p for one in matching.time_points.values() for p in one.true}
    scored_predicted = {p for one in matching.time_points.values() for p in one.predicted}
    true_links = {link for link in ground_truth.links() if link[0] in scored_true and link[1] in scored_true}
    predicted_links = [link for link in predicted.links()
                       if link[0] in scored_predicted and link[1] in scored_predicted]
    matched_true = set(to_true.values())
    covered = [_true_path(ground_truth, to_true.get(a), to_true.get(b), matched_true) for a, b in predicted_links]
    found = {link for path in covered for link in path}
    uncertain_divisions = {m for m in ground_truth.divisions()
                           if any(ground_truth.is_uncertain(daughter) for daughter in ground_truth.future(m))}
    true_mothers = {m for m in ground_truth.divisions() if m in scored_true} - uncertain_divisions
    predicted_mothers = [m for m in predicted.divisions() if m in scored_predicted
                         and not _finds_one_of(ground_truth, to_true.get(m), uncertain_divisions, division_tolerance)]
    hits = _matched_divisions(ground_truth, predicted, to_true, predicted_mothers, true_mothers, division_tolerance)
    return TrackingErrors(
        found_links=[link for link, path in zip(predicted_links, covered) if path],
        false_links=[link for link, path in zip(predicted_links, covered) if not path],
        missed_links=sorted(true_links - found), found_divisions=[m for m, hit in zip(predicted_mothers, hits) if hit],
        false_divisions=[m for m, hit in zip(predicted_mothers, hits) if hit is None],
        missed_divisions=sorted(true_mothers - {hit for hit in hits if hit is not None}))


def _finds_one_of(ground_truth: Tracking, true_position: Position | None, mothers: set[Position],
                  tolerance: int) -> bool:
    """Whether `true_position` lies on the cell of one of `mothers`, up to `tolerance` time points away."""
    return bool(mothers) and true_position is not None and \
        any(m in mothers for shift in range(tolerance + 1) for m in _same_cell(ground_truth, true_position, shift))


def _true_path(ground_truth: Tracking, source: Position | None, target: Position | None,
               matched_true: set[Position]) -> list[tuple[Position, Position]]:
    """The true links from `source` to `target` where these are linked directly, or along one branch with
    nothing matched in between (a predicted link that skips time points); else none."""
    if source is None or target is None or target.t <= source.t:
        return []
    if ground_truth.has_link(source, target):
        return [(source, target)]
    path, current = [], source
    while current.t < target.t:
        following = [p for p in ground_truth.future(current) if p.t <= target.t]
        step = next((p for p in following if p == target or _on_way(ground_truth, p, target)), None)
        if step is None or (step != target and step in matched_true):
            return []
        path.append((current, step))
        current = step
    return path if current == target else []


def _on_way(ground_truth: Tracking, position: Position, target: Position) -> bool:
    """Whether `target` descends from `position`."""
    current = [position]
    while current and current[0].t < target.t:
        current = [p for c in current for p in ground_truth.future(c) if p.t <= target.t]
        if target in current:
            return True
    return False


def _matched_divisions(ground_truth: Tracking, predicted: Tracking, to_true: dict[Position, Position],
                       predicted_mothers: list[Position], true_mothers: set[Position], tolerance: int
                       ) -> list[Position | None]:
    """Per predicted mother, the true mother it finds (None: none), one each, the closest in time first."""
    unmatched = set(true_mothers)
    hits: list[Position | None] = [None] * len(predicted_mothers)
    remaining = [index for index, mother in enumerate(predicted_mothers) if mother in to_true]
    for shift in range(tolerance + 1):
        left = []
        for index in remaining:
            mother = predicted_mothers[index]
            hit = next((m for m in _same_cell(ground_truth, to_true[mother], shift)
                        if m in unmatched and _daughters_agree(ground_truth, predicted, to_true, mother, m, shift)),
                       None)
            if hit is None:
                left.append(index)
            else:
                unmatched.discard(hit)
                hits[index] = hit
        remaining = left
    return hits


def _daughters_agree(ground_truth: Tracking, predicted: Tracking, to_true: dict[Position, Position],
                     mother: Position, true_mother: Position, shift: int) -> bool:
    """Whether the two predicted daughters of `mother` reach the two true daughters of `true_mother`, one each:
    a predicted daughter at t reaches a true daughter's branch when one of its branch's positions up to t + shift
    is matched to one of the true branch's positions up to that time."""
    true_daughters = ground_truth.future(true_mother)
    predicted_daughters = predicted.future(mother)
    if len(true_daughters) != 2 or len(predicted_daughters) != 2:
        return False
    reached = []
    for daughter in predicted_daughters:
        last = daughter.t + shift
        matched = {to_true[p] for p in _branch(predicted, daughter, last) if p in to_true}
        reached.append({i for i, true in enumerate(true_daughters) if matched & set(_branch(ground_truth, true, last))})
    return (0 in reached[0] and 1 in reached[1]) or (1 in reached[0] and 0 in reached[1])


def _branch(tracking: Tracking, start: Position, last_time: int) -> list[Position]:
    """The positions of the branch from `start` up to time point `last_time`, until it ends or divides."""
    branch, current = [], start
    while current.t <= last_time:
        branch.append(current)
        following = tracking.future(current)
        if len(following) != 1:
            break
        current = following[0]
    return branch


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


# The calibration of the tracker's error probabilities
MARGINAL_PROBABILITY = "marginal_probability"
ERROR_BIN_EDGES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)  # of the error probability 1 − marginal
REVIEW_THRESHOLDS = (0.5, 0.9, 0.95, 0.99, 0.999, 0.9999)  # links below a threshold are flagged for review


@dataclass(frozen=True)
class ErrorBin:
    """Links whose predicted error probability lies in [low, high): how many, predicted and observed error rate."""

    low: float
    high: float
    links: int
    predicted_error: float
    observed_error: float


@dataclass(frozen=True)
class ReviewPoint:
    """Flagging the links below `threshold`: the share of links flagged, the share of the wrong links among them
    (caught), and how often an unflagged link is wrong."""

    threshold: float
    flagged: float
    caught: float
    wrong_unflagged: float


@dataclass(frozen=True)
class ErrorCalibration:
    """How well the predicted links' `marginal_probability` foretells which are wrong: a reliability table and the
    review curve, over the scored links that carry one."""

    links: int
    wrong: int
    bins: list[ErrorBin]
    review_curve: list[ReviewPoint]

    def to_json(self) -> dict[str, Any]:
        return {"links": self.links, "wrong": self.wrong,
                "reliability": [vars(row) for row in self.bins],
                "review_curve": [vars(point) for point in self.review_curve]}


def error_calibration(predicted: Tracking, errors: TrackingErrors) -> ErrorCalibration | None:
    """None where no scored predicted link has a `marginal_probability`."""
    scored = [(link, True) for link in errors.found_links] + [(link, False) for link in errors.false_links]
    values = [(predicted.link_data(*link).get(MARGINAL_PROBABILITY), right) for link, right in scored]
    values = [(float(p), right) for p, right in values if p is not None]
    if not values:
        return None
    marginal = np.array([p for p, _ in values])
    wrong = ~np.array([right for _, right in values], dtype=bool)
    return ErrorCalibration(len(values), int(wrong.sum()), _error_bins(1 - marginal, wrong),
                            [_review_point(marginal, wrong, threshold) for threshold in REVIEW_THRESHOLDS])


def _error_bins(error: np.ndarray, wrong: np.ndarray) -> list[ErrorBin]:
    index = np.clip(np.searchsorted(ERROR_BIN_EDGES, error, side="right") - 1, 0, len(ERROR_BIN_EDGES) - 2)
    rows = []
    for number, (low, high) in enumerate(zip(ERROR_BIN_EDGES, ERROR_BIN_EDGES[1:])):
        inside = index == number
        count = int(inside.sum())
        rows.append(ErrorBin(low, high, count, float(error[inside].mean()) if count else float("nan"),
                             float(wrong[inside].mean()) if count else float("nan")))
    return rows


def _review_point(marginal: np.ndarray, wrong: np.ndarray, threshold: float) -> ReviewPoint:
    flagged = marginal < threshold
    return ReviewPoint(threshold, float(flagged.mean()),
                       float((flagged & wrong).sum() / wrong.sum()) if wrong.any() else 1.0,
                       float((~flagged & wrong).sum() / (~flagged).sum()) if (~flagged).any() else 0.0)


def format_error_calibration(calibration: ErrorCalibration) -> str:
    """The reliability table and the review curve as text."""
    lines = [f"error probabilities of {calibration.links} scored links ({calibration.wrong} wrong):",
             f"  {'error probability':>19} {'links':>7} {'predicted':>10} {'observed':>9}"]
    for row in calibration.bins:
        cells = (f"{row.predicted_error:>10.4f} {row.observed_error:>9.4f}" if row.links
                 else f"{'–':>10} {'–':>9}")
        lines.append(f"  {row.low:>8g} – {row.high:<8g} {row.links:>7} {cells}")
    lines.append(f"  {'flag below':>19} {'flagged':>9} {'errors caught':>14} {'wrong unflagged':>16}")
    for point in calibration.review_curve:
        lines.append(f"  {point.threshold:>19g} {point.flagged:>9.3f} {point.caught:>14.3f} "
                     f"{point.wrong_unflagged:>16.4f}")
    return "\n".join(lines)
