"""Sizes the ini leaves empty follow the data (spacing of the annotated nuclei, voxel size); keys the ini sets win;
prepare says what it chose once; the model folder records it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from octrack.config import Config, DetectSection
from octrack.data_defaults import measure_spacing, with_data_defaults
from octrack.dataset import open_datasets
from octrack.model_folder import load_settings
from octrack.networks.detect_model import DetectSettings
from octrack.synth import generate
from tests.helpers import octrack, set_keys


@pytest.fixture(scope="module")
def _crowded_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crowded_2d")
    generate(folder, two_d=True, seed=5, time_points=4, size_xyz=(96, 96, 1), nuclei=12)
    return folder


@pytest.fixture
def movie_2d(_crowded_2d: Path, tmp_path: Path) -> Path:
    """A 2D time lapse with enough annotated nuclei (over 20) to measure their spacing."""
    return Path(shutil.copytree(_crowded_2d, tmp_path / "movie"))


def chosen(movie: Path) -> tuple[DetectSection, list[str], float]:
    config = Config(movie / "organoid_tracker.ini")
    datasets = open_datasets(config, "prepare")
    section, lines = with_data_defaults(config, config.section_of(DetectSection, "train_detect"), datasets)
    return section, lines, measure_spacing(datasets).typical_um


def test_sizes_follow_the_spacing_of_the_annotated_nuclei(movie_2d):
    section, lines, spacing = chosen(movie_2d)
    assert 4 < spacing < 30  # synthetic nuclei are 8 µm across
    assert section.target_sigma_um == pytest.approx(spacing / 7, rel=0.05)
    assert section.min_distance_um == pytest.approx(0.3 * spacing, rel=0.05)
    assert section.match_distance_um == pytest.approx(0.4 * spacing, rel=0.05)
    assert section.patch_shape == (1, 96, 96)  # 6 spacings are more than the 96 × 96 images
    assert set(section.chosen_from_data) == {"patch_shape", "target_sigma_um", "min_distance_um",
                                             "match_distance_um", "spacing"}
    assert "sizes chosen from the data" in lines[0] and len(lines) == 5  # voxel size 0.32 µm: no note on pixels


def test_keys_the_ini_sets_win(movie_2d):
    ini = movie_2d / "organoid_tracker.ini"
    set_keys(ini, "DEFAULTS", target_sigma_um=2.5)
    set_keys(ini, "train_detect", patch_shape="40, 40, 1")
    section, lines, _ = chosen(movie_2d)
    assert section.target_sigma_um == 2.5 and section.patch_shape == (1, 40, 40)
    assert set(section.chosen_from_data) == {"min_distance_um", "match_distance_um", "spacing"}
    assert not any("target_sigma_um" in line or "patch_shape" in line for line in lines)
    set_keys(ini, "train_detect", min_distance_um=3, match_distance_um=5)
    assert chosen(movie_2d)[1] == []


def test_data_in_pixels_name_the_defaults_that_assume_micrometres(movie_2d):
    ini = movie_2d / "organoid_tracker.ini"
    set_keys(ini, "prepare", pixel_size_x_um_1=1, pixel_size_y_um_1=1, pixel_size_z_um_1=1)
    section, lines, spacing = chosen(movie_2d)
    assert "perhaps pixels" in lines[-1] and "ctc_radius_um" in lines[-1]
    assert section.target_sigma_um == pytest.approx(spacing / 7, rel=0.05)  # in the annotations' pixels


def test_too_few_annotations_keep_the_ini_defaults(movie_2d):
    from octrack.tracking import load_tracking, save_tracking

    tracking = load_tracking(movie_2d / "ground_truth.aut")
    for position in list(tracking.positions()):
        if position.t != 0:
            tracking.remove_position(position)
    save_tracking(tracking, movie_2d / "ground_truth.aut")
    section, lines, _ = chosen(movie_2d)
    assert section.target_sigma_um == 1.5 and section.patch_shape == (16, 64, 64)
    assert "the ini's defaults" in lines[0]


def test_prepare_says_it_once_and_the_model_folder_records_it(capsys, movie_2d):
    ini = movie_2d / "organoid_tracker.ini"
    set_keys(ini, "train_detect", epochs=1, steps_per_epoch=1, batch_size=1, unet_levels=2, unet_filters=2)
    out = octrack(capsys, "train-detect", "--config", str(ini))
    assert out.count("sizes chosen from the data") == 1
    settings = load_settings(movie_2d / "training_output" / "model_detect", DetectSettings)
    section, _, _ = chosen(movie_2d)
    assert settings.chosen_from_data == section.chosen_from_data
    assert settings.target_sigma_um == section.target_sigma_um and settings.patch_shape == section.patch_shape
    assert np.isclose(settings.min_distance_um, section.min_distance_um)
