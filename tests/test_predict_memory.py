"""Prediction streams time points: memory holds one time window of frames, never the movie; frames are rescaled
to the model's voxel size once, as they are read."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from octrack import intensity, peaks, tiling
from octrack.config import Config
from octrack.dataset import open_datasets
from octrack.frames import model_frames
from octrack.networks import detect
from octrack.networks.detect_model import predict_centres
from octrack.stages.predict import read_section, run_step
from octrack.time_window import TimeWindow
from octrack.tracking import Tracking, VoxelSize
from tests.helpers import write_noise_movie, write_tiny_detection_model

SIZE_XYZ = (512, 512, 16)
TIME_POINTS = 5


def test_predicting_positions_holds_a_time_window_not_the_movie(tmp_path: Path, monkeypatch) -> None:
    """The positions step of a 5-time-point movie of 4 M voxels per frame, with a time window of 3: its numpy
    allocations peak below the window's frames, the network's output and 0.7 frame more (reading a frame; the
    decoding's two slab buffers), so never near the movie's 5 frames. The fixed-size buffers (tiles, the maximum filter's slabs, the sample
    for the percentiles) are made small here, so that the frames dominate as they do for large images."""
    monkeypatch.setattr(tiling, "MAX_TILE_ACTIVATIONS", 1 << 17)  # tiles of 128 k voxels for the 1-filter model
    monkeypatch.setattr(peaks, "MAXIMA_SLAB_VOXELS", 1 << 16)
    monkeypatch.setattr(intensity, "_MAX_VOXELS_FOR_PERCENTILES", 1 << 16)
    write_noise_movie(tmp_path / "images", SIZE_XYZ, TIME_POINTS)
    write_tiny_detection_model(tmp_path / "model", levels=0, filters=1)
    (tmp_path / "organoid_tracker.ini").write_text(
        "[predict]\nimages_container_1 = images\nimages_pattern_1 = nuclei_t{time:03}.tif\n"
        "pixel_size_x_um_1 = 0.32\npixel_size_y_um_1 = 0.32\npixel_size_z_um_1 = 2\ndetect_model_folder = model\n")
    config = Config(tmp_path / "organoid_tracker.ini")
    dataset, = open_datasets(config, "predict")
    predict = read_section(config)
    detector = detect.load(predict.model_folder("detect"), predict)
    predict_centres(detector.model, [np.zeros((4, 16, 16), np.float32)] * 3, (1, 1, 1), (1, 1, 1), 1)  # warm-up
    tracemalloc.start()
    try:
        run_step("positions", detector, dataset, Tracking(dataset.voxel_size), tmp_path / "predictions")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    frame_bytes = 4 * np.prod(SIZE_XYZ)
    assert peak < (3 + 1 + 0.7) * frame_bytes, f"peak {peak / frame_bytes:.2f} float32 frames"


def test_frames_rescaled_to_the_model_voxel_size_as_they_are_read(tmp_path: Path) -> None:
    """Pixels of 0.16 µm for a model of 0.32 µm: the reader halves x and y once per frame, and the factor maps
    image pixels onto the rescaled frames (first and last voxel onto first and last)."""
    write_noise_movie(tmp_path / "images", (41, 30, 5), 2)
    (tmp_path / "organoid_tracker.ini").write_text(
        "[predict]\nimages_container_1 = images\nimages_pattern_1 = nuclei_t{time:03}.tif\n"
        "pixel_size_x_um_1 = 0.16\npixel_size_y_um_1 = 0.16\npixel_size_z_um_1 = 2\n")
    dataset, = open_datasets(Config(tmp_path / "organoid_tracker.ini"), "predict")
    reader, factor = model_frames(dataset, dataset.voxel_size, VoxelSize(0.32, 0.32, 2.0))
    frames = reader.arrays(0, TimeWindow(1, 1))
    assert [frame.shape for frame in frames] == [(5, 15, 20)] * 3 and frames[0] is frames[1]
    np.testing.assert_allclose(factor, [1.0, 14 / 29, 19 / 40])
    same, ones = model_frames(dataset, dataset.voxel_size, VoxelSize(0.161, 0.16, 2.0))
    assert same.zoom_zyx is None and list(ones) == [1, 1, 1]
