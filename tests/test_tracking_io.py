"""Readers and writers of tracking files: .aut (OrganoidTracker), CSV and Cell Tracking Challenge folders."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.errors import UserError
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking, tracking_stats
from octrack.tracking.io import format_stats
from tests.helpers import real_data


def _hand_made(two_d: bool) -> Tracking:
    """Two lineages: one with a division, a link that skips time point 5 and metadata; plus a lone position."""
    z = (lambda value: 0.0) if two_d else (lambda value: value)
    tracking = Tracking(VoxelSize(0.5, 0.5, 2.0, 10.0))
    chain = [tracking.add_position(Position(10.25, 10, z(2), 0)), tracking.add_position(Position(11, 10, z(2), 1)),
             tracking.add_position(Position(12, 11, z(2), 2), division_probability=0.8)]
    left = [tracking.add_position(Position(16, 13, z(2), 3)), tracking.add_position(Position(17, 14, z(2), 4)),
            tracking.add_position(Position(19, 15, z(2), 6), name="left end")]
    right = [tracking.add_position(Position(8, 9, z(3), 3)), tracking.add_position(Position(7, 9, z(3), 4))]
    for track in (chain, left, right):
        for earlier, later in zip(track, track[1:]):
            tracking.add_link(earlier, later)
    tracking.add_link(chain[-1], left[0], link_probability=0.75)
    tracking.add_link(chain[-1], right[0])
    tracking.link_data(left[1], left[2])["link_probability"] = 0.5
    tracking.link_data(chain[0], chain[1])["link_probability"] = 0.9
    other = [tracking.add_position(Position(30, 5, z(1), 0)), tracking.add_position(Position(31, 5, z(1), 1))]
    tracking.add_link(*other)
    tracking.add_position(Position(40, 30, z(1), 2), kind="debris", area=12)
    return tracking


def _graph(tracking: Tracking, rounded: bool = False) -> tuple[set, set, set]:
    """Positions, links and divisions, optionally with coordinates rounded to whole pixels (CTC labels)."""
    def key(position: Position) -> Position:
        if not rounded:
            return position
        return Position(*(float(np.rint(value)) for value in position[:3]), position.t)
    return ({key(p) for p in tracking.positions()}, {(key(a), key(b)) for a, b in tracking.links()},
            {key(p) for p in tracking.divisions()})


def _metadata(tracking: Tracking) -> tuple[dict, dict]:
    return ({p: tracking.position_data(p) for p in tracking.positions() if tracking.position_data(p)},
            {(a, b): tracking.link_data(a, b) for a, b in tracking.links() if tracking.link_data(a, b)})


@pytest.mark.parametrize("two_d", [False, True], ids=["3d", "2d"])
def test_round_trips_aut_csv_ctc_keep_positions_links_divisions(tmp_path: Path, two_d: bool) -> None:
    original = _hand_made(two_d)
    from_aut = load_tracking(_saved(original, tmp_path / "a.aut"))
    assert _graph(from_aut) == _graph(original)
    assert _metadata(from_aut) == _metadata(original)
    assert from_aut.voxel_size == original.voxel_size

    from_csv = load_tracking(_saved(from_aut, tmp_path / "a.csv"), voxel_size=original.voxel_size)
    assert _graph(from_csv) == _graph(original)
    assert _metadata(from_csv) == _metadata(original)

    shape = (40, 50) if two_d else (6, 40, 50)
    from_ctc = load_tracking(_saved(from_csv, tmp_path / "ctc", radius_um=1.5, image_shape_zyx=shape))
    assert _graph(from_ctc, rounded=True) == _graph(original, rounded=True)
    assert from_ctc.voxel_size is not None
    assert from_ctc.voxel_size.x_um == pytest.approx(0.5) and from_ctc.voxel_size.z_um == pytest.approx(2.0)

    again = load_tracking(_saved(from_ctc, tmp_path / "b.aut"))
    assert _graph(again) == _graph(from_ctc)
    assert tracking_stats(again)["divisions"] == 1


def _saved(tracking: Tracking, path: Path, **options: object) -> Path:
    save_tracking(tracking, path, **options)
    return path


def test_aut_is_organoid_tracker_v2(tmp_path: Path) -> None:
    save_tracking(_hand_made(two_d=False), tmp_path / "a.aut")
    data = json.loads((tmp_path / "a.aut").read_text())
    assert data["version"] == "v2"
    assert data["image_resolution"] == {"x_um": 0.5, "y_um": 0.5, "z_um": 2.0, "t_m": 10.0}
    time_point_2 = next(entry for entry in data["positions"] if entry["time_point"] == 2)
    assert time_point_2["position_meta"]["division_probability"].count(0.8) == 1
    tracks = data["tracks"]
    assert all(len(track["coords_xyz_px"]) == len(set(map(tuple, track["coords_xyz_px"]))) for track in tracks)
    daughters = [track for track in tracks if "coords_xyz_px_before" in track]
    assert len(daughters) == 2 and all(track["coords_xyz_px_before"] == [[12, 11, 2]] for track in daughters)
    assert [track["link_meta_before"] for track in daughters if "link_meta_before" in track] == \
        [{"link_probability": [0.75, None]}]  # one longer than coords_xyz_px_before, as OrganoidTracker writes it
    # OrganoidTracker cannot hold links that skip time points: they are kept apart
    assert data["octrack_gap_links"] == [{"source_xyz_px": [17, 14, 2], "source_time_point": 4,
                                          "target_xyz_px": [19, 15, 2], "target_time_point": 6,
                                          "link_meta": {"link_probability": 0.5}}]


def test_reads_aut_v1(tmp_path: Path) -> None:
    def node(x: float, y: float, z: float, t: int) -> dict:
        return {"x": x, "y": y, "z": z, "_time_point_number": t}
    v1 = {"version": "v1",
          "positions": {"0": [[1.0, 2.0, 3.0], [20.0, 20.0, 3.0]], "1": [[1.5, 2.0, 3.0]],
                        "2": [[1.0, 1.0, 3.0], [3.0, 3.0, 3.0]]},
          "links": {"directed": False, "multigraph": False, "graph": {},
                    "nodes": [{"id": node(1.0, 2.0, 3.0, 0)},
                              {"id": node(1.5, 2.0, 3.0, 1), "division_probability": 0.9},
                              {"id": node(1.0, 1.0, 3.0, 2)}, {"id": node(3.0, 3.0, 3.0, 2)},
                              {"id": node(20.0, 20.0, 3.0, 0), "ending": "dead"}],
                    "links": [{"source": node(1.0, 2.0, 3.0, 0), "target": node(1.5, 2.0, 3.0, 1),
                               "__lineage_name": "A", "link_probability": 0.99},
                              {"source": node(1.5, 2.0, 3.0, 1), "target": node(1.0, 1.0, 3.0, 2)},
                              {"source": node(1.5, 2.0, 3.0, 1), "target": node(3.0, 3.0, 3.0, 2)}]},
          "image_resolution": {"x_um": 0.32, "y_um": 0.32, "z_um": 2.0, "t_m": 12.0}}
    (tmp_path / "old.aut").write_text(json.dumps(v1))
    tracking = load_tracking(tmp_path / "old.aut")
    mother = Position(1.5, 2.0, 3.0, 1)
    assert len(tracking) == 5 and tracking.link_count() == 3 and tracking.divisions() == [mother]
    assert tracking.position_data(mother) == {"division_probability": 0.9}
    assert tracking.position_data(Position(20.0, 20.0, 3.0, 0)) == {"ending": "dead"}
    assert tracking.link_data(Position(1.0, 2.0, 3.0, 0), mother) == {"link_probability": 0.99}
    assert tracking.voxel_size == VoxelSize(0.32, 0.32, 2.0, 12.0)


def test_aut_keeps_image_offsets(tmp_path: Path) -> None:
    """OrganoidTracker's image offsets: image pixel = position - offset of the time point."""
    tracking = _hand_made(two_d=False)
    tracking.image_offsets = {0: (10.0, -2.5, 1.0), 3: (0.0, 0.0, 0.0)}
    save_tracking(tracking, tmp_path / "a.aut")
    data = json.loads((tmp_path / "a.aut").read_text())
    assert data["image_offsets"] == [{"x": 10.0, "y": -2.5, "z": 1.0, "_time_point_number": 0},
                                     {"x": 0.0, "y": 0.0, "z": 0.0, "_time_point_number": 3}]
    again = load_tracking(tmp_path / "a.aut")
    assert again.image_offsets == tracking.image_offsets
    assert _graph(again) == _graph(tracking)  # positions stay as written
    assert again.image_position(Position(10.25, 10, 2, 0)) == Position(0.25, 12.5, 1, 0)
    assert again.image_position(Position(8, 9, 3, 4)) == Position(8, 9, 3, 4)  # no offset at time point 4


def test_aut_v1_image_offsets(tmp_path: Path) -> None:
    v1 = {"version": "v1", "positions": {"2": [[15.0, 12.0, 3.0]]},
          "image_offsets": [{"x": 5, "y": 2, "z": -1, "_time_point_number": 2}, {"x": 1, "y": 1, "z": 1}]}
    (tmp_path / "old.aut").write_text(json.dumps(v1))
    tracking = load_tracking(tmp_path / "old.aut")
    assert tracking.image_offsets == {2: (5.0, 2.0, -1.0)}  # OrganoidTracker applies none without time point
    assert tracking.image_position(Position(15, 12, 3, 2)) == Position(10, 10, 4, 2)


def test_csv_and_ctc_warn_that_they_drop_image_offsets(tmp_path: Path) -> None:
    tracking = _hand_made(two_d=False)
    tracking.image_offsets = {0: (0.0, 0.0, 0.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_tracking(tracking, tmp_path / "zero.csv")  # nothing is lost: no warning
    tracking.image_offsets[2] = (1.0, 0.0, 0.0)
    for path in (tmp_path / "a.csv", tmp_path / "ctc"):
        with pytest.warns(UserWarning, match=r"only .aut and .geff hold image offsets; the offsets of 1 time "
                                             r"point\(s\)"):
            save_tracking(tracking, path, image_shape_zyx=(6, 40, 50))
        assert load_tracking(path).image_offsets == {}


def test_ctc_reads_any_padding_tra_subfolder_and_gaps(tmp_path: Path) -> None:
    tra = tmp_path / "01_GT" / "TRA"
    tra.mkdir(parents=True)
    frames = np.zeros((4, 20, 20), dtype=np.uint16)
    frames[0, 4:7, 4:7] = 1  # label 1 at t=0 and t=2 (gap), divides into 2 and 3 at t=3
    frames[2, 5:8, 5:8] = 1
    frames[3, 2, 2] = 2
    frames[3, 10:12, 10:12] = 3
    frames[1, 15, 15] = 4
    for t, frame in enumerate(frames):
        tifffile.imwrite(tra / f"man_track{t:02d}.tif", frame)
    (tra / "man_track.txt").write_text("1 0 2 0\n2 3 3 1\n3 3 3 1\n4 1 1 0\n")
    tracking = load_tracking(tmp_path / "01_GT")
    assert _graph(tracking) == (
        {Position(5, 5, 0, 0), Position(6, 6, 0, 2), Position(2, 2, 0, 3), Position(10.5, 10.5, 0, 3),
         Position(15, 15, 0, 1)},
        {(Position(5, 5, 0, 0), Position(6, 6, 0, 2)), (Position(6, 6, 0, 2), Position(2, 2, 0, 3)),
         (Position(6, 6, 0, 2), Position(10.5, 10.5, 0, 3))},
        {Position(6, 6, 0, 2)})
    assert load_tracking(tra / "man_track.txt").link_count() == 3
    assert tracking.voxel_size is None


@pytest.mark.parametrize("options, expected", [
    ({"resolution": (72, 72), "resolutionunit": "INCH"}, None),  # a default, no calibration
    ({"resolution": (2e4, 2e4), "resolutionunit": "CENTIMETER"}, VoxelSize(0.5, 0.5, 0.5)),  # 2D: z = x
    ({"resolution": (2, 2), "imagej": True, "metadata": {"unit": "um", "spacing": 3.0}}, VoxelSize(0.5, 0.5, 3.0)),
])
def test_ctc_voxel_size_follows_the_rules_of_images(tmp_path: Path, options: dict, expected: VoxelSize | None) -> None:
    frame = np.zeros((10, 10), np.uint16)
    frame[4:6, 4:6] = 1
    tifffile.imwrite(tmp_path / "mask000.tif", frame, **options)
    (tmp_path / "res_track.txt").write_text("1 0 0 0\n")
    assert load_tracking(tmp_path).voxel_size == expected


def test_ctc_painting_keeps_touching_and_border_positions(tmp_path: Path) -> None:
    tracking = Tracking()
    positions = [Position(0, 0, 0, 0), Position(3, 0, 0, 0), Position(5, 4, 0, 0), Position(19, 9, 0, 0)]
    for position in positions:
        tracking.add_position(position)
    save_tracking(tracking, tmp_path / "out", image_shape_zyx=(10, 20), radius_px=4, ground_truth=True)
    assert sorted(p.name for p in (tmp_path / "out" / "TRA").iterdir()) == ["man_track.txt", "man_track000.tif"]
    assert set(load_tracking(tmp_path / "out").positions()) == set(positions)


def test_ctc_writes_3d_frames_with_label_per_track(tmp_path: Path) -> None:
    tracking = _hand_made(two_d=False)
    save_tracking(tracking, tmp_path / "res", radius_px=1, image_shape_zyx=(6, 40, 50))
    mask = tifffile.imread(tmp_path / "res" / "mask000.tif")
    assert mask.dtype == np.uint16 and mask.shape == (6, 40, 50)
    lines = (tmp_path / "res" / "res_track.txt").read_text().splitlines()
    # the link that skips time point 5 starts a label of its own (label 5), whose parent is the part before it
    assert sorted(line.split()[1:] for line in lines) == sorted(
        [["0", "2", "0"], ["3", "4", "1"], ["6", "6", "4"], ["3", "4", "1"], ["0", "1", "0"], ["2", "2", "0"]])
    assert not tifffile.imread(tmp_path / "res" / "mask005.tif").any()  # time points without positions too


def test_csv_without_parents_or_ids(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("t,y,x,score\n0,1.5,2,0.3\n1,4,5,high\n")
    tracking = load_tracking(tmp_path / "p.csv")
    assert set(tracking.positions()) == {Position(2, 1.5, 0, 0), Position(5, 4, 0, 1)}
    assert tracking.position_data(Position(5, 4, 0, 1)) == {"score": "high"}
    assert tracking.link_count() == 0


def test_stats(tmp_path: Path) -> None:
    stats = tracking_stats(_hand_made(two_d=False))
    assert stats["time_points"] == 6 and stats["first_time_point"] == 0 and stats["last_time_point"] == 6
    assert stats["positions"] == 11 and stats["positions_per_time_point"][3] == 2
    assert stats["links"] == 8 and stats["tracks"] == 5 and stats["divisions"] == 1
    assert stats["track_length"] == {"min": 1, "median": 2, "mean": pytest.approx(2.4), "max": 4}
    assert stats["voxel_size"] == {"x_um": 0.5, "y_um": 0.5, "z_um": 2.0, "t_minutes": 10.0}
    text = format_stats(stats)
    assert "Divisions:    1" in text and "Positions:    11" in text
    assert tracking_stats(Tracking())["track_length"] is None and format_stats(tracking_stats(Tracking()))


@pytest.mark.parametrize("name, content, fragment", [
    ("bad.aut", "{not json", "not valid JSON"),
    ("empty.aut", "{}", "no positions or links"),
    ("cols.csv", "node_id,t,z,y\n0,0,1,1\n", "no column x"),
    ("parent.csv", "node_id,t,z,y,x,parent_id\n0,0,1,1,1,7\n", "parent_id 7"),
    ("values.csv", "t,y,x\n0,one,1\n", "line 2"),
    ("thing.xyz", "", "unknown tracking format"),
])
def test_bad_files_raise_user_error_naming_the_file(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(UserError) as error:
        load_tracking(tmp_path / name)
    _assert_one_line_naming(error.value, name, fragment)


def test_bad_paths_raise_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        load_tracking(tmp_path / "missing.aut")
    _assert_one_line_naming(error.value, "missing.aut", "not found")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as error:
        load_tracking(tmp_path / "empty")
    _assert_one_line_naming(error.value, "empty", "no man_track.txt")
    (tmp_path / "ctc").mkdir()
    tifffile.imwrite(tmp_path / "ctc" / "mask000.tif", np.zeros((4, 4), np.uint16))
    (tmp_path / "ctc" / "res_track.txt").write_text("1 0 0\n")
    with pytest.raises(UserError) as error:
        load_tracking(tmp_path / "ctc")
    _assert_one_line_naming(error.value, "res_track.txt", "line 1")
    with pytest.raises(UserError) as error:
        save_tracking(_hand_made(two_d=True), tmp_path / "out.xyz")
    _assert_one_line_naming(error.value, "out.xyz", "unknown tracking format")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "t000.tif").write_bytes(b"")
    with pytest.raises(UserError) as error:
        save_tracking(_hand_made(two_d=True), tmp_path / "images")
    _assert_one_line_naming(error.value, "images", "holds other files")


def _assert_one_line_naming(error: UserError, name: str, fragment: str) -> None:
    message = str(error)
    assert name in message and fragment in message and "\n" not in message


# Real data in ../shared/data
def test_breast_cancer_ground_truth_loads() -> None:
    tracking = load_tracking(real_data("breast-cancer-2d/01_GT/TRA"))
    stats = tracking_stats(tracking)
    assert stats["time_points"] == 12 and stats["positions_per_time_point"][0] == 218
    assert stats["tracks"] == 386 and stats["divisions"] == 34


def test_celegans_lineage_csv_loads() -> None:
    tracking = load_tracking(real_data("celegans-lineage/ce01_t000-119.csv"))
    assert len(tracking) == 5552 and len(tracking.divisions()) == 112


def test_breast_cancer_round_trips(tmp_path: Path) -> None:
    original = load_tracking(real_data("breast-cancer-2d/01_GT/TRA"))
    for path in (tmp_path / "bc.aut", tmp_path / "bc.csv"):
        assert _graph(load_tracking(_saved(original, path))) == _graph(original)
    from_ctc = load_tracking(_saved(original, tmp_path / "bc_ctc", image_shape_zyx=(724, 1024), radius_px=3))
    assert _graph(from_ctc, rounded=True) == _graph(original, rounded=True)
    assert len(from_ctc) == len(original) and len(from_ctc.divisions()) == 34
    for time_point in original.time_points():
        before = np.array([p[:3] for p in original.positions_at(time_point)])
        after = np.array([p[:3] for p in from_ctc.positions_at(time_point)])
        assert np.abs(before[:, None] - after[None]).max(axis=2).min(axis=1).max() <= 0.5
