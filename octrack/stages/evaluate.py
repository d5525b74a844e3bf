"""`octrack evaluate`: scores a predicted tracking file against a ground-truth file and reports the scores."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octrack.errors import UserError
from octrack.scoring import (DIVISION_TOLERANCE, Counts, TrackingScores, format_error_calibration,
                             score_detections, score_tracking, tracking_errors)
from octrack.stages.common import ground_truth_time_points
from octrack.tracking import VoxelSize, load_tracking
from octrack.tracking.checks import check_lineage
from octrack.tracking.model import Tracking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlotRequest:
    """--plot: the picture of one time point's matching (over the images' maximum projection, if given)."""

    target: Path
    time_point: int | None
    images: str | None
    pattern: str | None


def evaluate_command(ground_truth_path: Path, predicted_path: Path, *, plot: PlotRequest | None = None,
                     as_json: bool = False, **options: Any) -> str:
    """`octrack evaluate`: the scores of `evaluate_files` (given `options`) as text or JSON; draws `plot`."""
    scores, ground_truth, predicted = _evaluate(ground_truth_path, predicted_path, **options)
    if plot is not None:
        from octrack.plots import plot_time_point

        errors = tracking_errors(ground_truth, predicted, scores.detection)
        time_point = plot_time_point(scores.detection, plot.target, time_point=plot.time_point, images=plot.images,
                                     pattern=plot.pattern, errors=errors)
        log.info(f"wrote {plot.target} (time point {time_point})")
    return json.dumps(scores.to_json(), indent=2) if as_json else format_report(scores)


def evaluate_files(ground_truth_path: Path, predicted_path: Path, **options: Any) -> TrackingScores:
    """Loads both tracking files and scores detections, links and divisions (and with `traccuracy`, adds the
    scores of that package); `time_range` ("A:B", "A:", ":B" or "T") selects time points of the ground truth."""
    return _evaluate(ground_truth_path, predicted_path, **options)[0]


def _evaluate(ground_truth_path: Path, predicted_path: Path, *, max_distance_um: float | None = None,
              max_distance_px: float | None = None, voxel_size: VoxelSize | None = None, time_range: str | None = None,
              restrict_to_annotated_box: bool = False, traccuracy: bool = False
              ) -> tuple[TrackingScores, Tracking, Tracking]:
    ground_truth = _load(ground_truth_path, voxel_size, "ground truth")
    predicted = _in_pixels_of(_load(predicted_path, voxel_size, "predicted tracking"), ground_truth.voxel_size,
                              predicted_path)
    time_points = ground_truth_time_points(ground_truth, ground_truth_path, time_range, "score against")
    detection = score_detections(ground_truth, predicted, max_distance_um=max_distance_um,
                                 max_distance_px=max_distance_px, voxel_size=voxel_size, time_points=time_points,
                                 restrict_to_annotated_box=restrict_to_annotated_box)
    scores = score_tracking(ground_truth, predicted, detection)
    if traccuracy:
        from octrack.traccuracy_check import traccuracy_scores
        scores = dataclasses.replace(scores, traccuracy=traccuracy_scores(ground_truth, predicted, detection.matching))
    return scores, ground_truth, predicted


def _load(path: Path, voxel_size: VoxelSize | None, what: str) -> Tracking:
    if not path.exists():
        raise UserError(f"{what} {path} not found")
    tracking = load_tracking(path, voxel_size)
    check_lineage(tracking, f"{what} {path}")
    return tracking


def _in_pixels_of(predicted: Tracking, voxel_size: VoxelSize | None, path: Path) -> Tracking:
    """The prediction in the pixels of the ground truth's voxel size where both files give one and they differ
    (positions are compared in the ground truth's pixels), with a note; else as it is."""
    own = predicted.voxel_size
    if voxel_size is None or own is None:
        return predicted
    scale = [_ratio(mine, theirs) for mine, theirs in zip((own.x_um, own.y_um, own.z_um),
                                                          (voxel_size.x_um, voxel_size.y_um, voxel_size.z_um))]
    if scale == [1.0, 1.0, 1.0]:
        return predicted
    log.warning(f"{path}: its voxel size (z, y, x = {own.z_um:g}, {own.y_um:g}, {own.x_um:g} µm) differs from the "
                f"ground truth's ({voxel_size.z_um:g}, {voxel_size.y_um:g}, {voxel_size.x_um:g} µm); its positions "
                f"are converted to the ground truth's pixels")
    converted = predicted.empty_copy()
    converted.voxel_size = dataclasses.replace(voxel_size, t_minutes=own.t_minutes)
    converted.image_offsets = {t: (x * scale[0], y * scale[1], z * scale[2])
                               for t, (x, y, z) in predicted.image_offsets.items()}
    moved = {position: converted.add_position(
        position._replace(x=position.x * scale[0], y=position.y * scale[1], z=position.z * scale[2]),
        **predicted.position_data(position)) for position in predicted.positions()}
    for earlier, later in predicted.links():
        converted.add_link(moved[earlier], moved[later], **predicted.link_data(earlier, later))
    return converted


def _ratio(size: float, target: float) -> float:
    """Pixels of `target` per pixel of `size`; 1 where either is 0 (a 2D file's z)."""
    return size / target if size and target else 1.0


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
        lines += [_format_counts("links", scores.links), *_skip_lines(scores),
                  _format_counts(f"divisions (±{DIVISION_TOLERANCE} time point)", scores.divisions),
                  _format_counts("divisions (±0 time points)", scores.divisions_exact or scores.divisions),
                  "  (a division counts when its mother and both daughters match, as in traccuracy and the "
                  "CTC's BC(i))",
                  f"tracks without error: {scores.tracks_without_error} of {scores.tracks} "
                  f"({scores.tracks_without_error_fraction:.3f})"]
    if scores.error_calibration is not None:
        lines.append(format_error_calibration(scores.error_calibration))
    for metric, values in (scores.traccuracy or {}).items():
        lines.append(f"traccuracy {metric}: {_format_traccuracy(values)}")
    lines += ["", f"{'t':>6} {'true':>7} {'predicted':>10} {'TP':>7} {'FP':>7} {'FN':>7} {'F1':>6}"]
    for time_point, one in detection.per_time_point.items():
        lines.append(f"{time_point:>6} {one.true_count:>7} {one.predicted_count:>10} {one.true_positives:>7} "
                     f"{one.false_positives:>7} {one.false_negatives:>7} {one.f1:>6.3f}")
    return "\n".join(lines)


def _skip_lines(scores: TrackingScores) -> list[str]:
    if not scores.skip_links:
        return []
    return [f"  ({scores.skip_links} predicted links skip time points; scored as traccuracy's relax_skips_pred: "
            f"right when the true cell passes only unmatched positions in between)"]


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
