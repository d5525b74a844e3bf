"""Where octrack runs: `octrack --version` and `octrack doctor`, mixed_precision = auto, the backend choice."""

from __future__ import annotations

import pytest

from octrack import devices
from octrack.cli import main


def test_version_names_the_backend_the_devices_and_mixed_precision(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("octrack ") and lines[1].startswith("Keras ") and "backend" in lines[1]
    assert lines[2].startswith("devices: ") and lines[3].startswith("mixed precision: ")


def test_doctor_adds_threads_and_cpu_features(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "threads: " in out and "CPU: " in out and "mixed precision: " in out


def test_auto_precision_is_float16_on_a_gpu_and_float32_on_the_cpu(monkeypatch):
    monkeypatch.setattr(devices, "accelerators", lambda: ())
    assert devices.resolve_precision("auto") == "float32"
    assert devices.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(devices, "accelerators", lambda: ("GPU:0 NVIDIA GeForce RTX 2080 Ti",))
    assert devices.resolve_precision("auto") == "mixed_float16"
    assert "on (mixed_float16)" in devices.describe_briefly()


def test_the_torch_backend_is_chosen_where_cuda_torch_is_installed_and_none_is_set(monkeypatch):
    installed = {"torch", "nvidia-cuda-runtime-cu12"}
    monkeypatch.setattr(devices, "_installed", lambda package: package in installed)
    monkeypatch.setenv("KERAS_BACKEND", "")  # recorded, so that what choose_backend sets is undone after the test
    monkeypatch.delenv("KERAS_BACKEND")
    devices.choose_backend()
    assert devices.os.environ["KERAS_BACKEND"] == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # the user's choice wins
    devices.choose_backend()
    assert devices.os.environ["KERAS_BACKEND"] == "jax"
    monkeypatch.delenv("KERAS_BACKEND")
    installed.discard("nvidia-cuda-runtime-cu12")  # PyTorch's CPU build: no choice made
    devices.choose_backend()
    assert "KERAS_BACKEND" not in devices.os.environ


@pytest.mark.parametrize("user_value, expected", [(None, "1"), ("0", "0")])
def test_importing_octrack_turns_tensorflows_onednn_kernels_on_unless_the_user_chose(user_value, expected):
    """TensorFlow leaves oneDNN off on CPUs without AVX-512 VNNI, where its own convolutions are 2–3.4× slower."""
    import os
    import subprocess
    import sys

    environment = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if user_value is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = user_value
    shown = subprocess.run([sys.executable, "-c", "import os, octrack; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"],
                           env=environment, capture_output=True, text=True, check=True).stdout.strip()
    assert shown == expected


def test_doctor_says_whether_tensorflows_onednn_kernels_are_on(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    if devices.backend() == "tensorflow":
        assert "TensorFlow's oneDNN CPU kernels: on" in out
    else:
        assert "oneDNN" not in out


def test_stderr_without_keeps_what_a_library_writes_except_the_noise(capfd):
    import os

    with devices.stderr_without(("oneDNN custom operations are on",)):
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see...\n")
        os.write(2, b"a real problem\n")
    assert capfd.readouterr().err == "a real problem\n"


def test_a_command_that_imports_tensorflow_writes_no_notices_to_stderr(tmp_path):
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-m", "octrack", "doctor"], capture_output=True, text=True,
                              cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "TensorFlow" in finished.stdout or "backend" in finished.stdout
    assert finished.stderr == ""
