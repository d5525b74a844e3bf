"""Marginal probabilities in the written tracks (OrganoidTracker's layout, CSV columns), the filtered tracks,
review.csv, `octrack calibrate` and the calibration scores of `octrack evaluate`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from octrack.calibration import load_tracker_calibration
from octrack.cli import main
from octrack.errors import UserError
from octrack.linking import MARGINAL_PROBABILITY, LinkingResult, link_tracks
from octrack.stages.calibrate import calibrate
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking
from octrack.tracking.model import from_positions
from octrack.writers import REVIEW_COLUMNS, filtered, write_review, write_tracks

VOXEL = VoxelSize(0.5, 0.5, 2.0)


def _crowd(seed: int = 0, cells: int = 40, time_points: int = 8, step: float = 3.0) -> Tracking:
    """Cells on random walks in a small 2D field (pixels; 0.5 µm each): some come close enough to be swapped."""
    random = np.random.default_rng(seed)
    xy = random.uniform(0, 120, (cells, 2))
    truth = Tracking(VOXEL)
    previous: list[Position] = []
    for t in range(time_points):
        current = [truth.add_position(Position(float(x), float(y), 0.0, t)) for x, y in xy]
        for a, b in zip(previous, current):
            truth.add_link(a, b)
        previous, xy = current, xy + random.normal(0, step, xy.shape)
    return truth


def _tracked(truth: Tracking, temperature: float = 1.5) -> LinkingResult:
    return link_tracks(from_positions(truth.positions(), truth.voxel_size), temperature=temperature)


def test_aut_holds_marginal_probability_in_organoid_trackers_layout(tmp_path: Path) -> None:
    result = _tracked(_crowd())
    write_tracks(result.tracking, tmp_path, None, 0.99)
    data = json.loads((tmp_path / "tracks.aut").read_text())
    with_links = [track for track in data["tracks"] if len(track["coords_xyz_px"]) > 1]
    assert with_links
    for track in with_links:
        values = track["link_meta"][MARGINAL_PROBABILITY]
        assert len(values) == len(track["coords_xyz_px"]) - 1 and all(0 < value <= 1 for value in values)
    for track in data["tracks"]:
        if "coords_xyz_px_before" in track:  # the link from the track before, one longer and null-ended, as OT
            before = track["link_meta_before"][MARGINAL_PROBABILITY]
            assert len(before) == len(track["coords_xyz_px_before"]) + 1 and before[-1] is None
    back = load_tracking(tmp_path / "tracks.aut")
    assert all(MARGINAL_PROBABILITY in back.link_data(*link) for link in back.links())


def test_csv_has_marginal_and_error_probability_of_the_link_from_the_parent(tmp_path: Path) -> None:
    result = _tracked(_crowd())
    write_tracks(result.tracking, tmp_path, None, 0.99)
    with open(tmp_path / "tracks.csv") as handle:
        rows = list(csv.DictReader(handle))
    linked = [row for row in rows if row["parent_id"] != "-1"]
    assert linked and all(row["marginal_probability"] and row["error_probability"] for row in linked)
    for row in linked:
        assert float(row["error_probability"]) == pytest.approx(1 - float(row["marginal_probability"]), abs=2e-6)
    assert all(row["marginal_probability"] == "" for row in rows if row["parent_id"] == "-1")
    back = load_tracking(tmp_path / "tracks.csv")
    assert set(back.link_data_keys()) == {MARGINAL_PROBABILITY}
    assert {link: back.link_data(*link)[MARGINAL_PROBABILITY] for link in back.links()} == \
        {link: result.tracking.link_data(*link)[MARGINAL_PROBABILITY] for link in result.tracking.links()}


def test_filtered_tracks_leave_out_the_uncertain_links(tmp_path: Path) -> None:
    result = _tracked(_crowd())
    uncertain = {link for link in result.tracking.links()
                 if result.tracking.link_data(*link)[MARGINAL_PROBABILITY] < 0.99}
    assert uncertain and result.uncertain_links == len(uncertain)
    write_tracks(result.tracking, tmp_path, None, 0.99)
    for name in ("tracks_filtered.aut", "tracks_filtered.csv"):
        trusted = load_tracking(tmp_path / name)
        assert set(trusted.links()) == set(result.tracking.links()) - uncertain
        assert set(trusted.positions()) == set(result.tracking.positions())
    assert set(filtered(result.tracking, 0.0).links()) == set(result.tracking.links())


def test_review_lists_uncertain_links_and_divisions_least_certain_first(tmp_path: Path) -> None:
    result = _tracked(_crowd())
    write_review(result.review, result.tracking.voxel_size, tmp_path / "review.csv")
    with open(tmp_path / "review.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == REVIEW_COLUMNS
    assert len(rows) == result.uncertain_links + result.uncertain_divisions > 0
    probabilities = [float(row["marginal_probability"]) for row in rows]
    assert probabilities == sorted(probabilities) and max(probabilities) < 0.99
    for row in rows:
        assert float(row["x_um"]) == pytest.approx(float(row["x"]) * 0.5, rel=1e-3)
        assert int(row["to_t"]) == int(row["t"]) + 1 and row["kind"] in ("link", "division")
        assert float(row["error_probability"]) == pytest.approx(1 - float(row["marginal_probability"]), abs=1e-6)
    assert any("instead" in row["alternatives"] for row in rows if row["kind"] == "link")
    assert "of" in result.describe_review() and "%" in result.describe_review()


def test_calibrate_fits_a_temperature_that_predict_and_track_read(tmp_path: Path, capsys) -> None:
    truth = _crowd(seed=1, cells=60, step=4.0)
    save_tracking(truth, tmp_path / "truth.aut")
    save_tracking(from_positions(truth.positions(), VOXEL), tmp_path / "positions.aut")
    summary = calibrate(tmp_path / "truth.aut", tmp_path / "positions.aut", tmp_path / "model")
    calibration = load_tracker_calibration(tmp_path / "model")
    assert calibration is not None and 0.05 <= calibration.temperature <= 50 and calibration.wrong_links > 0
    assert f"{calibration.temperature:.3f}" in summary
    assert main(["track", str(tmp_path / "positions.aut"), "--output", str(tmp_path / "t.aut"), "--temperature",
                 str(calibration.temperature)]) == 0
    assert f"temperature {calibration.temperature:g}" in capsys.readouterr().out


def test_calibrate_refuses_ground_truth_without_mistakes(tmp_path: Path) -> None:
    truth = _crowd(cells=3, step=0.5)
    save_tracking(truth, tmp_path / "truth.aut")
    save_tracking(from_positions(truth.positions(), VOXEL), tmp_path / "positions.aut")
    with pytest.raises(UserError, match="no temperature fits"):
        calibrate(tmp_path / "truth.aut", tmp_path / "positions.aut", tmp_path / "model")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tracker_calibration.json").write_text('{"temperature": -1}')
    with pytest.raises(UserError, match="tracker_calibration.json"):
        load_tracker_calibration(tmp_path / "model")


def test_evaluate_reports_reliability_and_review_curve(tmp_path: Path, capsys) -> None:
    truth = _crowd(seed=1, cells=60, step=4.0)
    save_tracking(truth, tmp_path / "truth.aut")
    save_tracking(_tracked(truth).tracking, tmp_path / "tracks.aut")
    arguments = ["evaluate", "--ground-truth", str(tmp_path / "truth.aut"), "--predicted", str(tmp_path / "tracks.aut"),
                 "--max-distance-px", "1"]
    assert main(arguments) == 0
    text = capsys.readouterr().out
    assert "error probabilities of" in text and "flag below" in text
    assert main([*arguments, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["error_calibration"]
    assert scores["links"] == sum(row["links"] for row in scores["reliability"]) > 0
    at_99 = next(point for point in scores["review_curve"] if point["threshold"] == 0.99)
    assert 0 <= at_99["flagged"] <= 1 and 0 <= at_99["caught"] <= 1
