"""A configured dataset: time points and gaps, time windows, annotations in image pixels."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.config import Config
from octrack.dataset import Dataset, open_dataset
from octrack.errors import UserError
from octrack.time_window import TimeWindow
from octrack.tracking import Position, Tracking, save_tracking


def _dataset(folder: Path, times: list[int], shape: tuple[int, ...] = (8, 10), tracking: Tracking | None = None,
             check_all_files: bool = False, **keys: object) -> Dataset:
    """A dataset of a pattern folder with files for `times`, its ini having the given keys (`_1` added)."""
    (folder / "images").mkdir()
    for time in times:
        tifffile.imwrite(folder / "images" / f"t{time}.tif", np.zeros(shape, np.uint16))
    lines = ["[prepare]", "images_container_1 = images", "images_pattern_1 = t{time}.tif"]
    if tracking is not None:
        save_tracking(tracking, folder / "tracking.aut")
        lines.append("tracking_file_1 = tracking.aut")
    lines += [f"{key}_1 = {value}" for key, value in keys.items()]
    (folder / "organoid_tracker.ini").write_text("\n".join(lines) + "\n")
    (config,) = Config(folder / "organoid_tracker.ini").datasets("prepare")
    return open_dataset(config, check_all_files=check_all_files)


# Time windows

def test_window_reaches_beyond_max_time_point(tmp_path: Path) -> None:
    """Training at max_time_point sees the next frame of the movie, as prediction of the whole movie would."""
    dataset = _dataset(tmp_path, list(range(6)), min_time_point=1, max_time_point=3)
    assert dataset.time_points == [1, 2, 3]
    assert dataset.window_time_points(3, TimeWindow(1, 1)) == [2, 3, 4]
    assert dataset.window_time_points(1, TimeWindow(2, 0)) == [0, 0, 1]  # the movie starts at 0: its first frame repeats
    assert dataset.window_time_points(3, TimeWindow(0, 3)) == [3, 4, 5, 5]


def test_window_over_a_gap_uses_the_nearest_frame(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, [0, 1, 2, 4, 5, 8])
    assert dataset.window_time_points(5, TimeWindow(1, 1)) == [4, 5, 5]  # 6 is missing: 5 is nearest
    assert dataset.window_time_points(5, TimeWindow(0, 2)) == [5, 5, 8]  # 7 is missing: 8 is nearest
    assert dataset.window_time_points(4, TimeWindow(1, 1)) == [4, 4, 5]  # 3 is as near to 2 as to 4: …
    assert dataset.window_time_points(2, TimeWindow(0, 1)) == [2, 2]  # … the one nearer to the centre stands in


# Gaps in pattern folders

def test_gaps_are_left_out_of_the_time_points_with_one_warning(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="octrack"):
        dataset = _dataset(tmp_path, [0, 1, 3, 6, 7, 8, 9], max_time_point=8)
    assert dataset.time_points == [0, 1, 3, 6, 7, 8]
    (warning,) = [record.getMessage() for record in caplog.records if record.name == "octrack.dataset"]
    assert "images_pattern_1" in warning and "time point(s) 2, 4-5 " in warning


def test_file_check_is_limited_to_the_configured_time_points(tmp_path: Path) -> None:
    """A damaged file outside min/max_time_point does not stop the work on the others."""
    dataset = _dataset(tmp_path, list(range(4)), check_all_files=True)
    (tmp_path / "images" / "t3.tif").write_bytes(b"damaged")
    config = dataset.config
    with pytest.raises(UserError, match=r"images_pattern_1: cannot read TIFF file .*t3.tif"):
        open_dataset(config, check_all_files=True)
    limited = open_dataset(dataclasses.replace(config, max_time_point=2), check_all_files=True)
    assert limited.time_points == [0, 1, 2]


# Annotations in image pixels

def _tracking(positions: list[Position], offsets: dict[int, tuple[float, float, float]]) -> Tracking:
    tracking = Tracking(image_offsets=offsets)
    for position in positions:
        tracking.add_position(position)
    return tracking


def test_annotated_positions_subtract_the_image_offsets(tmp_path: Path) -> None:
    tracking = _tracking([Position(12, 13, 4, 0), Position(2, 3, 1, 1), Position(5, 5, 1, 1)],
                         {0: (10.0, 10.0, 2.0), 1: (0.0, 0.0, 0.0)})
    dataset = _dataset(tmp_path, [0, 1], shape=(6, 8, 10), tracking=tracking)
    assert dataset.annotated_positions(0) == [Position(2, 3, 2, 0)]
    assert set(dataset.annotated_positions(1)) == {Position(2, 3, 1, 1), Position(5, 5, 1, 1)}
    assert dataset.outside_positions(0) == 0


def test_annotated_positions_outside_the_image_are_counted(tmp_path: Path) -> None:
    """Inside is [0, size) per axis in image pixels, that is after subtracting the offset (here x - 5)."""
    inside = [Position(0, 0, 0, 0), Position(9.9, 7.9, 5.9, 0), Position(2, 1, 1, 0), Position(3, 3, 3, 0),
              Position(4, 4, 4, 0)]  # more than half inside: else the dataset is refused (test_bad_input.py)
    outside = [Position(10, 1, 1, 0), Position(1, 8, 1, 0), Position(1, 1, 6, 0), Position(-0.1, 1, 1, 0),
               Position(12, 1, 1, 0)]
    in_file = [position._replace(x=position.x - 5) for position in inside + outside]  # (-3, 1, 1) and (7, 1, 1)
    dataset = _dataset(tmp_path, [0], shape=(6, 8, 10), tracking=_tracking(in_file, {0: (-5.0, 0.0, 0.0)}))
    assert set(dataset.annotated_positions(0)) == set(inside)
    assert dataset.outside_positions(0) == len(outside)


def test_annotated_positions_of_2d_images_have_z_0(tmp_path: Path) -> None:
    """2D annotations often say z = 1 (a 1-based z, or OrganoidTracker's middle layer)."""
    tracking = _tracking([Position(3, 4, 1, 0), Position(5, 6, 0, 0), Position(30, 4, 1, 0)], {})
    dataset = _dataset(tmp_path, [0], shape=(8, 10), tracking=tracking)
    assert set(dataset.annotated_positions(0)) == {Position(3, 4, 0, 0), Position(5, 6, 0, 0)}
    assert dataset.outside_positions(0) == 1
    assert dataset.annotated_positions(1) == [] and dataset.outside_positions(1) == 0


def test_no_annotations_without_tracking_file(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path, [0])
    assert dataset.annotated_positions(0) == [] and dataset.outside_positions(0) == 0


# Where the annotations are complete (annotated_region_N)

def _annotated_dataset(folder: Path, ctc: bool, **keys: object) -> Dataset:
    """Two nuclei in the middle of a 2D image of 64 × 96 px, annotated as .aut or as CTC ground truth."""
    tracking = _tracking([Position(40, 30, 0, 0), Position(50, 34, 0, 0)], {})
    if not ctc:
        return _dataset(folder, [0], shape=(64, 96), tracking=tracking, **keys)
    written = save_tracking(tracking, folder / "GT", image_shape_zyx=(1, 64, 96), frame_count=1, radius_px=2,
                            ground_truth=True)
    return _dataset(folder, [0], shape=(64, 96), tracking_file=written, **keys)


@pytest.mark.parametrize("ctc, key, covers", [(False, None, False), (True, None, True), (False, "image", True),
                                              (True, "box", False)])
def test_annotations_cover_the_image_for_ctc_ground_truth_or_where_the_ini_says(tmp_path, ctc, key, covers):
    """CTC ground truth marks every nucleus: all of the image is known; an .aut may be annotated in part."""
    keys = {} if key is None else {"annotated_region": key}
    assert _annotated_dataset(tmp_path, ctc, **keys).annotations_cover_image is covers


@pytest.mark.parametrize("region, expected_shape", [("box", (1, 37, 43)), ("image", (1, 64, 96))])
def test_the_detection_crop_is_the_whole_image_where_the_annotations_cover_it(tmp_path, region, expected_shape):
    """Else the cuboid around the annotations plus half a patch: nuclei found outside it are not known wrong."""
    import h5py

    from octrack.frames import FrameReader
    from octrack.networks.detect import DetectionCrops, cache_entries

    dataset = _annotated_dataset(tmp_path, False, annotated_region=region)
    crops = DetectionCrops((1, 32, 32), TimeWindow(0, 0))
    (entry,) = cache_entries(dataset, {0: "train"}, crops, FrameReader(dataset))
    with h5py.File(tmp_path / "cache.h5", "w") as cache:
        entry.build(cache.create_group("entry"))
        assert cache["entry/image"].shape[:3] == expected_shape


def test_newborn_positions_are_the_daughters_in_their_first_time_point(tmp_path: Path) -> None:
    mother, first, second, later = (Position(4, 4, 1, 0), Position(2, 4, 1, 1), Position(6, 4, 1, 1),
                                    Position(2, 5, 1, 2))
    walker = [Position(8, 1, 1, t) for t in range(3)]
    tracking = Tracking()
    for position in (mother, first, second, later, *walker):
        tracking.add_position(position)
    for a, b in ((mother, first), (mother, second), (first, later), (walker[0], walker[1]), (walker[1], walker[2])):
        tracking.add_link(a, b)
    dataset = _dataset(tmp_path, [0, 1, 2], shape=(6, 8, 10), tracking=tracking)
    assert dataset.newborn_positions(0) == [] and dataset.newborn_positions(2) == []
    assert set(dataset.newborn_positions(1)) == {first, second}
