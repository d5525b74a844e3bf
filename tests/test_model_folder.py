"""settings.json through the typed settings classes: the file format stays what earlier versions wrote and read,
values are typed and (z, y, x) inside, unknown keys survive, and a broken file gives one clear line."""

from __future__ import annotations

import json

import pytest

from octrack.calibration import Platt
from octrack.errors import UserError
from octrack.model_folder import SETTINGS_FILE, load_settings
from octrack.networks.detect_model import DetectSettings
from octrack.networks.link import LinkSettings
from octrack.time_window import TimeWindow
from octrack.tracking import VoxelSize

DETECT_JSON = {  # as octrack 0.1.0 wrote it before the typed settings
    "network": "detect", "time_window": [1, 1], "patch_shape_xyz": [64, 48, 16], "voxel_size_um_xyz": [0.32, 0.3, 2.0],
    "normalization": {"method": "percentiles of each whole frame", "low_percentile": 1.0, "high_percentile": 99.8},
    "unet_levels": 3, "unet_filters": 16, "tile_multiple_zyx": [8, 8, 8], "target_sigma_um": 1.5,
    "min_distance_um": 3.0, "peak_threshold": 0.45, "augmentation": {"flip": True}, "mixed_precision": "float32",
    "validation_scores": {"f1": 0.9}, "training": {"best_epoch": 3, "epochs": 4, "validation_loss": 0.01,
                                                   "distribution": "none", "replicas": 1},
    "octrack_version": "0.1.0"}
LINK_JSON = {
    "network": "link", "time_window": [0, 1], "patch_shape_xyz": [32, 32, 8], "voxel_size_um_xyz": [0.32, 0.32, 2.0],
    "encoder_levels": 3, "encoder_filters": 16, "division_multiplier": 10.0,
    "calibration": {"method": "platt", "a": 1.2, "b": -0.3}, "link_candidate_factor": 2.0, "max_partners": 5,
    "displacement_scale_um": 10.0}


def write(folder, values):
    folder.mkdir(exist_ok=True)
    (folder / SETTINGS_FILE).write_text(json.dumps(values))
    return folder


def test_an_earlier_detection_folder_reads_typed_and_writes_back_the_same(tmp_path):
    settings = load_settings(write(tmp_path / "model", DETECT_JSON), DetectSettings)
    assert settings.patch_shape == (16, 48, 64) and settings.voxel_size == VoxelSize(0.32, 0.3, 2.0)
    assert settings.time_window == TimeWindow(1, 1) and settings.tile_multiple_zyx == (8, 8, 8)
    assert settings.training.best_epoch == 3 and settings.peak_threshold == 0.45
    assert settings.to_json() == DETECT_JSON


def test_classifier_calibration_is_typed_and_unknown_keys_survive(tmp_path):
    settings = load_settings(write(tmp_path / "model", {**LINK_JSON, "note": "kept"}), LinkSettings)
    assert settings.calibration == Platt(1.2, -0.3) and settings.link_candidate_factor == 2.0
    assert settings.to_json() == {**LINK_JSON, "note": "kept", "mixed_precision": "float32", "normalization": {},
                                  "augmentation": {}}


def test_values_only_some_models_have_are_left_out_when_absent():
    settings = DetectSettings(network="detect", time_window=TimeWindow(0, 1), patch_shape=(1, 64, 64),
                              voxel_size=VoxelSize(1.0, 1.0, 1.0), unet_levels=2, unet_filters=4,
                              tile_multiple_zyx=(1, 4, 4), min_distance_um=3.0)
    values = settings.to_json()
    assert "training" not in values and "validation_scores" not in values and values["peak_threshold"] is None
    assert values["patch_shape_xyz"] == [64, 64, 1] and values["time_window"] == [0, 1]


@pytest.mark.parametrize("change, message", [
    ({"network": "divide"}, "a divide model, but a detect model is needed"),
    ({"patch_shape_xyz": None}, "no `patch_shape_xyz`"),
    ({"voxel_size_um_xyz": "0.3"}, "`voxel_size_um_xyz` = '0.3' is not valid"),
])
def test_a_wrong_settings_file_is_one_clear_line(tmp_path, change, message):
    values = {key: value for key, value in {**DETECT_JSON, **change}.items() if value is not None}
    with pytest.raises(UserError, match=message):
        load_settings(write(tmp_path / "model", values), DetectSettings)


def test_a_folder_without_settings_says_how_to_get_one(tmp_path):
    with pytest.raises(UserError, match="not a model folder.*octrack train-detect"):
        load_settings(tmp_path, DetectSettings)
