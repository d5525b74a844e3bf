"""The subcommands as a user runs them: init, stats, convert, prepare (the HDF5 cache)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from octrack.cli import main
from octrack.config import Config
from octrack.tracking import load_tracking
from tests.helpers import real_data, set_keys


def run_ok(capsys: pytest.CaptureFixture, *arguments: str) -> str:
    code = main(list(arguments))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_stats_json_on_real_ctc_folder(capsys):
    folder = real_data("breast-cancer-2d/01_GT/TRA")
    stats = json.loads(run_ok(capsys, "stats", str(folder), "--json"))
    assert stats["time_points"] == 12
    assert stats["positions_per_time_point"]["0"] == 218
    assert stats["tracks"] == 386
    assert stats["divisions"] == 34
    assert stats["positions"] == sum(stats["positions_per_time_point"].values())


def test_stats_text_of_the_config_datasets(capsys, movie_3d):
    out = run_ok(capsys, "stats", "--config", str(movie_3d / "organoid_tracker.ini"))
    assert "tracking_file_1" in out and "Divisions:" in out


def test_convert_chain_keeps_everything(capsys, tmp_path):
    source = real_data("celegans-lineage/ce01_t000-119.csv")
    original = load_tracking(source)
    run_ok(capsys, "convert", str(source), str(tmp_path / "lineage.aut"), "--voxel-size", "1.0", "0.09", "0.09")
    run_ok(capsys, "convert", str(tmp_path / "lineage.aut"), str(tmp_path / "back.csv"))
    back = load_tracking(tmp_path / "back.csv")
    assert len(back) == len(original) == 5552
    assert len(back.divisions()) == len(original.divisions()) == 112
    assert set(back.links()) == set(original.links())
    assert load_tracking(tmp_path / "lineage.aut").voxel_size.z_um == 1.0


def test_init_guesses_pattern_and_writes_a_working_ini(capsys, movie_3d, tmp_path):
    ini = tmp_path / "new.ini"
    out = run_ok(capsys, "init", "--images", str(movie_3d / "images"), "--tracking",
                 str(movie_3d / "ground_truth.aut"), "--output", str(ini))
    assert "nuclei_t{time:03}.tif" in out
    config = Config(ini)
    assert config.warnings == []
    dataset = config.datasets("prepare")[0]
    assert dataset.images_pattern == "nuclei_t{time:03}.tif"
    assert dataset.pixel_size_z_um == pytest.approx(2.0)  # from the TIFF metadata
    assert dataset.tracking_file == movie_3d / "ground_truth.aut"


def test_init_on_real_ctc_images(capsys, tmp_path):
    images = real_data("breast-cancer-2d/01")
    out = run_ok(capsys, "init", "--images", str(images), "--output", str(tmp_path / "o.ini"))
    assert "t{time:04}.tif" in out
    assert "pixel_size_x_um_1" in out  # no calibration in these files: the report says what to set


def cache_groups(path: Path) -> dict[str, dict]:
    with h5py.File(path, "r") as cache:
        return {f"{d}/{t}": dict(cache[d][t].attrs) for d in cache for t in cache[d]}


def test_prepare_writes_crops_and_reuses_them(capsys, movie_3d):
    ini = str(movie_3d / "organoid_tracker.ini")
    out = run_ok(capsys, "prepare", "--config", ini)
    assert "4 annotated time points" in out
    cache_path = movie_3d / "training_output" / "cache" / "detect.h5"
    groups = cache_groups(cache_path)
    assert len(groups) == 4
    splits = [attrs["split"] for attrs in groups.values()]
    assert splits.count("validation") == 1  # 0.2 of 4 time points, at least one
    with h5py.File(cache_path, "r") as cache:
        group = cache["dataset_1/t00000"]
        assert group["image"].shape[-1] == 3  # time window t-1, t, t+1
        assert group["image"].compression == "lzf"
        positions = group["positions_zyx"][()]
        assert np.all(positions >= 0) and np.all(positions < group["image"].shape[:3])
        assert list(group.attrs["window_time_points"]) == [0, 0, 1]  # the first frame repeats
    assert "4 entries built, 0 reused" in out
    assert "0 entries built, 4 reused" in run_ok(capsys, "prepare", "--config", ini)


def test_prepare_rebuilds_only_what_changed(capsys, movie_3d):
    ini = str(movie_3d / "organoid_tracker.ini")
    run_ok(capsys, "prepare", "--config", ini)
    frame = movie_3d / "images" / "nuclei_t003.tif"
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    # t = 3 is in its own window and in that of t = 2 (window t-1 … t+1)
    assert "2 entries built, 2 reused" in run_ok(capsys, "prepare", "--config", ini)
    set_keys(movie_3d / "organoid_tracker.ini", "train_detect", time_window_after=0)
    assert "4 entries built, 0 reused" in run_ok(capsys, "prepare", "--config", ini)


def test_prepare_split_follows_use_for(capsys, movie_3d):
    set_keys(movie_3d / "organoid_tracker.ini", "prepare", use_for_1="validation")
    run_ok(capsys, "prepare", "--config", str(movie_3d / "organoid_tracker.ini"))
    groups = cache_groups(movie_3d / "training_output" / "cache" / "detect.h5")
    assert {attrs["split"] for attrs in groups.values()} == {"validation"}


def test_interrupted_prepare_leaves_no_cache(capsys, movie_3d, monkeypatch):
    from octrack.networks import detect

    def fail(*arguments, **keywords):
        raise KeyboardInterrupt

    monkeypatch.setattr(detect, "write_array", fail)
    assert main(["prepare", "--config", str(movie_3d / "organoid_tracker.ini")]) == 130
    cache = movie_3d / "training_output" / "cache"
    assert not (cache / "detect.h5").exists()
    assert not [path for path in cache.iterdir() if "partial" in path.name]


def test_prepare_2d(capsys, movie_2d):
    run_ok(capsys, "prepare", "--config", str(movie_2d / "organoid_tracker.ini"))
    with h5py.File(movie_2d / "training_output" / "cache" / "detect.h5", "r") as cache:
        assert cache["dataset_1/t00001"]["image"].shape[0] == 1
