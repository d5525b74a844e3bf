"""`octrack calibrate`: fits the temperature of the tracker's marginal probabilities on time points with ground
truth, so that a link of marginal probability p is wrong about 1 − p of the time.

The tracker links the positions of a file (with the link and division probabilities it holds, as `octrack
predict` would), its chosen links are matched to the ground truth (octrack/scoring.py: right where the matched
true positions are linked), and the temperature is the one under which the chosen links' marginal probabilities
best explain which are right and which wrong (maximum likelihood, octrack/calibration.py `fit_temperature`).
The result goes where predict reads it (`tracker_calibration_folder`): beside the link model where the
positions carry link probabilities, else into the ini's output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from octrack.calibration import TrackerCalibration, fit_temperature, save_tracker_calibration
from octrack.errors import UserError
from octrack.linking import LinkingResult, has_link_probabilities, link_tracks
from octrack.scoring import score_detections, tracking_errors
from octrack.stages.common import ImageGeometry, ground_truth_time_points
from octrack.tracking import Tracking, VoxelSize, load_tracking


@dataclass(frozen=True)
class LabelledLinks:
    """The chosen links that the ground truth scores: which of the tracker's chosen links, and which are right."""

    scored: np.ndarray  # (chosen links,) bool
    correct: np.ndarray  # (scored links,) bool

    def probabilities(self, result: LinkingResult, temperature: float) -> np.ndarray:
        return result.problem.chosen_link_probabilities(temperature)[self.scored]


def labelled_links(result: LinkingResult, ground_truth: Tracking, time_points: list[int], *,
                   max_distance_um: float | None = None, max_distance_px: float | None = None,
                   between_annotated: bool = False) -> LabelledLinks:
    """Which chosen links of `result` lie in `time_points` (both ends matched or not, as scoring counts them;
    only those whose two ends match an annotation where `between_annotated`: the mistakes of linking, without
    the links of detections that the ground truth leaves out) and which of those are right."""
    detection = score_detections(ground_truth, result.tracking, max_distance_um=max_distance_um,
                                 max_distance_px=max_distance_px, time_points=time_points)
    errors = tracking_errors(ground_truth, result.tracking, detection)
    found, false = set(errors.found_links), set(errors.false_links)
    if between_annotated:
        matched = detection.matching.predicted_to_true()
        false = {(a, b) for a, b in false if a in matched and b in matched}
    chosen = result.problem.chosen_links()
    scored = np.array([link in found or link in false for link in chosen], dtype=bool)
    correct = np.array([link in found for link, counted in zip(chosen, scored) if counted], dtype=bool)
    return LabelledLinks(scored, correct)


def fitted_temperature(result: LinkingResult, links: LabelledLinks) -> float:
    temperature = fit_temperature(lambda t: links.probabilities(result, t), links.correct)
    if temperature is None:
        what = "right" if links.correct.all() else "wrong"
        raise UserError(f"all {len(links.correct)} scored links are {what}, so no temperature fits; calibrate on "
                        f"time points where the tracker makes some mistakes and gets most links right")
    return temperature


def calibrate(ground_truth_path: Path, positions_path: Path, output_folder: Path, *,
              time_range: str | None = None, voxel_size: VoxelSize | None = None,
              geometry: ImageGeometry | None = None, max_distance_um: float | None = None,
              max_distance_px: float | None = None) -> str:
    """Fits the temperature on the ground truth's time points (or `time_range` of them) and writes it into
    `output_folder`; returns a summary."""
    ground_truth = load_tracking(ground_truth_path, voxel_size)
    positions = load_tracking(positions_path, voxel_size or ground_truth.voxel_size)
    time_points = ground_truth_time_points(ground_truth, ground_truth_path, time_range, "calibrate on")
    result = link_tracks(positions, image_shape_zyx=geometry.shape_zyx if geometry else None)
    links = labelled_links(result, ground_truth, time_points, max_distance_um=max_distance_um,
                           max_distance_px=max_distance_px)
    temperature = fitted_temperature(result, links)
    calibration = TrackerCalibration(round(temperature, 4), len(links.correct), int((~links.correct).sum()),
                                     result.costs_from)
    path = save_tracker_calibration(output_folder, calibration)
    probabilities = links.probabilities(result, temperature)
    trusted = probabilities >= 0.99
    return (f"temperature {temperature:.3f}, fitted on {len(links.correct)} links ({calibration.wrong_links} wrong) "
            f"at {len(time_points)} time points; at it, {int((~trusted).sum())} links fall below 0.99, and "
            f"{int((trusted & ~links.correct).sum())} of the {int(trusted.sum())} above are wrong → {path}")


def calibration_folder_of_ini(config_path: Path, positions_path: Path) -> Path:
    """Where predict will read the calibration: beside the link model for costs from link probabilities, else
    the output folder (see `octrack.stages.predict.tracker_calibration_folder`)."""
    from octrack.config import Config
    from octrack.networks import NETWORKS
    from octrack.stages.predict import POSITIONS, TRACKS, read_section, tracker_calibration_folder

    if not config_path.exists():
        raise UserError(f"{config_path}: not found; give the ini whose predictions use the calibration (-c), or "
                        f"--output FOLDER")
    with_links = has_link_probabilities(load_tracking(positions_path))
    steps = [POSITIONS, *([NETWORKS["link"].STEP] if with_links else []), TRACKS]
    return tracker_calibration_folder(read_section(Config(config_path)), steps)
