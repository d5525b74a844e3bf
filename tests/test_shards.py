"""`octrack predict --time-points A:B` (shards) and `octrack merge`: joined shards give the result of one run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from octrack.cli import main
from octrack.stages.merge import Shard, join
from octrack.synth import generate
from octrack.tracking import Position, Tracking, load_tracking
from octrack.writers import OPEN_LIST
from tests.helpers import octrack, set_keys

TIME_POINTS = 12
STEPS = ("--steps", "positions,tracks")


@pytest.fixture(scope="module")
def _dividing_movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 time points with divisions (mothers at 0, 3, 7 and 8: two of them at or next to a shard boundary), its ground-truth positions standing in for detection (no network)."""
    folder = tmp_path_factory.mktemp("sharded")
    generate(folder, seed=6, time_points=TIME_POINTS, size_xyz=(64, 64, 8), nuclei=8, division_rate=0.2)
    set_keys(folder / "organoid_tracker.ini", "predict", positions_file_1="ground_truth.aut")
    return folder


@pytest.fixture
def movie(_dividing_movie: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(_dividing_movie, tmp_path / "movie"))


def _predictions(movie: Path) -> Path:
    return movie / "training_output" / "predictions" / "1"


def _run(capsys: pytest.CaptureFixture, movie: Path, *arguments: str) -> str:
    return octrack(capsys, *arguments, "--config", str(movie / "organoid_tracker.ini"))


def _links(tracking: Tracking) -> set[tuple[Position, Position]]:
    return set(tracking.links())


FILTERED_AND_REVIEW = ("tracks_filtered.aut", "tracks_filtered.csv", "review.csv")


def test_shards_merge_into_the_result_of_one_run(capsys: pytest.CaptureFixture, movie: Path) -> None:
    _run(capsys, movie, "predict", *STEPS)
    folder = _predictions(movie)
    whole_positions, whole_tracks = load_tracking(folder / "positions.aut"), load_tracking(folder / "tracks.aut")
    assert whole_tracks.divisions()
    for path in ("positions.aut", "positions.csv", "tracks.aut", "tracks.csv", "ctc", OPEN_LIST, *FILTERED_AND_REVIEW):
        shutil.move(folder / path, movie / f"whole_{path}")

    for time_points in ("0:4", "4:8", "8:"):  # the last one open: to the end of the movie
        out = _run(capsys, movie, "predict", *STEPS, "--time-points", time_points)
        assert "tracks:" in out
    assert sorted(path.name for path in folder.iterdir()) == ["shard_0-4", "shard_4-8", "shard_8-11"]
    shard = folder / "shard_4-8"
    assert load_tracking(shard / "tracks.aut").time_points() == [4, 5, 6, 7, 8]
    assert {path.name for path in shard.iterdir()} == {"positions.aut", "positions.csv", "tracks.aut", "tracks.csv",
                                                       OPEN_LIST, *FILTERED_AND_REVIEW}

    out = _run(capsys, movie, "merge")
    assert "3 shard(s), time points 0–4, 4–8, 8–11" in out and "warning" not in out
    merged_positions, merged_tracks = load_tracking(folder / "positions.aut"), load_tracking(folder / "tracks.aut")
    assert set(merged_positions.positions()) == set(whole_positions.positions())
    assert merged_positions.position_data_keys() == whole_positions.position_data_keys()
    assert set(merged_tracks.positions()) == set(whole_tracks.positions())
    assert _links(merged_tracks) == _links(whole_tracks)  # here exactly; in general only near a join may they differ
    assert len(merged_tracks.divisions()) == len(whole_tracks.divisions())
    assert all(0 < merged_tracks.link_data(*link)["marginal_probability"] <= 1 for link in merged_tracks.links())
    assert _links(load_tracking(folder / "ctc")) == _links(load_tracking(movie / "whole_ctc"))
    assert len(load_tracking(folder / "tracks.csv")) == len(merged_tracks)
    assert (folder / OPEN_LIST).read_text() == (movie / f"whole_{OPEN_LIST}").read_text()


def test_join_at_a_division_keeps_the_lineage() -> None:
    """A mother at the shared time point 2, her daughters after it; a track that ends there in the earlier
    shard and one that starts there in the later shard; positions of the later shard off by 0.2 px."""
    whole = Tracking()
    mother = [Position(10, 10, 0, t) for t in range(3)]
    daughters = [[Position(10 + side * (t - 2), 12, 0, t) for t in range(3, 5)] for side in (-1, 1)]
    ending, starting = [Position(30, 30, 0, t) for t in range(3)], [Position(50, 50, 0, t) for t in range(2, 5)]
    for track in (mother + daughters[0], [mother[-1]] + daughters[1], ending, starting):
        for position in track:
            whole.add_position(position, t_seen=position.t)
        for a, b in zip(track, track[1:]):
            whole.add_link(a, b)

    def part(time_points: range, shift: float) -> Tracking:
        tracking = Tracking()
        for position in whole.positions():
            if position.t in time_points:
                tracking.add_position(position._replace(x=position.x + shift), **whole.position_data(position))
        for a, b in whole.links():
            if a.t in time_points and b.t in time_points:
                tracking.add_link(a._replace(x=a.x + shift), b._replace(x=b.x + shift))
        return tracking

    joined, unmatched = join([part(range(0, 3), 0.0), part(range(2, 5), 0.2)],
                             [Shard(Path("a"), 0, 2), Shard(Path("b"), 2, 4)])
    assert unmatched == 0 and len(joined) == len(whole)
    assert joined.divisions() == [mother[-1]]
    assert len(joined.tracks()) == len(whole.tracks())
    assert joined.future(ending[-1]) == [] and len(joined.track(Position(50, 50, 0, 2))) == 3


def test_merge_refuses_missing_unfinished_or_overlapping_shards(capsys: pytest.CaptureFixture, movie: Path) -> None:
    ini = str(movie / "organoid_tracker.ini")
    folder = _predictions(movie)

    def merge_fails(message: str) -> None:
        assert main(["merge", "--config", ini]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error

    merge_fails("no shards")
    for time_points in ("0:4", "8:11"):
        _run(capsys, movie, "predict", *STEPS, "--time-points", time_points)
    merge_fails("time points 4–8 are in no shard")
    _run(capsys, movie, "predict", *STEPS, "--time-points", "3:8")
    merge_fails("overlap by more than one time point")
    shutil.rmtree(folder / "shard_3-8")
    _run(capsys, movie, "predict", "--steps", "positions", "--time-points", "4:8")
    merge_fails("has no tracks.aut")
    (folder / "shard_4-8" / "positions.aut").unlink()
    merge_fails("unfinished")
    shutil.rmtree(folder / "shard_0-4")
    merge_fails("time points 0–4 of predict dataset 1 are in no shard")


@pytest.mark.parametrize("time_points", ["x", "7:3", "1-5", "2:b"])
def test_bad_time_points(capsys: pytest.CaptureFixture, movie: Path, time_points: str) -> None:
    assert main(["predict", "--config", str(movie / "organoid_tracker.ini"), *STEPS,
                 "--time-points", time_points]) == 2
    error = capsys.readouterr().err
    assert "--time-points" in error and "A:B" in error and error.count("\n") == 1, error


def test_a_range_outside_the_movie_does_nothing(capsys: pytest.CaptureFixture, movie: Path) -> None:
    assert "no time points in --time-points 20:30" in _run(capsys, movie, "predict", *STEPS, "--time-points", "20:30")
    assert not _predictions(movie).exists()
