"""Bad input never crashes octrack and never fools it (issue 16): a sample of the generated cases of
scripts/fuzz_bad_input.py (every kind of input, in this process and as real processes), and one test per case
of the issue's probe list.

A refusal is exit code 2 with exactly one line on stderr, `octrack: error: ...`, naming the file or key, no
traceback and nothing left behind; legal but odd input gives the right result, with a warning where octrack
changed something (never silently wrong)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.cli import main
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking
from tests.helpers import counted_calls, prepare_args, refused, set_keys, write_tiny_detection_model

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_bad_input.py"
SEEDS_PER_GENERATOR = 2


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("octrack_fuzz_bad_input", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def template(fuzz, tmp_path_factory):
    return fuzz.make_movie(tmp_path_factory.mktemp("fuzz") / "template")


@pytest.mark.parametrize("seed", range(SEEDS_PER_GENERATOR))
@pytest.mark.parametrize("generator", ["ini_value", "ini_structure", "damaged_tiff", "odd_tiff", "all_non_finite",
                                       "hyperstack", "broken_aut", "broken_csv", "broken_ctc", "positions_outside",
                                       "command_line", "other_options"])
def test_generated_bad_input(fuzz, template, tmp_path, generator, seed):
    outcome = fuzz.run_case(generator, 1000 + seed, template, tmp_path)
    assert outcome.problem is None, f"{outcome.case.name}: {outcome.problem}; stderr: {outcome.lines}"


@pytest.mark.parametrize("generator, seed", [("broken_aut", 3), ("damaged_tiff", 2)])
def test_generated_bad_input_in_a_real_process(fuzz, template, tmp_path, generator, seed):
    outcome = fuzz.run_case(generator, seed, template, tmp_path, in_subprocess=True)
    assert outcome.case.expect == fuzz.REFUSED
    assert outcome.problem is None, f"{outcome.case.name}: {outcome.problem}; stderr: {outcome.lines}"


def test_the_generators_cover_the_issues_kinds(fuzz):
    assert set(fuzz.GENERATORS) == {"ini_value", "ini_structure", "damaged_tiff", "odd_tiff", "all_non_finite",
                                    "hyperstack", "broken_aut", "broken_csv", "broken_ctc", "positions_outside",
                                    "command_line", "other_options"}


# One test per case of the probe list

def frame(movie: Path, time_point: int) -> Path:
    return movie / "images" / f"nuclei_t{time_point:03}.tif"


def test_nan_and_inf_pixels_are_replaced_with_a_warning_and_the_cache_is_finite(capsys, movie_3d, fuzz):
    pixels = tifffile.imread(frame(movie_3d, 1)).astype(np.float32)
    pixels[0, :3, :3], pixels[1, 5, 5], pixels[2, 6, 6] = np.nan, np.inf, -np.inf
    tifffile.imwrite(frame(movie_3d, 1), pixels)
    assert main([str(argument) for argument in prepare_args(movie_3d)]) == 0
    assert "nuclei_t001.tif (time point 1): 11 pixel(s) are NaN or inf" in capsys.readouterr().err
    assert fuzz._cache_is_finite(movie_3d) is None


def test_a_frame_of_nan_is_refused_naming_its_file(capsys, movie_3d):
    tifffile.imwrite(frame(movie_3d, 2), np.full((8, 64, 64), np.nan, np.float32))
    refused(capsys, prepare_args(movie_3d), "nuclei_t002.tif", "no pixel has a finite value")


@pytest.mark.parametrize("form", ["imagej", "ome"])
def test_a_truncated_hyperstack_is_refused_not_read_as_one_frame(capsys, movie_3d, form):
    movie = np.stack([tifffile.imread(frame(movie_3d, t)) for t in range(4)])
    path = movie_3d / "movie.tif"
    tifffile.imwrite(path, movie, imagej=form == "imagej", ome=form == "ome", metadata={"axes": "TZYX"})
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", images_container_1="movie.tif", images_pattern_1=None)
    refused(capsys, prepare_args(movie_3d), "movie.tif", "truncated")


def test_tifffile_log_lines_are_ours(capsys, movie_3d):
    """tifffile logs (and carries on) where a file is damaged: its lines do not reach the user, our one does."""
    data = frame(movie_3d, 2).read_bytes()
    frame(movie_3d, 2).write_bytes(data[:len(data) // 2])
    refused(capsys, prepare_args(movie_3d), "nuclei_t002.tif", "truncated or damaged")


@pytest.mark.parametrize("damage", ["truncated", "2D"])
def test_a_damaged_first_file_is_blamed_not_its_healthy_neighbour(capsys, movie_3d, damage):
    if damage == "truncated":
        data = frame(movie_3d, 0).read_bytes()
        frame(movie_3d, 0).write_bytes(data[:len(data) * 3 // 4])
    else:
        tifffile.imwrite(frame(movie_3d, 0), np.zeros((64, 64), np.uint16))
    message = refused(capsys, prepare_args(movie_3d), "nuclei_t000.tif")
    assert message.index("nuclei_t000.tif") < message.index("nuclei_t001.tif") if "t001" in message else True
    assert "image file" not in message or message.split("image file ")[1].startswith(str(frame(movie_3d, 0)))


def _ctc(movie: Path) -> Path:
    assert main(["convert", str(movie / "ground_truth.csv"), str(movie / "ctc"), "--shape", "8", "64", "64",
                 "--ground-truth"]) == 0
    return movie / "ctc" / "TRA"


def test_a_missing_ctc_mask_is_refused_naming_it(capsys, movie_3d):
    folder = _ctc(movie_3d)
    (folder / "man_track002.tif").unlink()
    capsys.readouterr()
    refused(capsys, ["stats", folder], "man_track002.tif", "missing")


def test_a_truncated_ctc_mask_is_refused_naming_it(capsys, movie_3d):
    folder = _ctc(movie_3d)
    mask = folder / "man_track001.tif"
    mask.write_bytes(mask.read_bytes()[:mask.stat().st_size // 3])
    capsys.readouterr()
    refused(capsys, ["stats", folder], "man_track001.tif")


@pytest.mark.parametrize("edit, fragment", [
    (lambda rows: rows[1:], "not in the track file"),
    (lambda rows: rows + [[str(len(rows) + 5), "0", "1", "0"]], "no label image"),
    (lambda rows: [[rows[0][0], rows[0][1], "1", rows[0][3]]] + rows[1:], "runs from time point 0 to 1"),
    (lambda rows: rows + [rows[0]], "listed twice"),
    (lambda rows: [[*rows[0][:3], "77"]] + rows[1:], "parent 77"),
])
def test_a_track_file_that_contradicts_its_masks_is_refused(capsys, movie_3d, edit, fragment):
    folder = _ctc(movie_3d)
    track_file = folder / "man_track.txt"
    rows = [line.split() for line in track_file.read_text().splitlines()]
    track_file.write_text("".join(" ".join(row) + "\n" for row in edit(rows)))
    capsys.readouterr()
    refused(capsys, ["stats", folder], "man_track.txt", fragment)


def test_evaluate_uses_the_predicted_files_voxel_size(capsys, movie_3d, tmp_path):
    """The same nuclei written at half the resolution: equal in µm, so a perfect score (was F1 0.225)."""
    truth = load_tracking(movie_3d / "ground_truth.aut")
    halved = Tracking(VoxelSize(0.64, 0.64, 4.0, 12.0))
    moved = {position: halved.add_position(position._replace(x=position.x / 2, y=position.y / 2,
                                                              z=position.z / 2)) for position in truth.positions()}
    for earlier, later in truth.links():
        halved.add_link(moved[earlier], moved[later])
    save_tracking(halved, tmp_path / "halved.aut")
    assert main(["evaluate", "--ground-truth", str(movie_3d / "ground_truth.aut"), "--predicted",
                 str(tmp_path / "halved.aut"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["f1"] == 1.0
    assert "halved.aut: its voxel size (z, y, x = 4, 0.64, 0.64 µm) differs" in captured.err


def test_axes_metadata_that_make_a_3d_movie_2d_are_refused(capsys, movie_3d):
    """ImageJ metadata saying T, Y, X for a T × Z stack: read as 2D, the annotations would all go to z = 0."""
    movie = np.stack([tifffile.imread(frame(movie_3d, t)) for t in range(4)])
    tifffile.imwrite(movie_3d / "movie.tif", movie.reshape(32, 64, 64), imagej=True, metadata={"axes": "TYX"})
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", images_container_1="movie.tif", images_pattern_1=None)
    refused(capsys, prepare_args(movie_3d), "tracking_file_1", "depths", "images_axes_1")


def test_a_gap_in_dataset_numbers_names_the_key(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", images_container_3="images")
    refused(capsys, prepare_args(movie_3d), "[prepare] images_container_3", "no images_container_2")


@pytest.mark.parametrize("value", ["-0.32", "nan", "inf", "0"])
def test_bad_voxel_sizes_in_the_ini(capsys, movie_3d, value):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", pixel_size_y_um_1=value)
    refused(capsys, prepare_args(movie_3d), "pixel_size_y_um_1", "finite number above 0")


@pytest.mark.parametrize("value", [-0.32, float("nan"), float("inf")])
def test_bad_voxel_sizes_in_an_aut_file(capsys, movie_3d, value):
    data = json.loads((movie_3d / "ground_truth.aut").read_text())
    data["image_resolution"]["x_um"] = value
    (movie_3d / "bad.aut").write_text(json.dumps(data))
    refused(capsys, ["stats", movie_3d / "bad.aut"], "bad.aut", "voxel size in x")


def test_a_fractional_aut_time_point_is_refused(capsys, movie_3d):
    data = json.loads((movie_3d / "ground_truth.aut").read_text())
    data["positions"][1]["time_point"] = 1.5
    (movie_3d / "bad.aut").write_text(json.dumps(data))
    refused(capsys, ["stats", movie_3d / "bad.aut"], "bad.aut", "1.5 is not a whole number")


@pytest.mark.parametrize("suffix", [".aut", ".csv"])
def test_a_parent_with_three_children_is_refused(capsys, tmp_path, suffix):
    tracking = Tracking()
    mother = tracking.add_position(Position(10, 10, 0, 0))
    for offset in range(3):
        tracking.add_link(mother, tracking.add_position(Position(5 + 5 * offset, 12, 0, 1)))
    save_tracking(tracking, tmp_path / f"three{suffix}")
    refused(capsys, ["evaluate", "--ground-truth", tmp_path / f"three{suffix}", "--predicted", tmp_path /
                     f"three{suffix}"], f"three{suffix}", "3 links to later positions")
    assert main(["stats", str(tmp_path / f"three{suffix}")]) == 0  # a file of candidate links may hold it


def test_annotations_with_a_parent_of_three_children_are_refused(capsys, movie_3d):
    tracking = load_tracking(movie_3d / "ground_truth.aut")
    mother = tracking.positions_at(0)[0]
    for offset in range(3):
        tracking.add_link(mother, tracking.add_position(mother._replace(x=mother.x + offset + 1, t=1)))
    save_tracking(tracking, movie_3d / "three.aut")
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", tracking_file_1="three.aut")
    refused(capsys, prepare_args(movie_3d), "tracking_file_1", "three.aut", "links to later positions")


@pytest.mark.parametrize("section, key, value", [
    ("train_detect", "batch_size", "1e23"), ("train_detect", "batch_size", str(10 ** 23)),
    ("train_detect", "unet_levels", "40"), ("train_detect", "patch_shape", "100000, 100000, 16"),
    ("train_detect", "augment_scale", "1, inf"), ("train_detect", "min_distance_um", "inf"),
    ("train_detect", "learning_rate", "nan"), ("train_link", "encoder_filters", "100000"),
    ("predict", "ctc_radius_px", "1e9"), ("DEFAULTS", "epochs", "1e9"),
])
def test_inf_and_huge_ini_values_are_refused_with_the_bound(capsys, movie_3d, section, key, value):
    set_keys(movie_3d / "organoid_tracker.ini", section, **{key: value})
    message = refused(capsys, prepare_args(movie_3d), f"[{section}] {key}")
    assert "at most" in message or " to " in message or "finite" in message or "whole number" in message


def test_csv_coordinates_that_are_not_finite_are_refused_by_track(capsys, tmp_path):
    (tmp_path / "nan.csv").write_text("node_id,t,z,y,x,parent_id\n0,0,1,2,3,-1\n1,1,1,inf,3,0\n")
    refused(capsys, ["track", tmp_path / "nan.csv"], "nan.csv, line 3", "not all finite")
    assert not (tmp_path / "nan-tracks.aut").exists()


@pytest.mark.parametrize("options, fragment", [
    (["--shape", "0", "64", "64"], "--shape"), (["--shape", "8", "-64", "64"], "--shape"),
    (["--shape", "100000", "100000", "100000"], "--shape"),
    (["--shape", "8", "64", "64", "--radius-px", "1e9"], "radius"),
])
def test_ctc_output_sizes_are_bounded(capsys, movie_3d, options, fragment):
    refused(capsys, ["convert", movie_3d / "ground_truth.csv", movie_3d / "out", *options], fragment)
    assert not (movie_3d / "out").exists()


def test_convert_to_ctc_with_a_time_point_of_1e9_is_refused_before_writing(capsys, tmp_path):
    (tmp_path / "late.csv").write_text("node_id,t,z,y,x,parent_id\n0,1000000000,2,5,5,-1\n")
    refused(capsys, ["convert", tmp_path / "late.csv", tmp_path / "out", "--shape", "8", "64", "64"],
            "1,000,000,001 label images")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["late.csv"]


def test_an_aut_nested_100000_deep_is_one_line(capsys, tmp_path):
    (tmp_path / "deep.aut").write_text("[" * 100_000 + "]" * 100_000)
    refused(capsys, ["stats", tmp_path / "deep.aut"], "deep.aut", "nested too deeply")


def test_an_ini_with_a_utf8_byte_order_mark_is_read(capsys, movie_3d):
    ini = movie_3d / "organoid_tracker.ini"
    ini.write_bytes(b"\xef\xbb\xbf" + ini.read_bytes())
    assert main(["prepare", "--config", str(ini)]) == 0, capsys.readouterr().err


def test_predict_does_not_resume_over_replaced_images(capsys, movie_3d, monkeypatch):
    """The progress file's fingerprint holds the image files' size and modification time: an interrupted run
    resumed after the images were replaced predicts every time point again (test_detection_pipeline.py shows the
    resume without the replacement: only the time points not finished)."""
    import octrack.networks.detect as detect_module

    write_tiny_detection_model(movie_3d / "training_output" / "model_detect", patch_depth=8)
    ini = movie_3d / "organoid_tracker.ini"
    original = detect_module.detect_in_frames
    counted_calls(monkeypatch, detect_module, "detect_in_frames", original, interrupt_at=3)
    arguments = ["predict", "--config", str(ini), "--steps", "positions"]
    assert main(arguments) == 130
    shutil.copy(frame(movie_3d, 1), frame(movie_3d, 0))  # new content, new size or modification time
    calls = counted_calls(monkeypatch, detect_module, "detect_in_frames", original)
    assert main(arguments) == 0, capsys.readouterr().err
    assert len(calls) == 4


@pytest.mark.parametrize("arguments, fragment", [
    (["view", "{truth}", "--fps", "0"], "--fps 0"), (["view", "{truth}", "--fps", "nan"], "--fps nan"),
    (["synth", "{folder}/synth", "--time-points", "100000000"], "1 to 10,000 time points"),
    (["synth", "{folder}/synth", "--size", "100000", "100000", "100000"], "voxels per time point"),
])
def test_other_options_out_of_range_are_refused_before_writing(capsys, movie_3d, arguments, fragment):
    before = sorted(movie_3d.rglob("*"))
    refused(capsys, [argument.format(truth=movie_3d / "ground_truth.aut", folder=movie_3d) for argument in arguments],
            fragment)
    assert sorted(movie_3d.rglob("*")) == before
