"""OrganoidTracker's own models and predictions (../shared/data/organoidtracker, its README lists how they were
made): octrack runs OrganoidTracker's three models and finds what OrganoidTracker found, and trains its
positions model further into a folder that both programs load.

OrganoidTracker's positions network is large (20 M weights, tiles of 16 × 384 × 384), so the positions parity
is checked on the first tile of one time point here (OrganoidTracker's positions with z ≤ 13 come from that
tile alone); all five time points, through `octrack predict`, with OCTRACK_SLOW_TESTS=1 or with
scripts/organoidtracker_parity.py, which prints the figures recorded in docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.cli import main
from octrack.config import Config, PredictSection
from octrack.dataset import open_datasets
from octrack.model_folder import load_keras_model
from octrack.networks import NETWORKS
from octrack.networks.organoidtracker.classifiers import OTDivider, OTLinker
from octrack.networks.organoidtracker.frames import OTFrameReader
from octrack.networks.organoidtracker.positions import (DEFAULT_MIN_DISTANCE_PX, OTPositions, place_tile,
                                                        positions_of_tiles, tile_outputs)
from octrack.time_window import TimeWindow
from octrack.tracking import load_tracking
from octrack.training import EpochCheckpoint
from tests.helpers import octrack, real_data, set_keys
from tests.test_organoidtracker import blur_kernel

OT = "organoidtracker"
RUN = "ot_predictions/threshold_0.05"
ROOT = Path(__file__).resolve().parents[1]


def fixture_ini(tmp_path: Path, **predict: object) -> Path:
    """An ini whose [predict] is OrganoidTracker's fixture movie (voxel size as in its README) and its models."""
    data = real_data(OT)
    ini = tmp_path / "organoid_tracker.ini"
    ini.write_text("[DEFAULTS]\noutput_folder = out\n")
    set_keys(ini, "predict", images_container_1=data / "movie" / "images", images_pattern_1="nuclei_t{time:03}.tif",
             pixel_size_x_um_1=0.32, pixel_size_y_um_1=0.32, pixel_size_z_um_1=2.0, time_point_duration_m_1=12.0,
             detect_model_folder=data / "models" / "positions", divide_model_folder=data / "models" / "division",
             link_model_folder=data / "models" / "link", peak_threshold=0.05, tentative_peak_fraction=0,
             **predict)  # OrganoidTracker's positions: none below the threshold
    return ini


def ot_result():
    """OrganoidTracker's last file of the 0.05 run: its positions with division data, and its candidate links
    (octrack's .aut reader ignores the extra element OrganoidTracker writes into each link_meta_before)."""
    return load_tracking(real_data(OT) / RUN / "Link predictions" / "1. images.aut")


def key(position) -> tuple[float, float, float, int]:
    return position.x, position.y, position.z, position.t


def test_divisions_and_links_equal_organoid_tracker_s(capsys, tmp_path):
    """On OrganoidTracker's own positions: the same candidate links, and the same probabilities and penalties
    to float32 rounding (OrganoidTracker batches patches across time points)."""
    positions = real_data(OT) / RUN / "Automatic positions" / "1. images.aut"
    ini = fixture_ini(tmp_path, tracking_file_1=positions)
    octrack(capsys, "predict", "--config", str(ini), "--steps", "divisions,links")
    ours, theirs = load_tracking(tmp_path / "out" / "predictions" / "1" / "positions.aut"), ot_result()

    ours_at = {key(p): p for p in ours.positions()}
    theirs_at = {key(p): p for p in theirs.positions()}
    assert set(ours_at) == set(theirs_at) and len(theirs_at) == 246
    for name in ("division_probability", "division_penalty"):
        difference = max(abs(ours.position_data(ours_at[k])[name] - theirs.position_data(theirs_at[k])[name])
                         for k in theirs_at)
        assert difference < (1e-6 if name.endswith("probability") else 1e-4), name

    ours_links = {(key(a), key(b)): (a, b) for a, b in ours.links()}
    theirs_links = {(key(a), key(b)): (a, b) for a, b in theirs.links()}
    assert set(ours_links) == set(theirs_links) and len(theirs_links) == 336
    for name in ("link_probability", "link_penalty"):
        difference = max(abs(ours.link_data(*ours_links[k])[name] - theirs.link_data(*theirs_links[k])[name])
                         for k in theirs_links)
        assert difference < 1e-5, name


def test_positions_and_raw_output_equal_organoid_tracker_s(tmp_path):
    """The last time point (its window's second frame is missing and filled): OrganoidTracker's raw network output
    (its debug TIFF) to float32 rounding, and exactly its positions, for the first tile (image z 0–13)."""
    ini = fixture_ini(tmp_path)
    predict = Config(ini).section_of(PredictSection, "predict")
    positions = NETWORKS["detect"].load(predict.model_folder("detect"), predict)
    assert isinstance(positions, OTPositions) and positions.settings.time_window == TimeWindow(0, 1)
    dataset = open_datasets(Config(ini), "predict")[0]
    frames = OTFrameReader(dataset).frames(4, positions.settings.time_window)
    assert (frames[0].low, frames[0].high) == (111.0, 496.0)  # the README's intensity window at t = 4

    first = next(tile_outputs(positions.model, frames))
    assert first.corner_zyx == (-1, -32, -32)
    raw = np.zeros((16, 128, 128), dtype=np.float32)
    place_tile(raw, first)
    theirs_raw = tifffile.imread(real_data(OT) / RUN / "Nucleus center predictions" / "1. images" / "image_4.tif")
    np.testing.assert_allclose(raw[:14], theirs_raw[:14], atol=1e-6)

    found = positions_of_tiles([first], 0.05, DEFAULT_MIN_DISTANCE_PX, (16, 128, 128))
    ours = sorted((x, y, z) for z, y, x, _ in found)
    theirs = sorted((p.x, p.y, p.z) for p in ot_result().positions_at(4) if p.z <= 13)
    assert len(theirs) > 40 and ours == theirs


def test_the_target_blur_is_the_one_inside_organoid_tracker_s_network():
    """The last operation of OrganoidTracker's positions network is its blur, a constant kernel in the model's
    config: the same kernel as the target's (tests/test_organoidtracker.py checks where the taps lie)."""
    with zipfile.ZipFile(real_data(OT) / "models" / "positions" / "model.keras") as archive:
        layers = json.loads(archive.read("config.json"))["config"]["layers"]
    blur = next(layer for layer in layers if layer["class_name"] == "Conv")
    kernel = np.array(blur["inbound_nodes"][0]["args"][1]["config"]["value"], dtype=np.float64)
    assert kernel.shape == (1, 4, 4, 1, 1)
    np.testing.assert_allclose(kernel[0, :, :, 0, 0], blur_kernel(), atol=1e-7)


@pytest.mark.skipif(not os.environ.get("OCTRACK_SLOW_TESTS"), reason="minutes on a CPU; OCTRACK_SLOW_TESTS=1 runs it")
def test_the_whole_chain_equals_organoid_tracker_s(capsys, tmp_path):
    """`octrack predict` with OrganoidTracker's three models on all five time points: its positions exactly, then
    its division and link probabilities."""
    ini = fixture_ini(tmp_path)
    octrack(capsys, "predict", "--config", str(ini), "--steps", "positions,divisions,links")
    ours, theirs = load_tracking(tmp_path / "out" / "predictions" / "1" / "positions.aut"), ot_result()
    assert sorted(map(key, ours.positions())) == sorted(map(key, theirs.positions()))
    theirs_links = {(key(a), key(b)): theirs.link_data(a, b) for a, b in theirs.links()}
    ours_links = {(key(a), key(b)): ours.link_data(a, b) for a, b in ours.links()}
    assert set(ours_links) == set(theirs_links)
    assert max(abs(ours_links[k]["link_probability"] - theirs_links[k]["link_probability"])
               for k in theirs_links) < 0.01


def test_organoid_tracker_s_positions_model_is_trained_further(capsys, movie_3d, monkeypatch):
    """pretrained_model_path = OrganoidTracker's folder: its architecture trains on (here synthetic) annotations,
    resumes after an interruption, and the model folder has OrganoidTracker's fields, loads in octrack and loads
    as OrganoidTracker loads it (on the torch backend, compiling with its own loss names)."""
    pretrained = real_data(OT) / "models" / "positions"
    ini = movie_3d / "organoid_tracker.ini"
    set_keys(ini, "train_detect", pretrained_model_path=pretrained, epochs=2, steps_per_epoch=1, batch_size=1,
             patch_shape="32, 32, 8", patience=0)
    original = EpochCheckpoint.on_epoch_end

    def interrupt_after_epoch_1(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", interrupt_after_epoch_1)
    assert main(["train-detect", "--config", str(ini)]) == 130
    assert "x, y, z = 32, 32, 16" in capsys.readouterr().err  # OrganoidTracker's model takes 16 z slices
    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", original)
    out = octrack(capsys, "train-detect", "--config", str(ini))
    assert "resuming detect" in out and "epoch 1" in out and "validation f1" in out

    folder = movie_3d / "training_output" / "model_detect"
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["type"] == "positions" and settings["time_window"] == [0, 1]  # what OrganoidTracker reads
    assert settings["network"] == "detect" and settings["training"]["epochs"] == 2
    assert 0 < settings["peak_threshold"] < 1 and settings["voxel_size_um_xyz"] == [0.32, 0.32, 2.0]
    predict = Config(ini).section_of(PredictSection, "predict")
    loaded = NETWORKS["detect"].load(folder, predict)
    assert isinstance(loaded, OTPositions) and loaded.threshold == settings["peak_threshold"]
    trained = load_keras_model(folder / "model.keras", "the trained model").get_weights()
    original_weights = load_keras_model(pretrained / "model.keras", "OrganoidTracker's model").get_weights()
    assert len(trained) == len(original_weights) and any(not np.array_equal(a, b)
                                                         for a, b in zip(trained, original_weights))

    if importlib.util.find_spec("torch") is not None:
        check = ("import os, sys; os.environ['KERAS_BACKEND'] = 'torch'; import keras\n"
                 "def loss(y_true, y_pred): return y_pred\n"
                 "keras.saving.load_model(sys.argv[1], custom_objects={name: loss for name in "
                 "('loss', 'position_precision', 'position_recall', 'overcount')})\nprint('loaded on', "
                 "keras.backend.backend())")
        result = subprocess.run([sys.executable, "-c", check, str(folder / "model.keras")], capture_output=True,
                                text=True, timeout=300, cwd=ROOT)
        assert "loaded on torch" in result.stdout, result.stderr[-3000:]


def test_organoid_tracker_s_division_and_link_models_are_trained_further(capsys, tmp_path):
    """On OrganoidTracker's fixture movie and its ground truth: both train with OrganoidTracker's inputs and are
    calibrated into its Platt fields; octrack loads them as OrganoidTracker's models again."""
    data = real_data(OT)
    ini = fixture_ini(tmp_path, tracking_file_1=data / RUN / "Automatic positions" / "1. images.aut")
    set_keys(ini, "DEFAULTS", epochs=1, steps_per_epoch=1, batch_size=4, patience=0, time_window_before=2)
    set_keys(ini, "prepare", images_container_1=data / "movie" / "images", images_pattern_1="nuclei_t{time:03}.tif",
             tracking_file_1=data / "movie" / "ground_truth.aut")
    set_keys(ini, "train_divide", pretrained_model_path=data / "models" / "division")
    set_keys(ini, "train_link", pretrained_model_path=data / "models" / "link")
    out = octrack(capsys, "train", "--config", str(ini))
    assert out.count("platt a, b") == 2
    for name, ot_type, window in (("divide", "divisions", [-1, 1]), ("link", "links", [0, 1])):
        folder = tmp_path / "out" / f"model_{name}"
        settings = json.loads((folder / "settings.json").read_text())
        assert settings["type"] == ot_type and settings["time_window"] == window  # the model's, not the ini's
        assert settings["patch_shape_zyx"] == [8, 32, 32] and settings["network"] == name
        assert isinstance(settings["platt_intercept"], float) and isinstance(settings["platt_scaling"], float)
        predictor = NETWORKS[name].load(folder, Config(ini).section_of(PredictSection, "predict"))
        assert isinstance(predictor, OTDivider if name == "divide" else OTLinker)
        assert predictor.settings.platt_scaling == settings["platt_scaling"]
