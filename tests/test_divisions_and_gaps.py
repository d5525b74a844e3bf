"""Divisions scored as the official measures score them (mother and both daughters), links that skip a time point
(gap closing): scored as traccuracy's relax_skips_pred, chosen by the tracker, and kept by every writer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from octrack.cli import main
from octrack.linking import link_tracks
from octrack.linking.costs import CostSettings
from octrack.linking.graph import drift
from octrack.scoring import score_detections, score_tracking
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking
from octrack.tracking.model import coordinates_um, from_positions


def _dividing() -> Tracking:
    """A mother (t 0-3) dividing into two daughters (t 4-6), and a walker beside them (t 0-6)."""
    mother = [Position(20 + t, 20, 4, t) for t in range(4)]
    daughters = [[Position(23 + s * (2 + t), 20 + s * (2 + t), 4, 4 + t) for t in range(3)] for s in (1, -1)]
    walker = [Position(40, 40 + t, 6, t) for t in range(7)]
    tracking = from_positions(mother + daughters[0] + daughters[1] + walker)
    for track in (mother + [daughters[0][0]], mother[-1:] + daughters[1], daughters[0], walker):
        for a, b in zip(track, track[1:]):
            tracking.add_link(a, b)
    return tracking


def _scores(truth: Tracking, predicted: Tracking):  # noqa: ANN202
    return score_tracking(truth, predicted, score_detections(truth, predicted, max_distance_px=1))


def test_a_division_with_a_wrong_daughter_is_not_found() -> None:
    truth = _dividing()
    predicted = _dividing()
    mother, daughter = Position(23, 20, 4, 3), Position(21, 18, 4, 4)
    stray = predicted.add_position(Position(30, 30, 4, 4))  # a false position next to the track
    predicted.remove_link(mother, daughter)
    predicted.add_link(mother, stray)
    scores = _scores(truth, predicted)
    assert (scores.divisions.true_positives, scores.divisions.false_positives,
            scores.divisions.false_negatives) == (0, 1, 1)
    assert _scores(truth, _dividing()).divisions.f1 == _scores(truth, _dividing()).divisions_exact.f1 == 1.0


def test_a_division_with_an_uncertain_daughter_counts_neither_way() -> None:
    """A daughter mostly outside the image (an uncertain annotation) cannot be matched: the division is then
    neither missed when the prediction has no division there, nor false when it has one (the mother's cell)."""
    truth = _dividing()
    truth.set_position_data(Position(21, 18, 4, 4), "uncertain", True)
    without = _dividing()
    without.remove_link(Position(23, 20, 4, 3), Position(21, 18, 4, 4))
    missed = _scores(truth, without).divisions
    assert (missed.true_count, missed.predicted_count) == (0, 0)
    found = _scores(truth, _dividing()).divisions
    assert (found.true_count, found.predicted_count) == (0, 0)
    certain = _scores(_dividing(), without).divisions
    assert (certain.true_positives, certain.false_negatives) == (0, 1)  # the same prediction, the daughter certain


def test_a_division_one_time_point_late_counts_at_one_not_at_zero() -> None:
    truth = _dividing()
    predicted = _dividing()
    mother, first, second = Position(23, 20, 4, 3), Position(25, 22, 4, 4), Position(21, 18, 4, 4)
    predicted.remove_link(mother, second)  # the first daughter divides instead, into the second's successor
    predicted.remove_link(second, Position(20, 17, 4, 5))
    predicted.add_link(first, Position(20, 17, 4, 5))
    scores = _scores(truth, predicted)
    assert scores.divisions.f1 == 1.0 and scores.divisions_exact.f1 == 0.0


def test_a_link_over_a_missed_position_is_right_as_traccuracy_relaxes_skips() -> None:
    truth = _dividing()
    predicted = _dividing()
    before, missed, after = Position(40, 42, 6, 2), Position(40, 43, 6, 3), Position(40, 44, 6, 4)
    predicted.remove_position(missed)
    predicted.add_link(before, after)
    scores = _scores(truth, predicted)
    assert scores.skip_links == 1
    assert (scores.links.false_positives, scores.links.false_negatives) == (0, 0)
    wrong = _dividing()
    wrong.remove_position(missed)
    wrong.add_link(before, Position(25, 22, 4, 4))  # across the gap, onto another cell
    wrong_scores = _scores(truth, wrong)
    assert wrong_scores.links.false_positives == 1 and wrong_scores.links.false_negatives == 2


def test_a_skip_over_a_matched_position_is_wrong() -> None:
    truth = _dividing()
    predicted = _dividing()
    before, after = Position(40, 42, 6, 2), Position(40, 44, 6, 4)
    predicted.remove_link(before, Position(40, 43, 6, 3))
    predicted.add_link(before, after)  # the position between is there, and matched
    assert _scores(truth, predicted).links.false_positives == 1


def _walk(start: tuple[float, float], first: int, last: int) -> list[Position]:
    return [Position(start[0] + 0.5 * i, start[1] + 0.3 * i, 5, first + i) for i in range(last - first + 1)]


def test_a_false_position_next_to_a_track_is_left_out_not_made_a_daughter() -> None:
    track = _walk((20, 20), 0, 8)
    others = [[Position(40 - 0.4 * t, 40 + 0.6 * t, 5, t) for t in range(9)],
              [Position(10, 40 - 0.5 * t, 5, t) for t in range(9)]]  # moving otherwise: not all is drift
    false = Position(21, 21.2, 5, 4)  # 1 px beside the track's position at t = 4 (22, 21.2)
    positions = from_positions(track + others[0] + others[1] + [false], VoxelSize(1, 1, 1))
    result = link_tracks(positions)
    assert not result.tracking.divisions() and false not in result.tracking
    kept = link_tracks(positions, settings=CostSettings(leave_out=None))
    assert kept.tracking.divisions()  # without the cost of leaving out, it was taken for a daughter


@pytest.mark.parametrize("name", ["tracks.aut", "tracks.csv", "tracks.geff", "ctc"])
def test_gap_links_of_the_tracker_round_trip_through_every_writer(tmp_path: Path, name: str) -> None:
    track = [Position(20 + t, 20, 5, t) for t in range(7)]  # whole pixels, as CTC labels give them back
    other = [Position(40, 40 + t, 5, t) for t in range(7)]
    missed = track[3]
    tracks = link_tracks(from_positions([p for p in track + other if p != missed], VoxelSize(1, 1, 1))).tracking
    assert tracks.has_link(track[2], track[4])  # the tracker bridged the missed detection
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # .aut: OrganoidTracker cannot show links that skip time points
        save_tracking(tracks, tmp_path / name, image_shape_zyx=(10, 64, 64), radius_px=2)
    again = load_tracking(tmp_path / name)
    assert set(again.links()) == set(tracks.links())
    if name == "ctc":  # the part after the gap is a track of its own, with the part before as its parent
        rows = [line.split() for line in (tmp_path / name / "res_track.txt").read_text().splitlines()]
        assert sorted((int(b), int(e), int(p) > 0) for _, b, e, p in rows) == [(0, 2, False), (0, 6, False),
                                                                             (4, 6, True)]
    elif name == "tracks.csv":
        assert len(again.positions_at(3)) == 1  # nothing invented in the gap
    else:
        assert "marginal_probability" in again.link_data(track[2], track[4])


def test_the_drift_of_the_whole_picture_is_found_and_does_not_confuse_the_links() -> None:
    """Cells scattered at random, each moving a little its own way, all shifted by 7 px per time point: their
    nearest neighbour's distance, so that without the drift 47 of the 256 links come out wrong."""
    random = np.random.default_rng(0)
    grid = random.uniform(0, 100, (64, 2))
    tracks = [[Position(x + 7 * t + random.normal(0, 0.3), y + random.normal(0, 0.3), 0, t) for t in range(5)]
              for x, y in grid]
    positions = from_positions([p for track in tracks for p in track], VoxelSize(1, 1, 1))
    xyz = coordinates_um(list(positions.positions()), positions.voxel_size)
    time = np.array([p.t for p in positions.positions()])
    assert drift(xyz, time)[time == 4][0] == pytest.approx([28, 0, 0], abs=0.5)
    right = set(link_tracks(positions).tracking.links()) & {link for track in tracks for link in zip(track, track[1:])}
    assert len(right) >= 250


def test_division_and_link_counts_agree_with_traccuracy() -> None:
    pytest.importorskip("traccuracy", reason="the cross-check needs the package traccuracy")
    from octrack.traccuracy_check import traccuracy_scores

    truth, predicted = _dividing(), _dividing()
    mother, first, second = Position(23, 20, 4, 3), Position(25, 22, 4, 4), Position(21, 18, 4, 4)
    predicted.remove_link(mother, second)  # a division one time point late
    predicted.remove_link(second, Position(20, 17, 4, 5))
    predicted.add_link(first, Position(20, 17, 4, 5))
    predicted.remove_position(Position(40, 43, 6, 3))  # a missed position, bridged
    predicted.add_link(Position(40, 42, 6, 2), Position(40, 44, 6, 4))
    detection = score_detections(truth, predicted, max_distance_px=1)
    scores = score_tracking(truth, predicted, detection)
    theirs = traccuracy_scores(truth, predicted, detection.matching)
    for ours, buffer in ((scores.divisions_exact, 0), (scores.divisions, 1)):
        divisions = theirs["DivisionMetrics"][f"Frame Buffer {buffer}"]
        assert (ours.true_positives, ours.false_positives, ours.false_negatives) == (
            divisions["True Positive Divisions"], divisions["False Positive Divisions"],
            divisions["False Negative Divisions"])
    edges = theirs["BasicMetrics"]
    assert (scores.links.true_positives, scores.links.false_positives, scores.links.false_negatives) == (
        edges["True Positive Edges"] + edges["Skip Pred True Positive Edges"], edges["False Positive Edges"],
        edges["False Negative Edges"])


def test_evaluate_reports_divisions_at_both_tolerances_and_says_how_gap_links_count(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    truth, predicted = _dividing(), _dividing()
    predicted.remove_position(Position(40, 43, 6, 3))
    predicted.add_link(Position(40, 42, 6, 2), Position(40, 44, 6, 4))
    save_tracking(truth, tmp_path / "truth.csv")
    save_tracking(predicted, tmp_path / "predicted.csv")
    arguments = ["evaluate", "--ground-truth", str(tmp_path / "truth.csv"), "--predicted",
                 str(tmp_path / "predicted.csv"), "--max-distance-px", "1"]
    assert main(arguments) == 0
    text = capsys.readouterr().out
    assert "divisions (±1 time point)" in text and "divisions (±0 time points)" in text
    assert "1 predicted links skip time points" in text and "relax_skips_pred" in text
    assert main([*arguments, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["skip_links"] == 1 and result["division_f1"] == result["division_f1_exact"] == 1.0
    assert result["links"]["false_negatives"] == 0
