"""A tiny network for the engine's tests (tests/test_training.py, tests/two_devices.py): a dense regression on
seeded random inputs, fast enough for many trainings, with the interface of every octrack network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from octrack.model_folder import ModelSettings, stored
from octrack.time_window import TimeWindow
from octrack.tracking import VoxelSize
from octrack.training import FinalReport, SeededBatches

WEIGHTS = np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)


def regression_batch(rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(batch_size, 4)).astype(np.float32)
    return x, np.tanh(x @ WEIGHTS)


class Regression(SeededBatches):
    """Endless training batches: batch i is a pure function of (seed, first_step + i), as the engine requires."""

    def __init__(self, seed: int, first_step: int, batch_size: int):
        super().__init__(seed, first_step, workers=1)
        self.batch_size = batch_size

    def make_batch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return regression_batch(rng, self.batch_size)


class Validation(keras.utils.PyDataset):
    """Two fixed batches."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return regression_batch(np.random.default_rng([0, index]), self.batch_size)


@dataclass(frozen=True, kw_only=True)
class DenseSettings(ModelSettings):
    NETWORK = "dense"
    hidden: int = stored()


class DenseTraining:
    """A network without batch normalisation (which TensorFlow computes per replica), so that training on two
    replicas must match one device up to rounding."""

    name = "dense"

    def __init__(self, hidden: int = 8):
        self.hidden = hidden

    def build_model(self) -> Any:
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(self.hidden, activation="tanh")(inputs)
        return keras.Model(inputs, keras.layers.Dense(1)(hidden))

    def loss(self) -> Any:
        return keras.losses.mean_squared_error

    def training_batches(self, batch_size: int, seed: int, first_step: int) -> Regression:
        return Regression(seed, first_step, batch_size)

    def validation_batches(self, batch_size: int) -> Validation:
        return Validation(batch_size)

    def samples_per_pass(self) -> int:
        return 32

    def settings(self) -> DenseSettings:
        return DenseSettings(network=self.name, time_window=TimeWindow(0, 0), patch_shape=(1, 1, 1),
                             voxel_size=VoxelSize(1.0, 1.0, 1.0), hidden=self.hidden)

    def final_report(self, model: Any) -> FinalReport:
        return FinalReport({"validation samples": 2 * 8}, self.settings())
