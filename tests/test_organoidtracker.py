"""OrganoidTracker's model folders: their settings typed, OrganoidTracker's conventions (frames, tiles, peaks,
patches, coordinate channels, calibration, candidate links) on small hand-made cases, a made-up OT folder run by
`octrack predict`, clear errors for folders of the wrong kind.

The parity with OrganoidTracker's own predictions on its fixture movie (../shared/data/organoidtracker) and
training its positions model further are in test_organoidtracker_real.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from octrack.cli import main
from octrack.errors import UserError
from octrack.frames import NormalizedFrame
from octrack.model_folder import SETTINGS_FILE, is_organoid_tracker_folder, load_settings
from octrack.networks import NETWORKS
from octrack.networks.detect_model import DetectSettings
from octrack.networks.organoidtracker.classifiers import (_nearest, candidate_pairs, coordinate_channels,
                                                          link_inputs, patches_around)
from octrack.networks.organoidtracker.frames import (eight_bits, normalized, padding_value, patch_start,
                                                     summed_channels, window_time_points)
from octrack.networks.organoidtracker.positions import (TileOutput, reconstruct_volume, tile_corners,
                                                        tile_peaks)
from octrack.networks.organoidtracker.settings import (OTDivisionSettings, OTLinkSettings, OTPositionsSettings,
                                                       probability_data)
from octrack.networks.organoidtracker.training import BLUR_SIGMA_PX, BLUR_TAPS, _blur_yx, ot_target
from octrack.time_window import TimeWindow
from octrack.tracking import Position, VoxelSize, load_tracking
from tests.helpers import set_keys

POSITIONS_JSON = {"type": "positions", "time_window": [0, 1]}
DIVISIONS_JSON = {"type": "divisions", "time_window": [-1, 1], "patch_shape_zyx": [8, 32, 32],
                  "platt_intercept": 3.3473430893642884, "platt_scaling": 4.564658915092234}


def write_settings(folder: Path, values: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SETTINGS_FILE).write_text(json.dumps(values))
    return folder


# settings.json
def test_organoid_tracker_settings_are_typed_and_keep_their_fields(tmp_path):
    folder = write_settings(tmp_path / "division", DIVISIONS_JSON)
    assert is_organoid_tracker_folder(folder) and not is_organoid_tracker_folder(tmp_path / "absent")
    settings = load_settings(folder, OTDivisionSettings)
    assert settings.network == "divide" and settings.ot_type == "divisions"
    assert settings.time_window == TimeWindow(1, 1) and settings.time_window.size == 3  # t-1, t, t+1
    assert settings.patch_shape == (8, 32, 32) and settings.voxel_size is None
    written = settings.to_json()
    assert {key: written[key] for key in DIVISIONS_JSON} == DIVISIONS_JSON  # OrganoidTracker's fields as they were
    assert "patch_shape_xyz" not in written  # OrganoidTracker's link loader would prefer it over patch_shape_zyx

    positions = load_settings(write_settings(tmp_path / "positions", POSITIONS_JSON), OTPositionsSettings)
    assert positions.time_window == TimeWindow(0, 1) and positions.patch_shape is None
    assert positions.peak_threshold is None and "peak_threshold" not in positions.to_json()


def test_the_settings_name_the_registry_networks():
    for kind in (OTPositionsSettings, OTDivisionSettings, OTLinkSettings):
        assert kind.NETWORK in NETWORKS
    assert {NETWORKS[kind.NETWORK].STEP for kind in (OTPositionsSettings, OTDivisionSettings, OTLinkSettings)} \
        == {"positions", "divisions", "links"}


@pytest.mark.parametrize("values, kind, message", [
    (DIVISIONS_JSON, OTPositionsSettings,
     "an OrganoidTracker divisions model, but an octrack detect model or an OrganoidTracker positions model is "
     "needed here"),
    ({"type": "positions", "time_window": [1, -1]}, OTPositionsSettings, "`time_window` = [1, -1] is not valid"),
    (POSITIONS_JSON, DetectSettings, "an OrganoidTracker positions model, but a detect model is needed here"),
    ({**POSITIONS_JSON, "network": "detect"}, DetectSettings,  # as octrack writes OrganoidTracker's models
     "an OrganoidTracker positions model, but a detect model is needed here"),
])
def test_a_folder_of_the_wrong_kind_is_one_clear_line(tmp_path, values, kind, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(write_settings(tmp_path / "model", values), kind)


def test_organoid_tracker_calibration():
    """OrganoidTracker's formula, with log10 odds, equals sigmoid(a + b logit(p)); b may be negative."""
    raw = np.array([0.001, 0.2, 0.5, 0.93], dtype=np.float32)
    for a, b in ((3.347, 4.565), (1.83, -0.666)):
        settings = OTDivisionSettings(ot_type="divisions", network="divide", time_window=TimeWindow(1, 1),
                                      platt_intercept=a, platt_scaling=b)
        log10_odds = settings.log10_odds(raw)
        p = raw.astype(np.float64)
        expected = 1 / (1 + np.exp(-(a + b * np.log(p / (1 - p)))))
        probabilities = [probability_data("division", value)["division_probability"] for value in log10_odds]
        np.testing.assert_allclose(probabilities, expected, rtol=1e-4)  # OrganoidTracker's ratio is float32
        assert probability_data("division", log10_odds[1])["division_penalty"] == pytest.approx(-log10_odds[1])
    uncalibrated = OTLinkSettings(ot_type="links", network="link", time_window=TimeWindow(0, 1))
    assert probability_data("link", uncalibrated.log10_odds(np.array([0.25]))[0])["link_probability"] == \
        pytest.approx(0.25, rel=1e-6)


# Frames
def test_missing_frames_are_filled_from_the_window_earlier_first():
    existing = [0, 1, 3, 4]
    assert window_time_points(existing, 4, TimeWindow(0, 1)) == [4, 4]  # the movie's end
    assert window_time_points(existing, 0, TimeWindow(1, 1)) == [0, 0, 1]  # its start
    assert window_time_points(existing, 1, TimeWindow(0, 1)) == [1, 1]  # a missing file
    assert window_time_points(existing, 3, TimeWindow(2, 2)) == [1, 1, 3, 4, 4]  # t-1 (2) takes t-2 (1), not t
    assert window_time_points([5], 5, TimeWindow(2, 0)) == [5, 5, 5]  # filled in order, from fillings too


def test_normalisation_and_channel_sums_as_organoid_tracker():
    raw = np.array([100, 111, 300, 483, 900], dtype=np.uint16)
    data = normalized(raw, 111.0, 483.0)
    assert data.dtype == np.float32 and data[0] == 0 and data[-1] == 1
    assert data[1] == pytest.approx(0, abs=1e-6) and data[3] == pytest.approx(1, abs=1e-6)
    assert data[2] == (np.float32(300) / np.float32(372.0)) - np.float32(111.0 / 372.0)
    assert padding_value(111.0, 483.0) == 0.0 and padding_value(-10.0, 90.0) == pytest.approx(0.1)

    assert eight_bits(np.array([0, 7, 14], dtype=np.uint16)).tolist() == [0, 127, 255]
    assert eight_bits(np.array([5, 200], dtype=np.uint8)).tolist() == [5, 200]  # 8-bit channels as they are
    two = summed_channels([np.array([0, 100, 200], dtype=np.uint16), np.array([0, 0, 200], dtype=np.uint16)])
    assert two.dtype == np.uint8 and two.tolist() == [0, 127, 255]  # 127 + 0, 255 + 255 saturates
    single = np.array([1, 2], dtype=np.uint16)
    assert summed_channels([single]) is single


def test_patches_start_where_organoid_tracker_starts_them():
    assert patch_start(np.array([4.0, 16.0, 16.0]), (8, 32, 32)) == (0, 0, 0)  # integer: at index (4, 16, 16)
    assert patch_start(np.array([4.5, 16.5, 17.5]), (8, 32, 32)) == (0, 0, 2)  # half to even
    frame = np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6)
    patches = patches_around([NormalizedFrame(frame, 0.0, 1.0)], np.array([[0.0, 0.0, 5.0]]), (2, 4, 4))
    assert patches.shape == (1, 2, 4, 4, 1)
    np.testing.assert_array_equal(patches[0, 1, 2:, :3, 0], frame[0, :2, 3:6])
    assert not patches[0, 0].any() and not patches[0, :, :2].any() and not patches[0, :, :, 3:].any()


# Positions
def test_tiles_over_the_fixture_movie_shape():
    assert tile_corners((16, 128, 128), (16, 384, 384), (1, 32, 32)) == [(-1, -32, -32), (13, -32, -32)]
    assert tile_corners((30, 700, 100), (16, 384, 384), (1, 32, 32)) == [
        (z, y, -32) for z in (-1, 13, 27) for y in (-32, 288, 608)]


def test_reconstructed_volume_interpolates_five_layers():
    output = np.stack([np.full((2, 2), value, dtype=np.float32) for value in (0.0, 6.0, 12.0)])
    volume = reconstruct_volume(output)
    assert volume.shape == (3 + 5 * 2 + 10, 2, 2) and volume.dtype == np.float32
    assert volume[:6].max() == 0 and volume[18:].max() == 0  # the last layer enters only by interpolation
    assert volume[6:18, 0, 0].tolist() == list(np.arange(12.0))


def test_peaks_of_a_tile_in_image_pixels():
    output = np.zeros((16, 96, 96), dtype=np.float32)
    output[5, 40, 50] = 1.0  # reconstructed layer 36 = (5 + 1) · 6: tile z 5, image z 5 - 1
    output[5, 10, 10] = 1.0  # in the buffer (y < 32)
    output[5, 70, 62] = 0.5  # found, but beyond the image's end in x
    found = tile_peaks(TileOutput((-1, -32, -32), output), 0.1, 6, (16, 50, 29))
    assert [(z, y, x) for z, y, x, _ in found] == [(4, 8, 18)]
    assert found[0][3] == pytest.approx(1.0)


# Links
def test_coordinate_channels_and_the_reversed_second_input():
    z, y, x = coordinate_channels((2, 4, 3), np.array([0, 1, -1]), -1)
    np.testing.assert_allclose(y[0, :, 0], [0.75, 0.5, 0.25, 0.0])  # |[-2, -1, 0, 1] - 1| / 4
    np.testing.assert_allclose(x[0, 0, :], np.abs(np.array([-2, -1, 0]) + 1) / 3)  # arange(-3 // 2, 3 // 2)
    np.testing.assert_allclose(z[:, 0, 0], [0.5, 0.0])
    a = np.full((1, 2, 4, 3, 2), 7.0, dtype=np.float32)
    b = np.full((1, 2, 4, 3, 2), 9.0, dtype=np.float32)
    inputs = link_inputs(a, b, np.array([[0, 1, -1]], dtype=np.float32))
    assert inputs["input_1"].shape == (1, 2, 4, 3, 5) and inputs["input_2"].shape == (1, 2, 4, 3, 5)
    assert (inputs["input_1"][..., :2] == 7).all() and (inputs["input_2"][..., 3:] == 9).all()
    z_b, y_b, x_b = coordinate_channels((2, 4, 3), np.array([0, 1, -1]), +1)
    np.testing.assert_array_equal(inputs["input_2"][0, ..., 0], x_b)  # X, Y, Z first, then the frames
    np.testing.assert_array_equal(inputs["input_2"][0, ..., 2], z_b)
    np.testing.assert_array_equal(inputs["input_1"][0, ..., 4], coordinate_channels((2, 4, 3), [0, 1, -1], -1)[2])
    assert inputs["input_distances"].tolist() == [[0, 1, -1]]


def test_candidate_links_by_organoid_tracker_s_rule():
    """Partners within twice the nearest distance, both ways (the boundary: tests/test_organoidtracker_real.py)."""
    voxel = VoxelSize(1.0, 1.0, 1.0)
    sources = [Position(0, 0, 0, 1), Position(3, 0, 0, 1)]
    targets = [Position(1, 0, 0, 2), Position(2, 0, 0, 2), Position(2.01, 0, 0, 2)]
    # forward: 0 → 0, 1 (4 <= 4 · 1); 1 → 1, 2. backward: 0 ← 0, 1; 1 ← 0, 1; 2 ← 1 (source 0: 4.04 > 4 · 0.98)
    assert candidate_pairs(sources, targets, voxel, 2.0).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [1, 2]]
    squared = np.array([[144.0, 100.0, 121.0, 169.0, 196.0, 225.0, 256.0]])  # at most five, nearest first
    assert _nearest(squared, 2.0, 5) == [(0, 1), (0, 2), (0, 0), (0, 3), (0, 4)]
    assert candidate_pairs([], targets, voxel, 2.0).shape == (0, 2)


# Training target
def test_organoid_tracker_s_positions_target():
    target = ot_target(np.array([[8.0, 40.0, 40.0]]), (16, 80, 80))
    assert target.dtype == np.float32 and target.shape == (16, 80, 80)
    z, y, x = np.unravel_index(np.argmax(target), target.shape)
    assert (z, y, x) == (8, 40, 40) and 0.9 < target.max() <= 1.0
    assert target[8, 40, 40 + 13] < 0.1 and target[8, 40, 40 + 20] == 0 and target[12, 40, 40] == 0
    assert target[7, 40, 40] < target[8, 40, 40] and target[8, 40, 46] > 0.5  # flat in z, wide in y and x
    pair = ot_target(np.array([[8.0, 40.0, 34.0], [8.0, 40.0, 46.0]]), (16, 80, 80))
    assert pair[8, 40, 40] < 0.6 * pair[8, 40, 34]  # touching nuclei stay apart: a dip between them
    assert not ot_target(np.zeros((0, 3)), (4, 8, 8)).any()


def blur_kernel() -> np.ndarray:
    taps = np.array(BLUR_TAPS, dtype=np.float64)
    weights = np.exp(-taps ** 2 / (2 * BLUR_SIGMA_PX ** 2))
    return np.outer(weights, weights) / np.outer(weights, weights).sum()


def test_the_target_blur_is_a_same_convolution_with_organoid_tracker_s_kernel():
    """OrganoidTracker blurs its target (and its network its output) with keras.ops.conv(padding="same") and a
    4 × 4 kernel: the numpy blur places the taps as that convolution does."""
    import keras

    volume = np.random.default_rng(0).random((3, 9, 11))
    expected = keras.ops.convert_to_numpy(keras.ops.conv(
        volume[np.newaxis, ..., np.newaxis].astype(np.float32), blur_kernel().reshape(1, 4, 4, 1, 1).astype(np.float32),
        strides=1, padding="same"))[0, ..., 0]
    np.testing.assert_allclose(_blur_yx(volume), expected, atol=1e-6)


# A made-up OrganoidTracker positions folder, run by octrack predict
def write_tiny_positions_folder(folder: Path, depth: int = 16) -> Path:
    """A folder in OrganoidTracker's format whose "network" returns frame t (its output peaks where nuclei do);
    its settings.json also names octrack's network (as an octrack-trained one does, or a user who added it)."""
    import keras

    inputs = keras.Input(shape=(depth, None, None, 2))
    output = keras.layers.Conv3D(1, 1, activation="relu")(inputs)
    model = keras.Model(inputs, output)
    model.layers[-1].set_weights([np.array([1.0, 0.0], dtype=np.float32).reshape(1, 1, 1, 2, 1),
                                  np.zeros(1, dtype=np.float32)])
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    return write_settings(folder, {**POSITIONS_JSON, "network": "detect"})


def test_an_organoid_tracker_folder_runs_as_the_detection_model(capsys, movie_3d):
    ini = movie_3d / "organoid_tracker.ini"
    write_tiny_positions_folder(movie_3d / "ot_positions")
    set_keys(ini, "predict", detect_model_folder="ot_positions", peak_threshold=0.3)
    assert main(["predict", "--config", str(ini), "--steps", "positions"]) == 0
    out, error = capsys.readouterr()
    assert "positions in 4 time points" in out
    assert "an OrganoidTracker positions model, run at the images' own pixel size with peak threshold 0.3 " \
           "([predict]) and peaks at least 6 pixels apart" in error
    found = load_tracking(movie_3d / "training_output" / "predictions" / "1" / "positions.aut")
    assert all(p.x == int(p.x) and p.y == int(p.y) and p.z == int(p.z) for p in found.positions())  # as OT's
    assert all(0 <= p.x < 64 and 0 <= p.y < 64 and 0 <= p.z < 8 for p in found.positions())
    truth = load_tracking(movie_3d / "ground_truth.aut")
    for nucleus in truth.positions():  # the frame's own maxima: every nucleus is among them (and noise too)
        assert min(math.dist((p.x, p.y), (nucleus.x, nucleus.y)) for p in found.positions_at(nucleus.t)) < 6


def test_folders_of_the_wrong_kind_stop_before_any_work(capsys, movie_3d, tmp_path):
    ini = movie_3d / "organoid_tracker.ini"
    write_settings(tmp_path / "division", DIVISIONS_JSON)
    set_keys(ini, "predict", detect_model_folder=str(tmp_path / "division"))
    assert main(["predict", "--config", str(ini), "--steps", "positions"]) == 2
    error = capsys.readouterr().err
    assert "an OrganoidTracker divisions model, but" in error and "Traceback" not in error

    no_patch = {key: value for key, value in DIVISIONS_JSON.items() if key != "patch_shape_zyx"}
    write_settings(tmp_path / "division", no_patch)
    (tmp_path / "division" / "model.keras").write_bytes(b"")
    set_keys(ini, "predict", detect_model_folder=None, divide_model_folder=str(tmp_path / "division"))
    assert main(["predict", "--config", str(ini), "--steps", "divisions"]) == 2
    assert "no patch_shape_zyx" in capsys.readouterr().err

    set_keys(ini, "train_detect", pretrained_model_path=str(tmp_path / "division"))
    assert main(["train-detect", "--config", str(ini)]) == 2
    assert "an OrganoidTracker divisions model, but" in capsys.readouterr().err
