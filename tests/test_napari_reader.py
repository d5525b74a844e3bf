"""octrack's napari reader without napari: the layer data tuples it returns, with the physical scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from octrack.stages.napari_reader import get_reader
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking

pytest.importorskip("dask", reason="the lazy layers need dask, which napari brings")


def layers_by_type(path: Path) -> dict[str, tuple]:
    reader = get_reader(str(path))
    assert reader is not None, path
    layers = reader(str(path))
    return {kind: (data, options) for data, options, kind in layers}


def dividing() -> Tracking:
    tracking = Tracking(VoxelSize(0.5, 0.5, 2.0, 12.0))
    mother = [tracking.add_position(Position(10 + t, 20, 3, t), division_probability=0.1 * t) for t in range(3)]
    left = [tracking.add_position(Position(14, 18 + t, 3, 3 + t)) for t in range(2)]
    right = [tracking.add_position(Position(14, 24 + t, 4, 3 + t)) for t in range(2)]
    for track in (mother, left, right):
        for a, b in zip(track, track[1:]):
            tracking.add_link(a, b, marginal_probability=0.995)
    tracking.add_link(mother[-1], left[0], marginal_probability=0.6)
    tracking.add_link(mother[-1], right[0], marginal_probability=0.999)
    return tracking


def test_aut_file_opens_as_tracks_with_divisions_and_points_with_features(tmp_path: Path) -> None:
    save_tracking(dividing(), tmp_path / "tracks.aut")
    layers = layers_by_type(tmp_path / "tracks.aut")
    tracks, options = layers["tracks"]
    assert options["scale"] == (1.0, 2.0, 0.5, 0.5)  # t, z, y, x in µm
    assert tracks.shape == (7, 5)  # track id, t, z, y, x
    mother = tracks[tracks[:, 1] == 0][0, 0]
    assert sorted(options["graph"]) == sorted(set(tracks[:, 0]) - {mother})
    assert all(parents == [mother] for parents in options["graph"].values())  # the division
    confidence = options["features"]["marginal_probability"]
    assert confidence.min() == pytest.approx(0.6) and options["color_by"] == "marginal_probability"
    points, options = layers["points"]
    assert points.shape == (7, 4) and options["scale"] == (1.0, 2.0, 0.5, 0.5)
    assert points[points[:, 0] == 1][0].tolist() == [1, 3, 20, 11]
    assert options["features"]["division"].sum() == 1
    assert np.nanmax(options["features"]["division_probability"]) == pytest.approx(0.2)


def test_2d_csv_without_voxel_size_opens_in_pixels_without_z(tmp_path: Path) -> None:
    (tmp_path / "positions.csv").write_text("t,y,x\n0,5,6\n1,7,8\n")
    layers = layers_by_type(tmp_path / "positions.csv")
    assert set(layers) == {"points"}
    points, options = layers["points"]
    assert options["scale"] == (1.0, 1.0, 1.0) and points.tolist() == [[0, 5, 6], [1, 7, 8]]
    (tmp_path / "other.csv").write_text("name,value\na,1\n")
    assert get_reader(str(tmp_path / "other.csv")) is None  # another program's CSV: left to other readers
    assert get_reader(str(tmp_path / "missing.aut")) is None


def test_ctc_folder_opens_labels_and_tracks_with_scale(tmp_path: Path) -> None:
    save_tracking(dividing(), tmp_path / "ctc", image_shape_zyx=(6, 40, 30), radius_um=1.0)
    layers = layers_by_type(tmp_path / "ctc")
    labels, options = layers["labels"]
    assert labels.shape == (5, 6, 40, 30) and options["scale"] == pytest.approx((1.0, 2.0, 0.5, 0.5))
    frame = np.asarray(labels[1])
    assert frame[3, 20, 11] > 0 and frame.max() == frame[3, 20, 11]
    assert layers["tracks"][1]["scale"] == pytest.approx((1.0, 2.0, 0.5, 0.5))


def test_ini_opens_lazy_images_and_predictions_in_um(movie_3d: Path) -> None:
    """The synthetic movie's ini with its ground truth as the [predict] dataset's tracks.aut."""
    folder = movie_3d / "training_output" / "predictions" / "1"
    folder.mkdir(parents=True)
    save_tracking(load_tracking(movie_3d / "ground_truth.aut"), folder / "tracks.aut")
    layers = layers_by_type(movie_3d / "organoid_tracker.ini")
    images, options = layers["image"]
    assert images.shape == (4, 8, 64, 64) and options["scale"] == pytest.approx((1.0, 2.0, 0.32, 0.32))
    assert np.asarray(images[2]).shape == (8, 64, 64)
    assert layers["tracks"][1]["scale"] == options["scale"] and layers["points"][1]["scale"] == options["scale"]


def test_manifest_names_the_reader() -> None:
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(Path(__file__).resolve().parents[1] / "octrack" / "napari.yaml")
    (command,) = manifest.contributions.commands
    assert command.python_name == "octrack.stages.napari_reader:get_reader"
    assert manifest.contributions.readers[0].accepts_directories
