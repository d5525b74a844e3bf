"""Every image depth and size trains and predicts: Z = 1, 2, 3, 5, 7, 16, 33, x and y that are no multiple of
the U-Net's pooling, an image smaller than a patch; and the Cell Tracking Challenge's Fluo-N3DH-CHO shape (5
slices of 1 µm at 0.202 µm pixels, one TZYX TIFF)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.cli import main
from octrack.networks.detect_model import fitted_patch_shape, patch_fit_note, unet_tile_multiple
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking
from tests.helpers import octrack

TINY = ("epochs = 1\nsteps_per_epoch = 2\nbatch_size = 1\nunet_levels = 3\nunet_filters = 2\npatience = 0\n"
        "augment_rotate = false\n")


def write_blob_movie(folder: Path, shape_zyx: tuple[int, int, int], voxel: VoxelSize, time_points: int = 3,
                     nuclei: int = 3, one_file: bool = False) -> Tracking:
    """Bright Gaussian blobs (about 2 µm wide) at random places, as per-time-point TIFFs or one TZYX TIFF, and
    their centres as ground_truth.aut."""
    rng = np.random.default_rng(sum(shape_zyx))
    tracking = Tracking(voxel)
    grid = np.stack(np.meshgrid(*(np.arange(size) for size in shape_zyx), indexing="ij"), axis=-1)
    scale = np.array(voxel.zyx_um())
    frames = []
    for t in range(time_points):
        frame = rng.normal(100, 5, shape_zyx)
        for _ in range(nuclei):
            centre = rng.uniform(0, 1, 3) * (np.array(shape_zyx) - 1)
            distance = np.linalg.norm((grid - centre) * scale, axis=-1)
            frame += 800 * np.exp(-0.5 * (distance / 1.0) ** 2)
            tracking.add_position(Position(*centre[::-1], t))
        frames.append(frame.astype(np.uint16))
    folder.mkdir(parents=True, exist_ok=True)
    if one_file:
        tifffile.imwrite(folder / "movie.tif", np.stack(frames), photometric="minisblack")
    else:
        for t, frame in enumerate(frames):
            tifffile.imwrite(folder / f"t{t:03}.tif", frame, photometric="minisblack")  # 3 slices: not RGB
    save_tracking(tracking, folder / "ground_truth.aut")
    return tracking


def write_ini(folder: Path, voxel: VoxelSize, images: str, extra: str = "", train: str = TINY) -> Path:
    dataset = (images + f"pixel_size_x_um_1 = {voxel.x_um}\npixel_size_y_um_1 = {voxel.y_um}\n"
               f"pixel_size_z_um_1 = {voxel.z_um}\n")
    ini = folder / "organoid_tracker.ini"
    ini.write_text(f"[DEFAULTS]\noutput_folder = out\n\n[prepare]\n{dataset}tracking_file_1 = ground_truth.aut\n"
                   f"\n[predict]\n{dataset}\n[train_detect]\n{train}{extra}")
    return ini


def train_and_predict(capsys, folder: Path, ini: Path) -> Tracking:
    octrack(capsys, "train-detect", "--config", str(ini))
    octrack(capsys, "predict", "--config", str(ini), "--steps", "positions")
    return load_tracking(folder / "out" / "predictions" / "1" / "positions.csv")


@pytest.mark.parametrize("requested, depth, fitted", [
    ((16, 64, 64), 1, (1, 64, 64)), ((16, 64, 64), 2, (2, 64, 64)), ((16, 64, 64), 3, (3, 64, 64)),
    ((16, 64, 64), 5, (6, 64, 64)), ((16, 64, 64), 7, (8, 64, 64)), ((16, 64, 64), 16, (16, 64, 64)),
    ((33, 60, 61), 40, (40, 64, 64))])
def test_training_patches_fit_the_images_and_the_pooling(requested, depth, fitted):
    assert fitted_patch_shape(requested, depth, 3) == fitted
    multiple = unet_tile_multiple(fitted[0], 3)
    assert all(size % factor == 0 for size, factor in zip(fitted, multiple))


def test_the_note_says_why_the_patch_differs():
    assert patch_fit_note((16, 64, 64), (16, 64, 64), 20) == ""
    assert patch_fit_note((16, 64, 64), (6, 64, 64), 5) == ("the images have 5 slice(s); sizes rounded up to a "
                                                             "multiple of the U-Net's pooling, the extra voxels "
                                                             "zeros the loss ignores: training patches of z, y, x "
                                                             "= 6, 64, 64")
    assert patch_fit_note((16, 64, 64), (1, 64, 64), 1) == ("the images have 1 slice(s): training patches of z, "
                                                             "y, x = 1, 64, 64")


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 7, 16, 33])
def test_every_depth_trains_and_predicts(capsys, tmp_path, depth):
    voxel = VoxelSize(0.5, 0.5, 1.0)
    write_blob_movie(tmp_path, (depth, 19, 21), voxel)  # y and x: no multiple of the pooling (8)
    ini = write_ini(tmp_path, voxel, "images_container_1 = .\nimages_pattern_1 = t{time:03}.tif\n",
                    "patch_shape = 20, 20, 16\n")
    predicted = train_and_predict(capsys, tmp_path, ini)
    assert all(0 <= p.z <= depth - 1 and 0 <= p.y <= 18 and 0 <= p.x <= 20 for p in predicted.positions())


def test_an_image_smaller_than_a_patch_trains_and_predicts(capsys, tmp_path):
    voxel = VoxelSize(0.5, 0.5, 1.0)
    write_blob_movie(tmp_path, (3, 13, 11), voxel, nuclei=1)
    ini = write_ini(tmp_path, voxel, "images_container_1 = .\nimages_pattern_1 = t{time:03}.tif\n",
                    "patch_shape = 30, 30, 9\n")
    assert main(["prepare", "--config", str(ini)]) == 0
    said = capsys.readouterr().err
    assert said.count("patch_shape = 30, 30, 9") == 1
    assert "the images have 3 slice(s); sizes rounded up" in said and "z, y, x = 3, 32, 32" in said
    train_and_predict(capsys, tmp_path, ini)


def test_a_cho_shaped_time_lapse_runs_from_prepare_to_evaluate(capsys, tmp_path):
    """Fluo-N3DH-CHO: 443 × 512 × 5 voxels of 0.202 × 0.202 × 1.0 µm in one TZYX TIFF (here 40 × 48 × 5)."""
    voxel = VoxelSize(0.202, 0.202, 1.0)
    write_blob_movie(tmp_path, (5, 40, 48), voxel, time_points=4, one_file=True)
    ini = write_ini(tmp_path, voxel, "images_container_1 = movie.tif\nimages_axes_1 = TZYX\n")
    octrack(capsys, "prepare", "--config", str(ini))
    predictions = tmp_path / "out" / "predictions" / "1"
    train_and_predict(capsys, tmp_path, ini)
    scores = json.loads(octrack(capsys, "evaluate", "--ground-truth", str(tmp_path / "ground_truth.aut"),
                                "--predicted", str(predictions / "positions.csv"), "--json"))
    assert 0 <= scores["f1"] <= 1
