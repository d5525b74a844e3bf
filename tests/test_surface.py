"""The command line as a user meets it: one axis order (z y x) everywhere, --config only where the ini is read,
init writing only keys that apply (also from an installed package, without the checkout's example), CSV link
columns, and image formats beside TIFF (OME-Zarr through bioio, read lazily) with a clear line for the rest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from octrack.cli import build_parser, main
from octrack.errors import UserError
from octrack.stages.common import parse_zyx
from octrack.tracking import Position, Tracking, load_tracking, save_tracking

ROOT = Path(__file__).resolve().parents[1]


def exit_and_error(capsys: pytest.CaptureFixture, *arguments: str) -> tuple[int, str, str]:
    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("values, whole, expected", [
    (["2", "0.32", "0.32"], False, (2.0, 0.32, 0.32)),
    (["x=0.32", "z=2", "y=0.32"], False, (2.0, 0.32, 0.32)),  # labelled: any order
    (["1", "724", "1024"], True, (1, 724, 1024)),
    (["z=64", "y=1", "x=1"], True, (64, 1, 1)),  # labelled values are taken as they are
])
def test_zyx_values(values, whole, expected):
    assert parse_zyx(values, "--opt", whole=whole) == expected


@pytest.mark.parametrize("values, whole, fix", [
    (["0.32", "0.32", "2"], False, "--opt 2 0.32 0.32"),  # square pixels written x y z
    (["1024", "724", "1"], True, "--opt 1 724 1024"),  # a 2D image written x y z
])
def test_values_that_look_like_x_y_z_stop_with_the_fix(values, whole, fix):
    with pytest.raises(UserError, match="looks like x, y, z") as error:
        parse_zyx(values, "--opt", whole=whole)
    assert fix in str(error.value) and "z=" in str(error.value)


@pytest.mark.parametrize("values", [["1", "2"], ["a", "1", "1"], ["z=1", "y=1", "q=1"], ["0", "1", "1"]])
def test_bad_zyx_values(values):
    with pytest.raises(UserError, match="in the order z y x"):
        parse_zyx(values, "--opt")


def test_every_size_option_is_written_z_y_x():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        for action in command._actions:
            if action.nargs == 3:
                assert action.metavar == ("Z", "Y", "X"), (name, action.option_strings)


def test_config_is_offered_only_where_it_is_read(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    with_config = {name for name, command in commands.items()
                   if any("--config" in action.option_strings for action in command._actions)}
    assert with_config == {"stats", "prepare", "train", "train-detect", "train-divide", "train-link", "predict", "calibrate",
                           "merge"}
    with pytest.raises(SystemExit) as stop:  # argparse's own usage error
        main(["synth", "out", "--config", "x.ini"])
    assert stop.value.code == 2 and "unrecognized arguments: --config" in capsys.readouterr().err


def test_init_writes_only_keys_that_apply(capsys, movie_3d, tmp_path):
    ini = tmp_path / "new.ini"
    assert main(["init", "--images", str(movie_3d / "images"), "--tracking", str(movie_3d / "ground_truth.aut"),
                 "--output", str(ini)]) == 0
    out = capsys.readouterr().out
    assert "z, y, x = 8, 64, 64" in out and "z, y, x = 2, 0.32, 0.32 µm" in out
    text = ini.read_text()
    predict = text[text.index("[predict]"):]
    assert "tracking_file_1" not in predict and "use_for_1" not in text and " = \n" not in text
    assert "octrack init --example" in text and "organoid_tracker.ini.example" not in text
    assert main(["init", "--example"]) == 0
    example = capsys.readouterr().out
    assert example == (ROOT / "organoid_tracker.ini.example").read_text()
    assert "ctc_radius_um" in example


def test_init_runs_from_an_installed_package_without_the_checkout(movie_3d, tmp_path):
    """The package alone (as a wheel installs it), run in a folder without organoid_tracker.ini.example."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "octrack", site / "octrack", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", "import sys, octrack.cli; assert octrack.cli.__file__.startswith("
                             f"{str(site)!r}); sys.exit(octrack.cli.main(sys.argv[1:]))", "init", "--images",
                             str(movie_3d / "images")], cwd=work, env=environment, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "images_container_1" in (work / "organoid_tracker.ini").read_text()


def test_csv_link_columns_have_one_prefix_and_old_files_still_read(tmp_path):
    tracking = Tracking()
    a, b = tracking.add_position(Position(1, 2, 0, 0)), tracking.add_position(Position(2, 2, 0, 1))
    tracking.add_link(a, b, link_confidence=0.9, present_in_original=True)
    save_tracking(tracking, tmp_path / "t.csv")
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert "link_confidence" in header and "link_present_in_original" in header
    assert not any(name.startswith("link_link_") for name in header)
    assert load_tracking(tmp_path / "t.csv").link_data(a, b)["link_confidence"] == 0.9
    (tmp_path / "old.csv").write_text("node_id,t,z,y,x,parent_id,link_link_probability\n0,0,0,2,1,-1,\n"
                                      "1,1,0,2,2,0,0.75\n")
    assert load_tracking(tmp_path / "old.csv").link_data(a, b) == {"link_probability": 0.75}


def test_messages_print_z_y_x(capsys, movie_3d):
    assert main(["prepare", "--config", str(movie_3d / "organoid_tracker.ini")]) == 0
    out = capsys.readouterr().out
    assert "z, y, x = 8, 64, 64" in out and "x,y,z" not in out


# Image formats beside TIFF
def write_ome_zarr(path: Path, data: np.ndarray) -> None:
    """An OME-Zarr (t, c, z, y, x) with voxel size 2 × 0.32 × 0.32 µm and 12 min per time point, one chunk per
    time point and channel, written by bioio-ome-zarr's writer."""
    writers = pytest.importorskip("bioio_ome_zarr.writers", reason="bioio-ome-zarr (the test extra) is not installed")
    writer = writers.OMEZarrWriter(
        str(path), level_shapes=data.shape, dtype=data.dtype, axes_names=["t", "c", "z", "y", "x"],
        axes_types=["time", "channel", "space", "space", "space"],
        axes_units=["minute", None, "micrometer", "micrometer", "micrometer"],
        physical_pixel_size=[12.0, 1.0, 2.0, 0.32, 0.32], chunk_shape=(1, 1, *data.shape[2:]))
    writer.write_full_volume(data)


def test_ome_zarr_time_lapse_is_read_lazily_with_its_voxel_size(tmp_path):
    from octrack.images import open_images

    data = np.random.default_rng(0).integers(0, 1000, (3, 2, 4, 16, 20), dtype=np.uint16)
    write_ome_zarr(tmp_path / "movie.zarr", data)
    images = open_images(tmp_path / "movie.zarr")
    assert images.time_points == [0, 1, 2] and images.channel_count == 2 and images.shape_zyx == (4, 16, 20)
    voxel = images.voxel_size
    assert (voxel.z_um, voxel.y_um, voxel.x_um, voxel.t_minutes) == pytest.approx((2.0, 0.32, 0.32, 12.0))
    chunks = [path for path in (tmp_path / "movie.zarr").rglob("*") if path.is_file() and "c" in path.parts]
    damaged = [path for path in chunks if path.relative_to(tmp_path / "movie.zarr").parts[2] == "2"]
    assert damaged
    for path in damaged:  # time point 2's chunks: reading the others must not touch them
        path.write_bytes(b"not a chunk")
    np.testing.assert_array_equal(images.read(1, [1, 2]), data[1, 0].astype(np.float32) + data[1, 1])
    with pytest.raises(UserError, match="time point 2"):
        images.read(2)


def test_ini_dataset_of_ome_zarr(capsys, tmp_path):
    data = np.random.default_rng(1).integers(0, 1000, (2, 1, 4, 16, 20), dtype=np.uint16)
    write_ome_zarr(tmp_path / "movie.zarr", data)
    assert main(["init", "--images", str(tmp_path / "movie.zarr"), "--output", str(tmp_path / "o.ini")]) == 0
    text = (tmp_path / "o.ini").read_text()
    assert "images_container_1 = movie.zarr" in text and "images_pattern_1" not in text
    assert "time_point_duration_m_1 = 12" in text and "pixel_size_z_um_1 = 2" in text


def test_unsupported_file_gives_the_formats_line_and_exit_2(capsys, tmp_path):
    (tmp_path / "movie.nd2").write_bytes(b"\x00" * 64)
    (tmp_path / "empty").mkdir()
    for images in (tmp_path / "movie.nd2", tmp_path / "empty"):
        code, _, err = exit_and_error(capsys, "init", "--images", str(images), "--output", str(tmp_path / "a.ini"))
        assert code == 2 and err.count("\n") == 1, err
        assert "octrack[formats]" in err and "OME-Zarr" in err and ".nd2" in err, err
