"""`octrack track` end to end, the Cell Tracking Challenge result format, and link/division evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from octrack.cli import main
from octrack.scoring import score_detections, score_tracking
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking
from octrack.tracking.model import from_positions


def _lineage() -> Tracking:
    """A mother dividing at t=3 beside a cell that walks on: positions only, 3D, in pixels of 0.5 × 0.5 × 2 µm."""
    mother = [Position(20 + t, 20, 4, t) for t in range(4)]
    daughters = [[Position(23 + s * (2 + t), 20 + s * (2 + t), 4, 4 + t) for t in range(3)] for s in (1, -1)]
    walker = [Position(40, 40 + t, 6, t) for t in range(7)]
    tracking = from_positions(mother + daughters[0] + daughters[1] + walker)
    for track in (mother + [daughters[0][0]], daughters[0], walker):
        for a, b in zip(track, track[1:]):
            tracking.add_link(a, b)
    tracking.add_link(mother[-1], daughters[1][0])
    for a, b in zip(daughters[1], daughters[1][1:]):
        tracking.add_link(a, b)
    return tracking


def _write_positions_csv(tracking: Tracking, path: Path) -> None:
    path.write_text("t,z,y,x\n" + "".join(f"{p.t},{p.z},{p.y},{p.x}\n" for p in tracking.positions()))


@pytest.mark.parametrize("output", ["tracks.aut", "tracks.csv", "ctc"])
def test_track_links_a_csv_without_parents_and_every_output_opens_again(tmp_path: Path, output: str,
                                                                          capsys: pytest.CaptureFixture) -> None:
    truth = _lineage()
    _write_positions_csv(truth, tmp_path / "positions.csv")
    size = ["--shape", "10", "64", "80"] if output == "ctc" else []
    assert main(["track", str(tmp_path / "positions.csv"), "--output", str(tmp_path / output),
                 "--voxel-size", "2", "0.5", "0.5", *size]) == 0
    assert "1 divisions" in capsys.readouterr().out
    tracks = load_tracking(tmp_path / output)
    assert set(tracks.links()) == set(truth.links())
    if output != "ctc":  # CTC keeps no metadata
        assert all(0 < tracks.link_data(*link)["marginal_probability"] <= 1 for link in tracks.links())


def test_track_default_output_and_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _write_positions_csv(_lineage(), tmp_path / "positions.csv")
    assert main(["track", str(tmp_path / "positions.csv"), "--voxel-size", "2", "0.5", "0.5"]) == 0
    assert (tmp_path / "positions-tracks.aut").is_file()
    capsys.readouterr()
    cases = [([str(tmp_path / "missing.csv")], "not found"),
             ([str(tmp_path / "positions.csv")], "--voxel-size"),  # 3D positions, voxel size unknown
             ([str(tmp_path / "positions.csv"), "--voxel-size", "2", "0", "0.5"], "above 0"),
             ([str(tmp_path / "positions.csv"), "--voxel-size", "1", "1", "1", "--output", str(tmp_path / "t.txt")],
              "unknown tracking format")]
    (tmp_path / "empty.csv").write_text("t,y,x\n")
    cases.append(([str(tmp_path / "empty.csv")], "no positions"))
    for arguments, message in cases:
        assert main(["track", *arguments]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error


def test_ctc_result_follows_the_format_rules(tmp_path: Path) -> None:
    """Each label one connected blob per frame over consecutive frames B..E as res_track.txt says, parents
    ending before their daughters begin; a link that skips a time point becomes a parent link."""
    tracking = _lineage()
    tracking.voxel_size = VoxelSize(0.5, 0.5, 2.0)
    gap_before, gap_after = Position(60, 20, 4, 1), Position(61, 21, 4, 3)
    for position in (Position(60, 20, 4, 0), gap_before, gap_after):
        tracking.add_position(position)
    tracking.add_link(Position(60, 20, 4, 0), gap_before)
    tracking.add_link(gap_before, gap_after)
    save_tracking(tracking, tmp_path / "res", radius_um=1.5, image_shape_zyx=(10, 64, 80))
    rows = {int(label): (int(b), int(e), int(p)) for label, b, e, p in
            (line.split() for line in (tmp_path / "res" / "res_track.txt").read_text().splitlines())}
    masks = sorted((tmp_path / "res").glob("mask*.tif"))
    assert [path.name for path in masks] == [f"mask{t:03d}.tif" for t in range(7)]
    frames_of: dict[int, list[int]] = {}
    for t, path in enumerate(masks):
        labels = tifffile.imread(path)
        assert labels.shape == (10, 64, 80)
        for label in np.unique(labels[labels > 0]):
            assert ndimage.label(labels == label)[1] == 1  # one connected blob
            frames_of.setdefault(int(label), []).append(t)
    assert set(frames_of) == set(rows)
    for label, (begin, end, parent) in rows.items():
        assert frames_of[label] == list(range(begin, end + 1))
        if parent:
            assert rows[parent][1] < begin
    assert len(rows) == 6 and sum(1 for _, _, p in rows.values() if p) == 3  # two daughters, one after a gap
    again = load_tracking(tmp_path / "res")
    assert again.has_link(gap_before, gap_after) and len(again.divisions()) == 1


def test_evaluate_scores_links_divisions_and_tracks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    truth = _lineage()
    predicted = _lineage()
    mother, late = Position(23, 20, 4, 3), Position(25, 22, 4, 4)
    other = Position(21, 18, 4, 4)
    # the division found one time point late: the mother links to one daughter, which then "divides"
    predicted.remove_link(mother, other)
    predicted.add_link(late, Position(20, 17, 4, 5))
    predicted.remove_link(other, Position(20, 17, 4, 5))
    predicted.remove_link(Position(40, 43, 6, 3), Position(40, 44, 6, 4))  # a broken track
    detection = score_detections(truth, predicted, max_distance_px=1)
    scores = score_tracking(truth, predicted, detection)
    assert (scores.links.true_positives, scores.links.false_positives, scores.links.false_negatives) == (12, 1, 3)
    assert (scores.divisions.true_positives, scores.divisions.false_positives) == (1, 0)
    assert score_tracking(truth, predicted, detection, division_tolerance=0).divisions.f1 == 0
    assert (scores.tracks, scores.tracks_without_error) == (4, 0)  # every true track touches an error
    save_tracking(truth, tmp_path / "truth.csv")
    save_tracking(predicted, tmp_path / "predicted.csv")
    assert main(["evaluate", "--ground-truth", str(tmp_path / "truth.csv"), "--predicted",
                 str(tmp_path / "predicted.csv"), "--max-distance-px", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["f1"] == 1.0 and result["link_f1"] == pytest.approx(24 / 28) and result["division_f1"] == 1.0
    assert result["links"]["false_negatives"] == 3 and result["divisions"]["true_positives"] == 1


def test_traccuracy_cross_check_agrees_on_links(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    truth = _lineage()
    predicted = _lineage()
    predicted.remove_link(Position(40, 43, 6, 3), Position(40, 44, 6, 4))
    save_tracking(truth, tmp_path / "truth.csv")
    save_tracking(predicted, tmp_path / "predicted.csv")
    command = ["evaluate", "--ground-truth", str(tmp_path / "truth.csv"), "--predicted",
               str(tmp_path / "predicted.csv"), "--max-distance-px", "1", "--json", "--traccuracy"]
    with monkeypatch.context() as patch:
        patch.setitem(__import__("sys").modules, "traccuracy", None)  # as if not installed
        assert main(command) == 2
        assert "pip install traccuracy" in capsys.readouterr().err
    pytest.importorskip("traccuracy")
    assert main(command) == 0
    result = json.loads(capsys.readouterr().out)
    basic = result["traccuracy"]["BasicMetrics"]
    ours = (result["links"]["true_positives"], result["links"]["false_negatives"])
    assert (basic["True Positive Edges"], basic["False Negative Edges"]) == ours == (14, 1)
