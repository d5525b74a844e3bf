"""Backend neutrality: the model, loss and trainer tests pass again with KERAS_BACKEND=torch.

Users on GPU machines run octrack on PyTorch; the suite itself runs on TensorFlow, so this test runs the
modules that build, train, resume, save and load the three networks once more in a subprocess on torch
(the CPU wheel, `pip install -e .[torch]`; scripts/setup_env.sh installs it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["tests/test_detect_network.py", "tests/test_detection_pipeline.py", "tests/test_classifiers.py",
           "tests/test_training.py"]
# Resuming after an interruption and training a saved model further are backend-neutral once saving, loading
# and resuming are (test_training.py runs those on torch); their slower per-network variants run on TensorFlow only.
ON_TENSORFLOW_ONLY = "not test_interrupted_training_resumes_and_matches and not test_pretrained_model_is_trained_further"


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="this run already uses the torch backend")
@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="torch is not installed (pip install -e .[torch], as scripts/setup_env.sh does)")
def test_model_and_trainer_tests_pass_with_the_torch_backend(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'torch'}", "-k", ON_TENSORFLOW_ONLY, *MODULES],
        cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "torch"}, capture_output=True, text=True, timeout=600)
    assert "keras backend: torch" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
