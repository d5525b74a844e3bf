"""Trainings on a CPU that TensorFlow sees as two logical devices, for tests/test_distribution.py.

`python -m tests.two_devices COMMAND …` runs each COMMAND in one process and exits with the first nonzero exit
code. A COMMAND is an octrack command line, or `dense FOLDER DISTRIBUTION`: the shared trainer on `DenseTraining`.
Devices can be split only before TensorFlow starts, hence a process of its own.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np


class Regression(keras.utils.PyDataset):
    """Batch i is a pure function of (seed, first_step + i), as the trainer requires; `batches` = None: endless."""

    def __init__(self, seed: int, first_step: int, batch_size: int, batches: int | None = None):
        super().__init__()
        self.seed, self.first_step, self.batch_size, self.batches = seed, first_step, batch_size, batches

    @property
    def num_batches(self) -> int | None:
        return self.batches

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.first_step + index])
        x = rng.normal(size=(self.batch_size, 4)).astype(np.float32)
        return x, np.tanh(x @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32))


class DenseTraining:
    """A network without batch normalisation (which TensorFlow computes per replica), so that training on two
    replicas must match one device up to rounding."""

    name = "dense"

    def build_model(self) -> Any:
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="tanh")(inputs)
        return keras.Model(inputs, keras.layers.Dense(1)(hidden))

    def loss(self) -> Any:
        return keras.losses.mean_squared_error

    def training_batches(self, batch_size: int, seed: int, first_step: int) -> Regression:
        return Regression(seed, first_step, batch_size)

    def validation_batches(self, batch_size: int) -> Regression:
        return Regression(0, 10**6, batch_size, batches=2)

    def samples_per_pass(self) -> int:
        return 32

    def settings(self) -> dict[str, Any]:
        return {"network": self.name}

    def final_report(self, model: Any) -> dict[str, Any]:
        return {}


def train_dense(folder: str, distribution: str) -> int:
    from octrack.training import TrainOptions, train

    train(DenseTraining(), TrainOptions(epochs=2, batch_size=8, learning_rate=0.01, patience=0, seed=1,
                                        steps_per_epoch=4, pretrained_model_path=None, output_folder=Path(folder),
                                        distribution=distribution))
    return 0


def main(commands: list[str]) -> int:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from octrack.cli import main as octrack

    for command in map(shlex.split, commands):
        code = train_dense(*command[1:]) if command[0] == "dense" else octrack(command)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
