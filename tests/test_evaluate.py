"""Detection scores: one-to-one matching within a distance, per time point, and the `evaluate` command."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from octrack.cli import main
from octrack.errors import UserError
from octrack.matching import match_time_point
from octrack.scoring import score_detections, score_tracking
from octrack.stages.common import parse_time_range
from octrack.tracking import Position, Tracking, VoxelSize, save_tracking
from octrack.tracking.model import from_positions


def at(t: int, *xyz_list: tuple[float, float, float]) -> list[Position]:
    return [Position(x, y, z, t) for x, y, z in xyz_list]


def tracking(*positions: list[Position], voxel_size: VoxelSize | None = None) -> Tracking:
    return from_positions([p for group in positions for p in group], voxel_size)


TRUTH = tracking(at(0, (10, 10, 2), (40, 10, 2), (10, 40, 2)), at(1, (12, 10, 2), (40, 12, 2)))


# Scores
def test_exact_prediction_scores_one():
    scores = score_detections(TRUTH, TRUTH, max_distance_px=3)
    assert (scores.true_positives, scores.false_positives, scores.false_negatives) == (5, 0, 0)
    assert scores.precision == scores.recall == scores.f1 == 1.0
    assert set(scores.per_time_point) == {0, 1}


@pytest.mark.parametrize("shift, matched", [(2.9, True), (3.1, False)])
def test_shift_within_and_beyond_the_distance(shift, matched):
    predicted = tracking(at(0, (10 + shift, 10, 2)))
    scores = score_detections(tracking(at(0, (10, 10, 2))), predicted, max_distance_px=3)
    assert (scores.true_positives, scores.false_positives, scores.false_negatives) == \
        ((1, 0, 0) if matched else (0, 1, 1))


def test_one_to_one():
    predicted = tracking(at(0, (10, 10, 2), (11, 10, 2)))
    scores = score_detections(tracking(at(0, (10, 10, 2))), predicted, max_distance_px=5)
    assert (scores.true_positives, scores.false_positives, scores.false_negatives) == (1, 1, 0)
    assert scores.precision == 0.5 and scores.recall == 1.0 and scores.f1 == pytest.approx(2 / 3)


def test_matching_maximises_the_number_of_pairs():
    """Greedy nearest-first would pair truth 0 with prediction 1 and leave truth 1 unmatched."""
    true = at(0, (0, 0, 0), (4, 0, 0))
    predicted = at(0, (-2, 0, 0), (1, 0, 0))
    assert match_time_point(true, predicted, 3, None) == [(0, 0), (1, 1)]


def test_anisotropic_voxel_size_measures_z_in_um():
    truth = tracking(at(0, (10, 10, 2)), voxel_size=VoxelSize(0.5, 0.5, 2.0))
    one_slice_off = tracking(at(0, (10, 10, 3)))
    assert score_detections(truth, one_slice_off, max_distance_um=3).true_positives == 1  # 2 µm
    assert score_detections(truth, one_slice_off, max_distance_um=1.5).true_positives == 0
    assert score_detections(truth, one_slice_off, max_distance_px=1.5).true_positives == 1  # 1 px


def test_default_distance_is_5_um():
    truth = tracking(at(0, (10, 10, 2)), voxel_size=VoxelSize(1.0, 1.0, 1.0))
    scores = score_detections(truth, tracking(at(0, (14.9, 10, 2))))
    assert scores.true_positives == 1 and scores.max_distance == 5.0 and scores.distance_unit == "um"


def test_voxel_size_argument_wins_over_the_files():
    truth = tracking(at(0, (10, 10, 2)), voxel_size=VoxelSize(1.0, 1.0, 1.0))
    predicted = tracking(at(0, (13, 10, 2)))
    assert score_detections(truth, predicted, max_distance_um=4).true_positives == 1
    assert score_detections(truth, predicted, max_distance_um=4, voxel_size=VoxelSize(2, 2, 2)).true_positives == 0


def test_empty_prediction():
    scores = score_detections(TRUTH, Tracking(), max_distance_px=3)
    assert (scores.true_positives, scores.false_positives, scores.false_negatives) == (0, 0, 5)
    assert scores.precision == scores.recall == scores.f1 == 0.0


def test_both_empty_scores_one():
    scores = score_detections(Tracking(), Tracking(), max_distance_px=3, time_points=[0])
    assert scores.precision == scores.recall == scores.f1 == 1.0


def test_predictions_without_ground_truth_time_point_are_not_counted():
    predicted = tracking(TRUTH.positions_at(0), at(7, (5, 5, 5)))
    scores = score_detections(TRUTH, predicted, max_distance_px=3)
    assert set(scores.per_time_point) == {0, 1}
    assert scores.false_positives == 0 and scores.false_negatives == 2


def test_explicit_time_points():
    scores = score_detections(TRUTH, TRUTH, max_distance_px=3, time_points=[1])
    assert list(scores.per_time_point) == [1] and scores.true_positives == 2


def test_annotated_box_ignores_predictions_outside():
    truth = tracking(at(0, (10, 10, 2), (20, 20, 4)))
    predicted = tracking(at(0, (10, 10, 2), (22, 21, 4), (60, 15, 3), (15, 15, 30)))
    everything = score_detections(truth, predicted, max_distance_px=3)
    boxed = score_detections(truth, predicted, max_distance_px=3, restrict_to_annotated_box=True)
    assert (everything.true_positives, everything.false_positives) == (2, 2)
    assert (boxed.true_positives, boxed.false_positives, boxed.false_negatives) == (2, 0, 0)
    wider = score_detections(truth, predicted, max_distance_px=3, restrict_to_annotated_box=True,
                             box_margin_px=40)
    assert wider.false_positives == 2


def test_uncertain_annotations_count_neither_way():
    """A prediction at an uncertain annotation is no false positive, a missed uncertain one no false negative;
    a certain annotation is matched first, and a second prediction near it stays a false positive."""
    truth = tracking(at(0, (10, 10, 2), (40, 10, 2), (70, 10, 2)))
    truth.set_position_data(Position(40, 10, 2, 0), "uncertain", True)
    truth.set_position_data(Position(70, 10, 2, 0), "uncertain", True)
    guesses = tracking(at(0, (11, 10, 2), (12, 11, 2), (41, 10, 2), (100, 10, 2)))
    scores = score_detections(truth, guesses, max_distance_px=3)
    assert (scores.true_positives, scores.false_positives, scores.false_negatives) == (1, 2, 0)
    assert (scores.uncertain, scores.at_uncertain) == (2, 1)
    assert scores.to_json()["predictions_at_uncertain_annotations"] == 1


def test_links_at_uncertain_annotations_count_neither_way():
    truth = tracking(at(0, (10, 10, 2), (40, 10, 2)), at(1, (11, 10, 2), (41, 10, 2)))
    truth.add_link(Position(10, 10, 2, 0), Position(11, 10, 2, 1))
    truth.add_link(Position(40, 10, 2, 0), Position(41, 10, 2, 1))
    truth.set_position_data(Position(41, 10, 2, 1), "uncertain", True)
    guesses = tracking(at(0, (10, 10, 2), (40, 10, 2)), at(1, (11, 10, 2), (41, 10, 2)))
    guesses.add_link(Position(10, 10, 2, 0), Position(11, 10, 2, 1))
    guesses.add_link(Position(40, 10, 2, 0), Position(11, 10, 2, 1))
    scores = score_tracking(truth, guesses, score_detections(truth, guesses, max_distance_px=3))
    assert (scores.links.true_positives, scores.links.false_positives, scores.links.false_negatives) == (1, 1, 0)
    assert scores.tracks == 1  # the track with an uncertain position is not scored


def test_matching_maps_predicted_to_true():
    predicted = tracking(at(0, (11, 10, 2), (70, 70, 2)))
    matching = score_detections(TRUTH, predicted, max_distance_px=3).matching
    assert matching.predicted_to_true() == {Position(11, 10, 2, 0): Position(10, 10, 2, 0)}
    assert matching.time_points[0].unmatched_predicted() == [Position(70, 70, 2, 0)]


def test_um_distance_without_voxel_size_is_a_user_error():
    with pytest.raises(UserError, match="--max-distance-px"):
        score_detections(TRUTH, TRUTH, max_distance_um=5)


def test_unknown_voxel_size_falls_back_to_pixels(caplog):
    scores = score_detections(TRUTH, TRUTH)
    assert scores.distance_unit == "px" and scores.f1 == 1.0
    assert "--max-distance-px" in caplog.text


@pytest.mark.parametrize("text, bounds", [("2:5", (2, 5)), ("3:", (3, None)), (":4", (None, 4)), ("6", (6, 6))])
def test_parse_time_range(text, bounds):
    assert parse_time_range(text) == bounds


@pytest.mark.parametrize("text", ["a:b", "5:2", "", "1:2:3"])
def test_bad_time_range(text):
    with pytest.raises(UserError, match="--time-points"):
        parse_time_range(text)


# Matching: speed and agreement with a dense Hungarian
def random_positions(rng: np.random.Generator, count: int, size: float) -> list[Position]:
    return [Position(x, y, z, 0) for x, y, z in rng.uniform(0, size, (count, 3))]


def dense_hungarian(true: list[Position], predicted: list[Position], max_distance: float
                    ) -> tuple[int, float]:
    """Number of pairs and their summed distance, by the textbook method on the full matrix."""
    a = np.array([(p.x, p.y, p.z) for p in true])
    b = np.array([(p.x, p.y, p.z) for p in predicted])
    distances = np.linalg.norm(a[:, None] - b[None], axis=2)
    rows, columns = linear_sum_assignment(np.where(distances <= max_distance, distances, 1e9))
    kept = distances[rows, columns] <= max_distance
    return int(kept.sum()), float(distances[rows, columns][kept].sum())


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_dense_hungarian(seed):
    rng = np.random.default_rng(seed)
    true, predicted = random_positions(rng, 60, 30), random_positions(rng, 50, 30)
    pairs = match_time_point(true, predicted, 4.0, None)
    total = sum(np.linalg.norm(np.subtract(true[i][:3], predicted[j][:3])) for i, j in pairs)
    count, expected_total = dense_hungarian(true, predicted, 4.0)
    assert len(pairs) == count and total == pytest.approx(expected_total)
    assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)


def test_large_time_point_is_fast():
    rng = np.random.default_rng(0)
    true = random_positions(rng, 3000, 400)
    predicted = [Position(p.x + dx, p.y + dy, p.z + dz, 0) for p, (dx, dy, dz)
                 in zip(true, rng.normal(0, 1.5, (3000, 3)))] + random_positions(rng, 300, 400)
    start = time.perf_counter()
    scores = score_detections(from_positions(true), from_positions(predicted), max_distance_px=5)
    assert time.perf_counter() - start < 5.0  # about 0.1 s; generous, as other tests may share the cores
    assert scores.true_positives > 2900 and scores.false_positives >= 300


# The command
def write(path: Path, positions: list[Position], voxel_size: VoxelSize | None = None) -> str:
    save_tracking(from_positions(positions, voxel_size), path)
    return str(path)


@pytest.fixture
def files(tmp_path: Path) -> tuple[str, str]:
    truth = write(tmp_path / "truth.csv", list(TRUTH.positions()))
    predicted = write(tmp_path / "predicted.csv", at(0, (11, 10, 2), (40, 10, 2), (80, 80, 2)) + at(1, (12, 11, 2)))
    return truth, predicted


def evaluate(capsys: pytest.CaptureFixture, *arguments: str) -> tuple[int, str, str]:
    code = main(["evaluate", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_json(capsys, files):
    code, out, _ = evaluate(capsys, "--ground-truth", files[0], "--predicted", files[1], "--max-distance-px", "3",
                            "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["true_positives"], result["false_positives"], result["false_negatives"]) == (3, 1, 2)
    assert result["precision"] == 0.75 and result["recall"] == 0.6
    assert result["distance_unit"] == "px" and result["max_distance"] == 3
    assert result["per_time_point"]["1"]["false_negatives"] == 1


def test_cli_table(capsys, files):
    code, out, _ = evaluate(capsys, "--ground-truth", files[0], "--predicted", files[1], "--max-distance-px", "3",
                            "--time-points", "1:1")
    assert code == 0
    assert "precision 1.000" in out and "recall 0.500" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["1"]]
    assert rows == [["1", "2", "1", "1", "0", "1", "0.667"]]


def test_cli_voxel_size_gives_default_um_distance(capsys, files):
    code, out, _ = evaluate(capsys, "--ground-truth", files[0], "--predicted", files[1], "--voxel-size", "2", "1", "1",
                            "--json")
    assert code == 0 and json.loads(out)["distance_unit"] == "um" and json.loads(out)["max_distance"] == 5.0


def test_cli_plot_on_blank_canvas(capsys, files, tmp_path):
    plot = tmp_path / "plots" / "t0.png"
    code, out, _ = evaluate(capsys, "--ground-truth", files[0], "--predicted", files[1], "--max-distance-px", "3",
                            "--plot", str(plot), "--json")
    assert code == 0 and json.loads(out)["true_positives"] == 3
    assert plot.read_bytes().startswith(b"\x89PNG") and plot.stat().st_size > 1000
    assert [p.name for p in plot.parent.iterdir()] == ["t0.png"]


def test_cli_plot_over_images(capsys, movie_3d, tmp_path):
    plot = tmp_path / "over_image.png"
    truth = str(movie_3d / "ground_truth.aut")
    code, _, err = evaluate(capsys, "--ground-truth", truth, "--predicted", truth, "--plot", str(plot),
                            "--plot-time-point", "1", "--images", str(movie_3d / "images"))
    assert code == 0, err
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("extra, fragment", [
    (["--max-distance-um", "5"], "--max-distance-px"),
    (["--max-distance-px", "3", "--time-points", "5:9"], "--time-points"),
    (["--max-distance-px", "3", "--plot", "x.png", "--plot-time-point", "4"], "--plot-time-point 4"),
])
def test_cli_user_errors(capsys, files, extra, fragment):
    code, out, err = evaluate(capsys, "--ground-truth", files[0], "--predicted", files[1], *extra)
    assert code == 2 and out == ""
    assert err.startswith("octrack: error: ") and fragment in err and "Traceback" not in err


def test_cli_missing_file(capsys, files, tmp_path):
    missing = str(tmp_path / "nope.csv")
    code, _, err = evaluate(capsys, "--ground-truth", files[0], "--predicted", missing, "--max-distance-px", "3")
    assert code == 2 and "predicted tracking" in err and "nope.csv" in err


def test_image_offsets_of_the_ground_truth_are_applied():
    """OrganoidTracker positions are image pixels plus the time point's offset; predictions are image pixels."""
    truth = Tracking(image_offsets={0: (10.0, 0.0, 0.0)})
    truth.add_position(Position(30, 20, 0, 0))
    predicted = Tracking()
    predicted.add_position(Position(20, 20, 0, 0))
    assert score_detections(truth, predicted, max_distance_px=1).true_positives == 1
