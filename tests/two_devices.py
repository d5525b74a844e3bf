"""Trainings on a CPU that TensorFlow sees as two logical devices, for tests/test_distribution.py.

`python -m tests.two_devices COMMAND …` runs each COMMAND in one process and exits with the first nonzero exit
code. A COMMAND is an octrack command line, or `dense FOLDER DISTRIBUTION`: the engine on tests/fake_network.py.
Devices can be split only before TensorFlow starts, hence a process of its own.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from tests.fake_network import DenseTraining


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
