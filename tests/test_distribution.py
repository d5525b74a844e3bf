"""The `distribution` key: mirrored training on two logical CPUs matches one device, two worker processes on
loopback ports train together, and the mistakes a user can make are named."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from octrack.cli import main
from octrack.distribution import Placement, place
from octrack.errors import UserError
from octrack.model_folder import load_settings
from octrack.networks.detect_model import DetectSettings
from tests.helpers import octrack, set_keys

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4, "patch_shape": "48, 48, 1", "unet_levels": 2,
        "unet_filters": 4, "patience": 0}
needs_tensorflow = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                      reason="tf.distribute needs the tensorflow backend")


def tiny_ini(movie: Path, **keys: object) -> Path:
    ini = movie / "organoid_tracker.ini"
    set_keys(ini, "train_detect", **{**TINY, **keys})
    return ini


def history(folder: Path) -> list[dict[str, float]]:
    return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(open(folder / "log.csv"))]


def weights(model_folder: Path) -> list[np.ndarray]:
    return keras.saving.load_model(model_folder / "model.keras", compile=False).get_weights()


def start(command: list[str], log: Path, **environment: str) -> subprocess.Popen:
    """`python COMMAND` from the repository's root, its output going to `log` (a pipe could fill and block it)."""
    with open(log, "w") as output:
        return subprocess.Popen([sys.executable, *command], cwd=ROOT, env={**os.environ, **environment},
                                stdout=output, stderr=subprocess.STDOUT)


def finish(processes: list[subprocess.Popen]) -> list[int]:
    """Their exit codes; any still running after 10 minutes (a hang: a minute is usual) is killed."""
    try:
        return [process.wait(timeout=600) for process in processes]
    finally:
        for process in processes:
            process.kill()


@needs_tensorflow
def test_mirrored_training_on_two_devices_matches_one_device_and_resumes(movie_2d, tmp_path):
    single = tiny_ini(movie_2d)
    mirrored = tiny_ini(Path(shutil.copytree(movie_2d, tmp_path / "mirrored")), distribution="mirrored")
    resumed = tiny_ini(Path(shutil.copytree(movie_2d, tmp_path / "resumed")), distribution="mirrored", epochs=1)
    process = start(["-m", "tests.two_devices", f"dense {tmp_path / 'dense_none'} none",
                     f"dense {tmp_path / 'dense_mirrored'} mirrored", f"train-detect -q --config {single}",
                     f"train-detect -q --config {mirrored}", f"train-detect -q --config {resumed}",
                     f"train-detect -q --config {resumed} --epochs 2"], tmp_path / "two_devices.log")
    assert finish([process]) == [0], (tmp_path / "two_devices.log").read_text()[-5000:]

    # Without batch normalisation (per replica on TensorFlow) two replicas match one device up to rounding.
    for a, b in zip(history(tmp_path / "dense_none" / "training_dense"),
                    history(tmp_path / "dense_mirrored" / "training_dense")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["val_loss"] == pytest.approx(b["val_loss"],
                                                                                                   rel=1e-5)
    for a, b in zip(weights(tmp_path / "dense_none" / "model_dense"),
                    weights(tmp_path / "dense_mirrored" / "model_dense")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # The detection network: the same batches give about the same losses (each replica normalises its half).
    model = mirrored.parent / "training_output" / "model_detect"
    training = load_settings(model, DetectSettings).training
    assert (training.distribution, training.replicas) == ("mirrored", 2)
    one_device, two_replicas = (history(ini.parent / "training_output" / "training_detect")
                                for ini in (single, mirrored))
    for a, b in zip(one_device, two_replicas):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.1) and b["val_loss"] == pytest.approx(a["val_loss"],
                                                                                                 rel=0.02)
    # Resumed under the strategy from the checkpoint of epoch 1: as if never interrupted.
    for a, b in zip(two_replicas, history(resumed.parent / "training_output" / "training_detect")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3) and a["val_loss"] == pytest.approx(b["val_loss"],
                                                                                                   rel=1e-3)
    for a, b in zip(weights(model), weights(resumed.parent / "training_output" / "model_detect")):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("localhost", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


@needs_tensorflow
def test_two_worker_processes_train_together_and_only_the_chief_writes(capsys, movie_2d, tmp_path):
    ini = tiny_ini(movie_2d, distribution="multi_worker")
    octrack(capsys, "prepare", "--config", str(ini))  # once, before the workers that share the cache
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    logs = [tmp_path / f"worker{index}.log" for index in (0, 1)]
    workers = [start(["-m", "octrack", "train-detect", "--config", str(ini)], log,
                     TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
               for index, log in enumerate(logs)]
    codes = finish(workers)
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "multi_worker: 2 replicas of 2" in outputs[0] and "the chief writes" in outputs[1]
    training = load_settings(movie_2d / "training_output" / "model_detect", DetectSettings).training
    assert training.distribution == "multi_worker" and training.replicas == 2
    assert len(history(movie_2d / "training_output" / "training_detect")) == 2


def test_a_bad_distribution_is_one_line_and_exit_2(capsys, movie_2d):
    ini = tiny_ini(movie_2d, distribution="everywhere")
    assert main(["train-detect", "--config", str(ini)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "distribution = 'everywhere'" in error and "none, mirrored, multi_worker" in error


def test_a_batch_that_does_not_split_among_the_replicas_names_batch_size():
    with pytest.raises(UserError, match=r"batch_size = 3: does not split evenly among the 2 replicas"):
        Placement("mirrored", replicas=2).check_batch_size(3)
    Placement("mirrored", replicas=2).check_batch_size(4)


def test_torch_backend_cannot_distribute(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(UserError, match="needs the tensorflow or jax backend, not torch"):
        place("mirrored")
    assert place("none").replicas == 1


@needs_tensorflow
@pytest.mark.parametrize("tf_config, problem", [(None, "TF_CONFIG environment variable is not set"),
                                                ('{"cluster": {}}', "TF_CONFIG: not JSON with a cluster"),
                                                ("{not json", "TF_CONFIG: not JSON with a cluster")])
def test_multi_worker_needs_a_tf_config(monkeypatch, tf_config, problem):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(UserError, match=problem):
        place("multi_worker")
