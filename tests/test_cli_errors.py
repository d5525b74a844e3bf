"""Every user mistake gets one clear line naming the file, section and key, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.cli import main
from tests.helpers import prepare_args, refused, set_keys


def run_octrack(capsys: pytest.CaptureFixture, *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err



def test_missing_config_file(capsys, tmp_path):
    refused(capsys, ["prepare", "--config", str(tmp_path / "nope.ini")], "nope.ini", "not found")


def test_missing_images_folder(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", images_container_1="no_such_folder")
    refused(capsys, prepare_args(movie_3d), "[prepare] images_container_1", "no_such_folder",
                      "does not exist")


def test_missing_tracking_file(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", tracking_file_1="gone.aut")
    refused(capsys, prepare_args(movie_3d), "[prepare] tracking_file_1", "gone.aut")


@pytest.mark.parametrize("value", ["abc", "1.5", "-3", "0"])
def test_bad_epochs(capsys, movie_3d, value):
    set_keys(movie_3d / "organoid_tracker.ini", "DEFAULTS", epochs=value)
    refused(capsys, prepare_args(movie_3d), "organoid_tracker.ini [DEFAULTS] epochs", value,
                      "whole number from 1")


def test_unparsable_number_in_dataset_key(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", pixel_size_z_um_1="two")
    refused(capsys, prepare_args(movie_3d), "[prepare] pixel_size_z_um_1", "'two'", "number")


def test_bad_patch_shape(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "train_detect", patch_shape="64, 64")
    refused(capsys, prepare_args(movie_3d), "[train_detect] patch_shape", "x, y, z")


def test_channel_the_images_do_not_have(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", image_channels_1="1,2")
    refused(capsys, prepare_args(movie_3d), "[prepare] image_channels_1", "channel 2",
                      "1 channel")


def test_pattern_that_matches_no_files(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", images_pattern_1="cells_t{time:03}.tif")
    refused(capsys, prepare_args(movie_3d), "[prepare] images_pattern_1", "cells_t")


def test_min_time_point_after_max(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", min_time_point_1=3, max_time_point_1=1)
    refused(capsys, prepare_args(movie_3d), "[prepare] min_time_point_1 = 3",
                      "max_time_point_1 = 1")


def test_time_points_outside_what_exists(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", max_time_point_1=40)
    refused(capsys, prepare_args(movie_3d), "[prepare] max_time_point_1 = 40", "time points 0–3")


def test_images_of_different_shapes(capsys, movie_3d):
    odd = sorted((movie_3d / "images").glob("*.tif"))[2]
    tifffile.imwrite(odd, np.zeros((8, 32, 64), dtype=np.uint16))
    refused(capsys, prepare_args(movie_3d), "[prepare] images_pattern_1", odd.name)


def test_unreadable_tiff(capsys, movie_3d):
    broken = sorted((movie_3d / "images").glob("*.tif"))[0]
    broken.write_bytes(b"this is not a TIFF file")
    refused(capsys, prepare_args(movie_3d), "[prepare] images_pattern_1", broken.name)


def test_wrong_axes_override(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", images_axes_1="TZCYX")
    refused(capsys, prepare_args(movie_3d), "[prepare] images_", "TZCYX")


def test_invalid_axes_letters(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", images_axes_1="ZQYX")
    refused(capsys, prepare_args(movie_3d), "[prepare] images_axes_1", "T, Z, C, Y, X")


def test_bad_use_for(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", use_for_1="testing")
    refused(capsys, prepare_args(movie_3d), "[prepare] use_for_1", "train, validation, both")


def test_unknown_key_warns_with_suggestion(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "DEFAULTS", epocs=5)
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", image_chanels_1=1)
    code, _, err = run_octrack(capsys, *prepare_args(movie_3d))
    assert code == 0, err
    assert "[DEFAULTS] epocs: unknown key, ignored; did you mean epochs?" in err
    assert "[prepare] image_chanels_1: unknown key, ignored; did you mean image_channels_1?" in err


def test_not_an_ini_file(capsys, tmp_path):
    ini = tmp_path / "organoid_tracker.ini"
    ini.write_text("epochs = 5\n")
    refused(capsys, ["prepare", "--config", str(ini)], str(ini), "[section]")


def test_no_datasets(capsys, tmp_path):
    ini = tmp_path / "organoid_tracker.ini"
    ini.write_text("[DEFAULTS]\nepochs = 5\n")
    refused(capsys, ["prepare", "--config", str(ini)], "[prepare]", "images_container_1")


def test_prepare_needs_annotations(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", tracking_file_1=None)
    refused(capsys, prepare_args(movie_3d), "[prepare] tracking_file_1", "annotations")


def test_stats_of_missing_file(capsys, tmp_path):
    refused(capsys, ["stats", str(tmp_path / "missing.aut")], "missing.aut")


def test_convert_to_unknown_format(capsys, movie_3d):
    refused(capsys, ["convert", str(movie_3d / "ground_truth.aut"), str(movie_3d / "out.xyz")],
                      "out.xyz")


def test_init_refuses_to_overwrite(capsys, movie_3d):
    refused(capsys, ["init", "--images", str(movie_3d / "images"),
                               "--output", str(movie_3d / "organoid_tracker.ini")], "exists already", "--force")


def test_console_script_exit_code_and_one_line(movie_3d):
    """The installed entry point, as a user runs it: exit 2 and a single line on stderr."""
    result = subprocess.run([sys.executable, "-m", "octrack", "prepare", "--config",
                             str(movie_3d / "missing.ini")], capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing.ini" in result.stderr
