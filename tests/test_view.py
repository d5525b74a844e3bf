"""`octrack view` (movie, PNGs, lineage trees) and `evaluate --plot` with the link and division errors."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as imageio
import numpy as np
import pytest

from octrack.cli import main
from octrack.lineage import track_tree
from octrack.tracking import Position, Tracking, load_tracking, save_tracking


def dividing() -> Tracking:
    tracking = Tracking()
    mother = [tracking.add_position(Position(10 + t, 20, 0, t)) for t in range(3)]
    left = [tracking.add_position(Position(14, 15 - t, 0, 3 + t)) for t in range(3)]
    right = [tracking.add_position(Position(14, 25 + t, 0, 3 + t)) for t in range(2)]
    lone = [tracking.add_position(Position(40, 40, 0, t)) for t in range(6)]
    for track in (mother, left, right, lone):
        for a, b in zip(track, track[1:]):
            tracking.add_link(a, b, marginal_probability=1.0)
    tracking.add_link(mother[-1], left[0], marginal_probability=0.5)
    tracking.add_link(mother[-1], right[0], marginal_probability=1.0)
    return tracking


def test_track_tree_numbers_segments_and_lineages() -> None:
    tree = track_tree(dividing())
    assert len(tree.segments) == 4 and sorted(tree.lineages()) == [1, 2]
    (mother,) = [s for s, parents in tree.parents.items() if not parents and tree.children(s)]
    assert len(tree.children(mother)) == 2
    assert {tree.lineage_of[s] for s in (mother, *tree.children(mother))} == {tree.lineage_of[mother]}


def test_view_writes_a_movie_pngs_and_lineage_trees(movie_3d: Path, capsys, tmp_path: Path) -> None:
    output = tmp_path / "view"
    code = main(["view", str(movie_3d / "ground_truth.aut"), "--images", str(movie_3d / "images"),
                 "--output", str(output), "--png", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "lineages; the largest" in out and "first t" in out
    movie = imageio.imread(output / "movie.gif", index=None)
    assert movie.shape[0] == 4 and movie.ndim == 4  # one frame per time point
    assert movie[0].std() > 5  # the image, not a blank canvas
    assert sorted(path.name for path in output.iterdir()) == ["lineages.png", "movie.gif", "t001.png"]
    assert imageio.imread(output / "lineages.png").shape[1] > 200


def test_view_marks_links_under_review_in_red(tmp_path: Path, capsys) -> None:
    save_tracking(dividing(), tmp_path / "tracks.aut")
    assert main(["view", str(tmp_path / "tracks.aut"), "--png", "0,3", "--lineages", "1"]) == 0
    capsys.readouterr()
    frame = imageio.imread(tmp_path / "tracks-view" / "t003.png")[..., :3].astype(int)
    red = (frame[..., 0] > 200) & (frame[..., 1] < 60) & (frame[..., 2] < 60)
    assert red.sum() > 10  # the link of confidence 0.5 into time point 3
    clean = imageio.imread(tmp_path / "tracks-view" / "t000.png")[..., :3].astype(int)
    assert ((clean[..., 0] > 200) & (clean[..., 1] < 60) & (clean[..., 2] < 60)).sum() == 0


def test_view_errors_are_one_line(tmp_path: Path, capsys) -> None:
    save_tracking(dividing(), tmp_path / "tracks.aut")
    for arguments, message in ((["--lineages", "9"], "no lineage 9"), (["--png", "17"], "no positions there"),
                               (["--lineages", "a"], "whole numbers")):
        assert main(["view", str(tmp_path / "tracks.aut"), *arguments]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error


def test_evaluate_plot_draws_false_and_missed_links_and_divisions(tmp_path: Path, capsys) -> None:
    truth = dividing()
    predicted = dividing()
    mother = Position(12, 20, 0, 2)
    predicted.remove_link(mother, Position(14, 25, 0, 3))  # a missed division and link
    predicted.add_link(Position(14, 15, 0, 3), Position(14, 26, 0, 4))  # a false link
    predicted.remove_link(Position(14, 15, 0, 3), Position(14, 14, 0, 4))
    save_tracking(truth, tmp_path / "truth.aut")
    save_tracking(predicted, tmp_path / "predicted.aut")
    plots = {}
    for time_point in (2, 3):
        plots[time_point] = tmp_path / f"t{time_point}.png"
        assert main(["evaluate", "--ground-truth", str(tmp_path / "truth.aut"), "--predicted",
                     str(tmp_path / "predicted.aut"), "--plot", str(plots[time_point]), "--plot-time-point",
                     str(time_point)]) == 0
    out = capsys.readouterr().out
    assert "links: precision" in out
    from octrack.scoring import score_detections, tracking_errors
    errors = tracking_errors(truth, predicted, score_detections(truth, predicted, max_distance_px=1))
    assert errors.missed_divisions == [mother] and errors.false_divisions == []
    assert len(errors.false_links) == 1 and len(errors.missed_links) == 2
    for path in plots.values():
        picture = imageio.imread(path)[..., :3].astype(int)
        orange = (picture[..., 0] > 200) & (np.abs(picture[..., 1] - 165) < 40) & (picture[..., 2] < 60)
        assert orange.sum() > 20  # missed division (t = 2) and missed link (t = 3), in the legend at least


@pytest.mark.parametrize("suffix", ["mp4"])
def test_mp4_needs_imageio_ffmpeg(tmp_path: Path, capsys, suffix: str) -> None:
    save_tracking(dividing(), tmp_path / "tracks.aut")
    code = main(["view", str(tmp_path / "tracks.aut"), "--format", suffix])
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        assert code == 2 and "octrack[mp4]" in capsys.readouterr().err
    else:
        assert code == 0 and (tmp_path / "tracks-view" / "movie.mp4").stat().st_size > 0
    assert load_tracking(tmp_path / "tracks.aut")
