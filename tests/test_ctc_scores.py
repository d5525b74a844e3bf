"""octrack's Cell Tracking Challenge folders, scored by the CTC's own tool (py-ctcmetrics): results made with
default options validate and score, ground truth written by `convert --ground-truth` is read, and both line up
with the images."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.cli import main
from octrack.tracking import load_tracking
from tests.helpers import real_data

ctc_metrics = pytest.importorskip("ctc_metrics", reason="py-ctcmetrics (the test extra) is not installed")


def ctc_scores(result: Path, ground_truth: Path) -> dict[str, float]:
    """What `ctc_validate --res` and `ctc_evaluate --gt --res` report (Valid, DET, TRA), in this process."""
    from ctc_metrics.scripts.evaluate import evaluate_sequence
    from ctc_metrics.scripts.validate import validate_sequence

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        valid = validate_sequence(str(result), threads=1)["Valid"]
        scores = evaluate_sequence(str(result), str(ground_truth), ["DET", "TRA"], threads=1)
    return {"Valid": valid, **scores}


def run(capsys: pytest.CaptureFixture, *arguments: str) -> tuple[str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out, captured.err


def test_breast_cancer_result_and_ground_truth_score_with_default_options(tmp_path: Path, capsys) -> None:
    data = real_data("breast-cancer-2d")
    _, err = run(capsys, "track", str(data / "01_GT" / "TRA"), "--images", str(data / "01"),
                 "--output", str(tmp_path / "01_RES"))
    assert "warning: the voxel size is unknown, so the CTC markers are balls of 10 pixels" in err
    result = tmp_path / "01_RES"
    mask = tifffile.imread(result / "mask000.tif")
    assert mask.shape == tifffile.imread(data / "01" / "t0000.tif").shape == (724, 1024)
    assert len(list(result.glob("mask*.tif"))) == 12
    assert (result / "mask.txt").read_text() == (result / "res_track.txt").read_text()  # for OrganoidTracker
    scores = ctc_scores(result, data / "01_GT")
    assert scores["Valid"] == 1 and scores["DET"] >= 0.99 and scores["TRA"] >= 0.9, scores

    # ground truth written by octrack from the annotations (ctc_evaluate reading such a folder: the 3D test below)
    out, _ = run(capsys, "convert", str(data / "01_GT" / "TRA"), str(tmp_path / "01_GT"), "--ground-truth",
                 "--images", str(data / "01"))
    assert "01_GT/TRA" in out and (tmp_path / "01_GT" / "TRA" / "man_track.txt").is_file()
    assert tifffile.imread(tmp_path / "01_GT" / "TRA" / "man_track011.tif").shape == (724, 1024)
    truth, again = load_tracking(data / "01_GT" / "TRA"), load_tracking(tmp_path / "01_GT")
    assert len(again) == len(truth) and len(again.divisions()) == len(truth.divisions()) == 34


def test_synthetic_3d_result_scores_against_ground_truth_from_convert(movie_3d: Path, capsys) -> None:
    """The true tracks written as a result (the voxel size is known: OrganoidTracker's 7 µm balls, no warning)
    against the same tracks written as ground truth (small markers)."""
    images = movie_3d / "images"
    run(capsys, "convert", str(movie_3d / "ground_truth.aut"), str(movie_3d / "01_GT"), "--ground-truth",
        "--images", str(images))
    _, err = run(capsys, "convert", str(movie_3d / "ground_truth.aut"), str(movie_3d / "01_RES"),
                 "--images", str(images))
    assert "warning" not in err  # the voxel size is known
    mask = tifffile.imread(movie_3d / "01_RES" / "mask000.tif")
    assert mask.shape == tifffile.imread(images / "nuclei_t000.tif").shape
    assert np.count_nonzero(mask.any(axis=(1, 2))) > 1  # balls in 3D
    ground_truth = tifffile.imread(movie_3d / "01_GT" / "TRA" / "man_track000.tif")
    assert all(np.count_nonzero(ground_truth == label) <= 13 for label in np.unique(ground_truth[ground_truth > 0]))
    scores = ctc_scores(movie_3d / "01_RES", movie_3d / "01_GT")
    assert scores["Valid"] == 1 and scores["DET"] >= 0.99 and scores["TRA"] >= 0.99, scores


def test_result_frames_follow_the_movie_not_the_positions(movie_3d: Path, capsys, tmp_path: Path) -> None:
    """A result needs one mask per frame of the movie, also after the last positions; ctc_evaluate compares the
    counts."""
    truth = load_tracking(movie_3d / "ground_truth.aut")
    for position in truth.positions_at(truth.time_points()[-1]):
        truth.remove_position(position)
    from octrack.tracking import save_tracking
    save_tracking(truth, tmp_path / "early.aut")
    run(capsys, "track", str(tmp_path / "early.aut"), "--images", str(movie_3d / "images"),
        "--output", str(tmp_path / "01_RES"), "--radius-um", "4")
    assert len(list((tmp_path / "01_RES").glob("mask*.tif"))) == len(list((movie_3d / "images").glob("*.tif")))
