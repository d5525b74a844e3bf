"""prepare → train-detect → predict → evaluate with a tiny model, in 3D and 2D; resume, restart, fine-tuning."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tifffile

from octrack.cli import main
from octrack.model_folder import load_settings
from octrack.networks.detect_model import DetectSettings
from octrack.tracking import VoxelSize, load_tracking, save_tracking
from tests.helpers import counted_calls, interrupted_after_epoch, octrack, set_keys

TINY = {"steps_per_epoch": 3, "batch_size": 2, "unet_levels": 2, "unet_filters": 4, "patience": 0}


def tiny_config(movie: Path, patch: str, epochs: int = 2) -> str:
    ini = movie / "organoid_tracker.ini"
    set_keys(ini, "train_detect", epochs=epochs, patch_shape=patch, **TINY)
    return str(ini)


@pytest.mark.parametrize("movie_name, patch", [("movie_3d", "32, 32, 8"), ("movie_2d", "48, 48, 1")])
def test_pipeline_end_to_end(capsys, request, movie_name, patch):
    movie: Path = request.getfixturevalue(movie_name)
    ini = tiny_config(movie, patch)
    out = octrack(capsys, "train-detect", "--config", ini)
    assert "best epoch" in out and "validation f1" in out
    model_folder = movie / "training_output" / "model_detect"
    settings = load_settings(model_folder, DetectSettings)
    assert settings.normalization and settings.target_sigma_um and settings.octrack_version
    assert settings.peak_threshold is not None and settings.min_distance_um
    assert settings.voxel_size == VoxelSize(0.32, 0.32, 2.0)
    training = movie / "training_output" / "training_detect"
    assert len(list(csv.DictReader(open(training / "log.csv")))) == 2
    assert (training / "curves.png").stat().st_size > 0
    if keras.backend.backend() == "tensorflow":  # the only backend whose TensorBoard callback writes logs
        assert any((training / "tensorboard").rglob("*tfevents*"))

    out = octrack(capsys, "predict", "--config", ini)  # no divide or link model: positions, then tracks
    assert "no divisions step" in out and "no links step" in out and "tracks:" in out
    predictions = movie / "training_output" / "predictions" / "1"
    predicted = load_tracking(predictions / "positions.csv")
    assert load_tracking(predictions / "positions.aut").time_points() == predicted.time_points()
    assert "detection_peak" in predicted.position_data_keys()
    tracks = load_tracking(predictions / "tracks.aut")
    assert len(tracks) == len(load_tracking(predictions / "tracks.csv"))
    assert set(tracks.positions()) <= set(predicted.positions())  # the tracker may leave detections out
    assert "marginal_probability" in tracks.link_data_keys()
    assert len(load_tracking(predictions / "ctc")) == len(tracks)
    scores = json.loads(octrack(capsys, "evaluate", "--ground-truth", str(movie / "ground_truth.aut"),
                                "--predicted", str(predictions / "tracks.aut"), "--json"))
    assert set(scores) >= {"precision", "recall", "f1", "true_positives", "false_positives", "false_negatives",
                           "link_f1", "division_f1"}


def final_weights(movie: Path) -> list[np.ndarray]:
    return keras.saving.load_model(movie / "training_output" / "model_detect" / "model.keras",
                                   compile=False).get_weights()


def history(movie: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(movie / "training_output" / "training_detect" / "log.csv")))


def test_interrupted_training_resumes_and_matches_an_uninterrupted_run(capsys, movie_3d, tmp_path, monkeypatch):
    import shutil

    other = Path(shutil.copytree(movie_3d, tmp_path / "other"))
    octrack(capsys, "train-detect", "--config", tiny_config(movie_3d, "32, 32, 8", epochs=3))

    ini = tiny_config(other, "32, 32, 8", epochs=3)
    with interrupted_after_epoch(monkeypatch, 2):
        assert main(["train-detect", "--config", ini]) == 130
    out = octrack(capsys, "train-detect", "--config", ini)
    assert "resuming detect" in out and "epoch 2" in out

    uninterrupted, resumed = history(movie_3d), history(other)
    assert [row["epoch"] for row in resumed] == ["1", "2", "3"]
    for a, b in zip(uninterrupted, resumed):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-3)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-3)
    for a, b in zip(final_weights(movie_3d), final_weights(other)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_pretrained_model_is_trained_further(capsys, movie_3d):
    ini = tiny_config(movie_3d, "32, 32, 8", epochs=1)
    octrack(capsys, "train-detect", "--config", ini)
    set_keys(movie_3d / "organoid_tracker.ini", "DEFAULTS", output_folder="second_run",
             pretrained_model_path="training_output/model_detect")
    out = octrack(capsys, "train-detect", "--config", ini)
    assert "starting from the weights of" in out
    assert (movie_3d / "second_run" / "model_detect" / "model.keras").exists()


def test_detection_target_needs_a_voxel_size(capsys, movie_2d):
    """Neither the ini, nor the TIFFs, nor the tracking file say it: a clear error naming the keys."""
    ini = tiny_config(movie_2d, "48, 48, 1")
    set_keys(movie_2d / "organoid_tracker.ini", "prepare", pixel_size_x_um_1="", pixel_size_y_um_1="",
             pixel_size_z_um_1="")
    for tif in (movie_2d / "images").glob("*.tif"):
        tifffile.imwrite(tif, tifffile.imread(tif))
    tracking = load_tracking(movie_2d / "ground_truth.aut")
    tracking.voxel_size = None
    save_tracking(tracking, movie_2d / "ground_truth.aut")
    assert main(["train-detect", "--config", ini]) == 2
    assert "[prepare] pixel_size_x_um_1" in capsys.readouterr().err


def test_predict_without_a_model(capsys, movie_3d):
    assert main(["predict", "--config", str(movie_3d / "organoid_tracker.ini")]) == 2
    assert "model_detect" in capsys.readouterr().err


def test_interrupted_predict_resumes(capsys, movie_3d, monkeypatch):
    import octrack.networks.detect as predict_module

    ini = tiny_config(movie_3d, "32, 32, 8", epochs=1)
    octrack(capsys, "train-detect", "--config", ini)
    octrack(capsys, "predict", "--config", ini)
    folder = movie_3d / "training_output" / "predictions" / "1"
    uninterrupted = (folder / "positions.csv").read_text()
    (folder / "positions.csv").unlink()

    original = predict_module.detect_in_frames
    counted_calls(monkeypatch, predict_module, "detect_in_frames", original, interrupt_at=3)
    assert main(["predict", "--config", ini]) == 130
    assert not (folder / "positions.csv").exists()  # nothing that looks finished
    calls = counted_calls(monkeypatch, predict_module, "detect_in_frames", original)
    octrack(capsys, "predict", "--config", ini)
    assert len(calls) == 2  # only the two time points that were not finished
    assert (folder / "positions.csv").read_text() == uninterrupted


def test_tentative_peaks_are_kept_marked_and_count_as_detections_only_where_a_track_takes_them(capsys, movie_2d):
    ini = tiny_config(movie_2d, "48, 48, 1", epochs=1)
    octrack(capsys, "train-detect", "--config", ini)
    folder = movie_2d / "training_output" / "predictions" / "1"
    truth = str(movie_2d / "ground_truth.aut")

    def predicted_count() -> int:
        scores = json.loads(octrack(capsys, "evaluate", "--ground-truth", truth, "--predicted",
                                    str(folder / "positions.csv"), "--json"))
        return scores["true_positives"] + scores["false_positives"]

    set_keys(Path(ini), "predict", tentative_peak_fraction=0)
    octrack(capsys, "predict", "--config", ini)
    plain = load_tracking(folder / "positions.csv")
    detections = predicted_count()
    set_keys(Path(ini), "predict", tentative_peak_fraction=0.5)
    out = octrack(capsys, "predict", "--config", ini)
    assert "tentative" in out
    positions = load_tracking(folder / "positions.csv")
    threshold = load_settings(movie_2d / "training_output" / "model_detect", DetectSettings).peak_threshold
    tentative = {p for p in positions.positions() if positions.is_tentative(p)}
    assert tentative and set(positions.positions()) - tentative == set(plain.positions())
    peaks = [positions.position_data(p)["detection_peak"] for p in tentative]
    assert threshold / 2 - 1e-4 <= min(peaks) and max(peaks) <= threshold + 1e-4, (threshold, peaks)
    assert predicted_count() == detections  # tentative detections are no detections of their own
    tracks = load_tracking(folder / "tracks.aut")
    assert "detection_tentative" not in tracks.position_data_keys()  # those a track took are detections


def test_mixed_bfloat16_computes_in_bfloat16_keeps_float32_outputs_and_resumes(capsys, movie_2d):
    ini = tiny_config(movie_2d, "48, 48, 1", epochs=1)
    set_keys(Path(ini), "train_detect", mixed_precision="mixed_bfloat16")
    octrack(capsys, "train-detect", "--config", ini)
    octrack(capsys, "train-detect", "--config", ini, "--epochs", "2")  # resumes from the bfloat16 checkpoint
    model = keras.saving.load_model(movie_2d / "training_output" / "model_detect" / "model.keras", compile=False)
    assert model.get_layer("down0_conv1").compute_dtype == "bfloat16"
    assert all(weight.dtype == "float32" for weight in model.weights)
    assert model.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was
    assert len(history(movie_2d)) == 2
    settings = load_settings(movie_2d / "training_output" / "model_detect", DetectSettings)
    assert settings.mixed_precision == "mixed_bfloat16"
    out = octrack(capsys, "predict", "--config", ini)  # the bfloat16 model predicts as it is
    assert "positions in" in out and (movie_2d / "training_output" / "predictions" / "1" / "positions.aut").exists()
