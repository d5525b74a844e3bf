"""The engine (octrack/training.py) on a tiny fake network: exact resume, more epochs, restart, early stopping, a
changed network, the time budget, and the model folder it writes. The real networks keep one resume test each
(tests/test_detection_pipeline.py, tests/test_classifiers.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from octrack.errors import UserError
from octrack.model_folder import load_model_folder
from octrack.training import EpochCheckpoint, TrainOptions, train
from tests.fake_network import DenseSettings, DenseTraining
from tests.helpers import interrupted_after_epoch


def options(folder: Path, **changes: object) -> TrainOptions:
    values = dict(epochs=3, batch_size=8, learning_rate=0.01, patience=0, seed=1, steps_per_epoch=4,
                  pretrained_model_path=None, output_folder=folder)
    return TrainOptions(**{**values, **changes})


def history(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(folder / "training_dense" / "log.csv")))


def quiet(_: str) -> None:
    """Reports go nowhere."""


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch):
    train(DenseTraining(), options(tmp_path / "whole"), report=quiet)
    with interrupted_after_epoch(monkeypatch, 2), pytest.raises(KeyboardInterrupt):
        train(DenseTraining(), options(tmp_path / "resumed"), report=quiet)
    said = []
    train(DenseTraining(), options(tmp_path / "resumed"), report=said.append)
    assert any("resuming dense" in line and "epoch 2" in line for line in said)
    whole, resumed = history(tmp_path / "whole"), history(tmp_path / "resumed")
    assert [row["epoch"] for row in resumed] == ["1", "2", "3"]
    for a, b in zip(whole, resumed):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-6)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-6)
    (a, settings_a), (b, _) = (load_model_folder(folder / "model_dense", DenseSettings)
                               for folder in (tmp_path / "whole", tmp_path / "resumed"))
    for weights_a, weights_b in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(weights_a, weights_b, rtol=1e-6)
    assert settings_a.training.epochs == 3 and settings_a.hidden == 8 and settings_a.octrack_version


def test_more_epochs_continue_and_restart_starts_over(tmp_path):
    train(DenseTraining(), options(tmp_path, epochs=1), report=quiet)
    said = []
    train(DenseTraining(), options(tmp_path, epochs=2), report=said.append)
    assert any("epochs 2–2" in line for line in said)
    assert [row["epoch"] for row in history(tmp_path)] == ["1", "2"]
    said.clear()
    train(DenseTraining(), options(tmp_path, epochs=2), report=said.append)
    assert any("already trained for 2 epochs" in line for line in said)
    train(DenseTraining(), options(tmp_path, epochs=1), restart=True, report=quiet)
    assert [row["epoch"] for row in history(tmp_path)] == ["1"]


def test_early_stopping_ends_the_run_and_stays_ended(tmp_path, monkeypatch):
    """With patience 1 and a validation loss that never improves after epoch 1, training stops at epoch 2;
    running it again does not train further unless more epochs are asked for."""
    original = EpochCheckpoint.on_epoch_end

    def worse_after_the_first(self, epoch, logs=None):
        original(self, epoch, {**(logs or {}), "val_loss": 1.0 + epoch})

    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", worse_after_the_first)
    result = train(DenseTraining(), options(tmp_path, epochs=5, patience=1), report=quiet)
    assert [row["epoch"] for row in history(tmp_path)] == ["1", "2"] and result.state.best_epoch == 1
    said = []
    train(DenseTraining(), options(tmp_path, epochs=5, patience=1), report=said.append)
    assert any("stopped early at epoch 2" in line for line in said)
    assert [row["epoch"] for row in history(tmp_path)] == ["1", "2"]


def test_a_changed_network_does_not_resume_silently(tmp_path):
    train(DenseTraining(hidden=8), options(tmp_path, epochs=1), report=quiet)
    with pytest.raises(UserError, match="--restart"):
        train(DenseTraining(hidden=4), options(tmp_path, epochs=2), report=quiet)
    with pytest.raises(UserError, match="steps_per_epoch changed"):
        train(DenseTraining(hidden=8), options(tmp_path, epochs=2, steps_per_epoch=5), report=quiet)


def test_time_budget_stops_before_an_epoch_that_would_overrun(tmp_path):
    """A budget far shorter than one epoch: the first epoch runs (nothing to judge by before it), no second."""
    result = train(DenseTraining(), options(tmp_path, epochs=4, max_minutes=1e-6), report=quiet)
    assert result.state.epoch == 1 and [row["epoch"] for row in history(tmp_path)] == ["1"]
    assert (tmp_path / "model_dense" / "model.keras").exists()
