#!/usr/bin/env python3
"""The tracker on positions that carry the networks' probabilities, against ground truth: what each way of using
those probabilities gives.

Input: a tracking file as `octrack predict` writes it after its divisions and links steps (positions.aut:
`division_probability` per position, the candidate links with their `link_probability`), and the ground truth.
For each variant of the tracker's costs (`VARIANTS`), `octrack.linking.link_tracks` links the positions and the
result is scored as `octrack evaluate` scores it: link F1, division F1 within ±1 time point and at ±0, a division
counted only where its mother and both daughters match (the CTC's BC(i)).

The error calibration is cross-fitted: the scored time points are cut into two halves of their transitions (t → t+1),
the temperature is fitted (`octrack calibrate`'s fit) on each half and applied to the links of the other, and
the pooled links give the share flagged below 0.99, the share of link errors that flagging catches, and the
share of links at or above 0.99 that are wrong (issue 13's targets: >= 80% caught, <= 10% flagged, <= 1% wrong).

    python scripts/benchmark_network_tracking.py --positions PREDICTIONS/positions.aut \
        --ground-truth ../shared/data/breast-cancer-2d/01_GT/TRA --max-distance-px 8 --time-points 9:11 \
        --image-shape 1 724 1024 [--variants default,division-weight-2] [--reliability] [--error-kinds]

--error-kinds tells the wrong links whose end is a detection without annotation (a nucleus that the ground truth
leaves out, one cut by the image's edge, or a false detection: the link's marginal cannot see these) from the
linking mistakes between annotated nuclei, and what flagging catches of the latter; --fit-between-annotated fits
the temperature on those links only (where the ground truth leaves nuclei out).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from octrack.errors import UserError  # noqa: E402
from octrack.linking import DEFAULT_TEMPERATURE, MARGINAL_PROBABILITY, CostSettings, LinkingResult  # noqa: E402
from octrack.linking.costs import ADD  # noqa: E402
from octrack.tracking.model import TENTATIVE  # noqa: E402
from octrack.linking import link_tracks  # noqa: E402
from octrack.scoring import (DetectionScores, TrackingErrors, error_calibration,  # noqa: E402
                             format_error_calibration, score_detections,
                             score_tracking, tracking_errors)
from octrack.stages.calibrate import fitted_temperature, labelled_links  # noqa: E402
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking  # noqa: E402

THRESHOLD = 0.99
EDGE_PX = 10.0  # a nucleus centred this close to the image's side is cut by it (breast cancer: 15-25 px across)
DIVISION_PROBABILITY = "division_probability"
DETECTION_PEAK = "detection_peak"


@dataclass(frozen=True)
class Variant:
    settings: CostSettings = CostSettings()
    links: bool = True  # use the link probabilities (False: displacement only, the rule's candidates)
    divisions: bool = True  # use the division probabilities


VARIANTS: dict[str, Variant] = {
    "network-free": Variant(links=False, divisions=False),
    "replace": Variant(CostSettings(division_weight=1.0)),
    "replace-div2": Variant(CostSettings(division_weight=2.0)),  # the default since issue 13 (branch issue13e)
    "add": Variant(CostSettings(network_evidence=ADD, division_weight=1.0)),
    "add-div2": Variant(CostSettings(network_evidence=ADD, division_weight=2.0)),
    "add-div3": Variant(CostSettings(network_evidence=ADD, division_weight=3.0)),
    "replace-appear4": Variant(CostSettings(appear=4.0, disappear=4.0)),
    "replace-div2-appear4": Variant(CostSettings(appear=4.0, disappear=4.0, division_weight=2.0)),
    # with tentative detections (--tentative-below, or predict's tentative_peak_fraction): what leaving one out
    # costs (negative: what taking one costs)
    **{f"tentative{cost:+g}": Variant(CostSettings(tentative_leave_out=float(cost))) for cost in (0, -2, -4, -6, -8)},
    "add-links-only": Variant(CostSettings(network_evidence=ADD, division_weight=1.0), divisions=False),
    "add-divisions-only": Variant(CostSettings(network_evidence=ADD, division_weight=1.0), links=False),
}


def without(tracking: Tracking, links: bool, divisions: bool) -> Tracking:
    """The tracking without its link probabilities (and candidate links) or division probabilities, as asked."""
    kept = tracking.empty_copy()
    for position in tracking.positions():
        data = {key: value for key, value in tracking.position_data(position).items()
                if divisions or not key.startswith("division_")}
        kept.add_position(position, **data)
    if links:
        for a, b in tracking.links():
            kept.add_link(a, b, **tracking.link_data(a, b))
    return kept


def with_peak_at_least(tracking: Tracking, min_peak: float) -> Tracking:
    """The positions whose `detection_peak` reaches `min_peak` (positions without one are kept) and the links
    between them: the detection threshold raised after the fact, leaving out weak detections outright."""
    kept = tracking.empty_copy()
    for position in tracking.positions():
        data = tracking.position_data(position)
        if data.get(DETECTION_PEAK, min_peak) >= min_peak:
            kept.add_position(position, **data)
    for a, b in tracking.links():
        if a in kept and b in kept:
            kept.add_link(a, b, **tracking.link_data(a, b))
    return kept


def with_tentative_below(tracking: Tracking, peak: float) -> Tracking:
    """The tracking with the positions whose `detection_peak` is below `peak` marked `detection_tentative`: the
    detection threshold at `peak`, the weaker peaks (decoded down to predict's lower threshold) left to the tracker
    to take where their links pay for them."""
    marked = tracking.empty_copy()
    for position in tracking.positions():
        data = dict(tracking.position_data(position))
        if data.get(DETECTION_PEAK, peak) < peak:
            data[TENTATIVE] = True
        marked.add_position(position, **data)
    for a, b in tracking.links():
        marked.add_link(a, b, **tracking.link_data(a, b))
    return marked


def link(positions: Tracking, settings: CostSettings, image_shape_zyx: tuple[int, int, int] | None,
         temperature: float = DEFAULT_TEMPERATURE) -> LinkingResult:
    return link_tracks(positions, settings=settings, image_shape_zyx=image_shape_zyx, temperature=temperature)


def halves(time_points: list[int]) -> tuple[list[int], list[int]]:
    """The scored time points cut into two halves of their transitions, sharing the time point between."""
    middle = len(time_points) // 2
    return time_points[:middle + 1], time_points[middle:]


def cross_fitted(result: LinkingResult, truth: Tracking, time_points: list[int], distance: dict[str, float],
                 annotated_only: bool = False) -> tuple[Tracking, tuple[float, float]]:
    """The result's tracking with each link's marginal probability at the temperature fitted on the other half
    of the time points (the link's half: that of its source), and the two temperatures; fitted on the links
    between annotated nuclei only where `annotated_only`."""
    first, second = halves(time_points)
    temperatures = []
    for fit_on in (second, first):
        try:
            labelled = labelled_links(result, truth, fit_on, between_annotated=annotated_only, **distance)
            temperatures.append(fitted_temperature(result, labelled))
        except UserError:
            temperatures.append(DEFAULT_TEMPERATURE)
    tracking = result.tracking  # (changed in place: scored already)
    links = result.problem.chosen_links()
    at_first, at_second = (result.problem.chosen_link_probabilities(t) for t in temperatures)
    for (a, b), p_first, p_second in zip(links, at_first, at_second):
        probability = p_first if a.t < second[0] else p_second
        tracking.link_data(a, b)[MARGINAL_PROBABILITY] = float(probability)
    return tracking, (temperatures[0], temperatures[1])


def within(tracking: Tracking, time_points: list[int]) -> Tracking:
    """The positions at `time_points` with their data, and the links between them that carry a link probability
    (the candidates of a link network; a ground truth's links are left out)."""
    kept = tracking.empty_copy()
    for time_point in time_points:
        for position in tracking.positions_at(time_point):
            kept.add_position(position, **tracking.position_data(position))
    for a, b in tracking.links():
        data = tracking.link_data(a, b)
        if a.t in time_points and b.t in time_points and "link_probability" in data:
            kept.add_link(a, b, **data)
    return kept


def division_report(positions: Tracking, truth: Tracking, time_points: list[int], distance: dict[str, float]
                    ) -> str:
    """Per true division whose daughters lie in `time_points`: whether its mother and daughters are among the
    positions (matched as scoring matches), and the division probability of the matched mother; then the
    division probabilities of the positions that match no true mother."""
    to_true = score_detections(truth, positions, time_points=time_points, **distance).matching.predicted_to_true()
    to_predicted = {true: predicted for predicted, true in to_true.items()}
    mothers = sorted((m for m in truth.divisions() if m.t + 1 in time_points and m.t in time_points),
                     key=lambda m: (m.t, m.y, m.x))
    lines, complete = [], 0
    for mother in mothers:
        found = mother in to_predicted
        daughters = [daughter in to_predicted for daughter in truth.future(mother)]
        complete += found and all(daughters)
        probability = positions.position_data(to_predicted[mother]).get(DIVISION_PROBABILITY) if found else None
        lines.append(f"  t {mother.t}: mother {'found' if found else 'missed'}, daughters found {sum(daughters)} of "
                     f"{len(daughters)}, division probability "
                     f"{'–' if probability is None else f'{probability:.3f}'}")
    true_mothers = {to_predicted[m] for m in mothers if m in to_predicted}
    others = np.array([positions.position_data(p).get(DIVISION_PROBABILITY, np.nan) for p in positions.positions()
                       if p not in true_mothers and p.t + 1 in time_points])
    lines.append(f"{complete} of {len(mothers)} true divisions with mother and both daughters among the positions; "
                 f"other positions (before the last time point) at division probability >= 0.5: "
                 f"{int(np.sum(others >= 0.5))} of {len(others)}")
    return "\n".join(lines)


def edge_distance_px(position: Position, image_shape_zyx: tuple[int, int, int]) -> float:
    """Pixels from the position to the nearest side of the image in y and x (a stack's top and bottom left out:
    in a thin stack every nucleus is near them)."""
    return min(position.y, image_shape_zyx[1] - 1 - position.y, position.x, image_shape_zyx[2] - 1 - position.x)


def error_kinds(tracking: Tracking, errors: TrackingErrors, detection: DetectionScores,
                image_shape_zyx: tuple[int, int, int] | None, edge_px: float = EDGE_PX) -> str:
    """The wrong links by kind: with an end at a detection that matches no annotation (near the image's edge or
    not), or between two annotated nuclei; and what flagging below 0.99 catches of the latter, the mistakes that
    the tracker's marginals can see."""
    matched = detection.matching.predicted_to_true()
    scored = [(link, False) for link in errors.found_links] + [(link, True) for link in errors.false_links]
    marginal = np.array([tracking.link_data(*link).get(MARGINAL_PROBABILITY, 1.0) for link, _ in scored])
    wrong = np.array([is_wrong for _, is_wrong in scored], dtype=bool)
    unmatched_end = np.array([a not in matched or b not in matched for (a, b), _ in scored], dtype=bool)
    near_edge = np.array([image_shape_zyx is not None and min(edge_distance_px(a, image_shape_zyx),
                                                                edge_distance_px(b, image_shape_zyx)) < edge_px
                          for (a, b), _ in scored], dtype=bool)
    annotated = ~unmatched_end
    flagged = marginal < THRESHOLD
    mistakes = int(np.sum(wrong & annotated))
    caught = int(np.sum(flagged & wrong & annotated))
    flagged_share = float(np.mean(flagged[annotated])) if annotated.any() else 0.0
    without_annotation = int(np.sum(wrong & unmatched_end))
    at_edge = int(np.sum(wrong & unmatched_end & near_edge))
    share = caught / max(1, mistakes)
    return (f"    wrong links {int(wrong.sum())} of {len(scored)}: {without_annotation} with an end at a detection "
            f"that matches no annotation ({at_edge} of them within {edge_px:g} px of the image's sides in y or x), "
            f"{mistakes} between annotated nuclei; of these, flagging below {THRESHOLD} catches {caught} "
            f"({share:.2f}) flagging {flagged_share:.3f} of the links between annotated nuclei")


def run_variant(name: str, variant: Variant, positions: Tracking, truth: Tracking, time_points: list[int],
                distance: dict[str, float], image_shape_zyx: tuple[int, int, int] | None, reliability: bool,
                kinds: bool = False, fit_between_annotated: bool = False) -> dict:
    started = time.perf_counter()
    result = link(without(positions, variant.links, variant.divisions), variant.settings, image_shape_zyx)
    detection = score_detections(truth, result.tracking, time_points=time_points, **distance)
    scores = score_tracking(truth, result.tracking, detection)
    calibrated, temperatures = cross_fitted(result, truth, time_points, distance, fit_between_annotated)
    errors = tracking_errors(truth, calibrated, detection)
    calibration = error_calibration(calibrated, errors)
    at = next(point for point in calibration.review_curve if point.threshold == THRESHOLD)
    divisions, exact, links = scores.divisions, scores.divisions_exact, scores.links
    row = {"variant": name, "divisions_made": divisions.predicted_count, "division_f1": divisions.f1,
           "division_f1_exact": exact.f1, "division_tp_fp_fn": (divisions.true_positives, divisions.false_positives,
                                                                divisions.false_negatives),
           "link_f1": links.f1, "link_fp_fn": (links.false_positives, links.false_negatives),
           "left_out": result.left_out, "temperatures": temperatures, "flagged": at.flagged, "caught": at.caught,
           "wrong_above": at.wrong_unflagged, "wrong_links": calibration.wrong, "scored_links": calibration.links,
           "seconds": time.perf_counter() - started}
    print(f"{name:<28} divisions {row['divisions_made']:>3}  div F1 ±1 {divisions.f1:.3f} "
          f"(TP {divisions.true_positives} "
          f"FP {divisions.false_positives} FN {divisions.false_negatives}) ±0 {exact.f1:.3f}  link F1 {links.f1:.4f} "
          f"(FP {links.false_positives} FN {links.false_negatives})  left out {result.left_out}  T "
          f"{temperatures[0]:.2f}/{temperatures[1]:.2f}  flagged {at.flagged:.3f} caught {at.caught:.3f} "
          f"(of {calibration.wrong} wrong) wrong>=0.99 {at.wrong_unflagged:.4f}  {row['seconds']:.0f} s", flush=True)
    if reliability:
        print(format_error_calibration(calibration))
    if kinds:
        print(error_kinds(calibrated, errors, detection, image_shape_zyx))
    return row


def main(variants: dict[str, Variant] = VARIANTS,
         prepare: Callable[[Tracking], Tracking] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=Path, required=True)
    parser.add_argument("--ground-truth", type=Path, required=True)
    parser.add_argument("--time-points", required=True, help="A:B, the scored time points")
    parser.add_argument("--max-distance-px", type=float)
    parser.add_argument("--max-distance-um", type=float)
    parser.add_argument("--voxel-size", type=float, nargs=3, metavar=("Z", "Y", "X"))
    parser.add_argument("--image-shape", type=int, nargs=3, metavar=("Z", "Y", "X"))
    parser.add_argument("--variants", help="comma-separated names (default: all): " + ", ".join(variants))
    parser.add_argument("--reliability", action="store_true", help="print each variant's reliability table")
    parser.add_argument("--division-report", action="store_true",
                        help="print, per true division, whether its mother and daughters are among the positions "
                             "and the mother's division probability")
    parser.add_argument("--error-kinds", action="store_true",
                        help="print each variant's wrong links by kind (an end at a detection that matches no "
                             "annotation, near the image's edge or not; between annotated nuclei) and what flagging "
                             "catches of the latter")
    parser.add_argument("--fit-between-annotated", action="store_true",
                        help="fit the temperature on the links whose two ends match an annotation (not on all "
                             "scored links): the linking mistakes, where the ground truth leaves nuclei out")
    parser.add_argument("--min-detection-peak", type=float,
                        help="leave out the positions whose detection_peak is below this before tracking")
    parser.add_argument("--tentative-below", type=float,
                        help="mark the positions whose detection_peak is below this detection_tentative: optional "
                             "for the tracker (the positions file decoded at a lower peak threshold)")
    arguments = parser.parse_args()
    voxel = VoxelSize(arguments.voxel_size[2], arguments.voxel_size[1], arguments.voxel_size[0]) \
        if arguments.voxel_size else None
    truth = load_tracking(arguments.ground_truth, voxel)
    positions = load_tracking(arguments.positions, voxel or truth.voxel_size)
    first, last = (int(value) for value in arguments.time_points.split(":"))
    time_points = [t for t in truth.time_points() if first <= t <= last]
    positions = within(positions, time_points)
    if prepare:
        positions = prepare(positions)
    if arguments.min_detection_peak is not None:
        positions = with_peak_at_least(positions, arguments.min_detection_peak)
    if arguments.tentative_below is not None:
        positions = with_tentative_below(positions, arguments.tentative_below)
    distance = {"max_distance_px": arguments.max_distance_px} if arguments.max_distance_px else \
        {"max_distance_um": arguments.max_distance_um}
    if arguments.division_report:
        print(division_report(positions, truth, time_points, distance))
    names = arguments.variants.split(",") if arguments.variants else list(variants)
    shape = tuple(arguments.image_shape) if arguments.image_shape else None
    return [run_variant(name, variants[name], positions, truth, time_points, distance, shape, arguments.reliability,
                        arguments.error_kinds, arguments.fit_between_annotated)
            for name in names]


if __name__ == "__main__":
    main()
