"""Shared fixtures: tiny synthetic time lapses (3D and 2D), each test getting its own copy; the Keras backend
in the report header."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from octrack.synth import generate


@pytest.fixture(scope="session")
def _synthetic_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic_3d")
    generate(folder, seed=3, time_points=4, size_xyz=(64, 64, 8), nuclei=6)
    return folder


@pytest.fixture(scope="session")
def _synthetic_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic_2d")
    generate(folder, two_d=True, seed=4, time_points=4, size_xyz=(96, 96, 1), nuclei=8)
    return folder


@pytest.fixture
def movie_3d(_synthetic_3d: Path, tmp_path: Path) -> Path:
    """A private copy of a small synthetic 3D+time lapse with its organoid_tracker.ini."""
    return Path(shutil.copytree(_synthetic_3d, tmp_path / "movie"))


@pytest.fixture
def movie_2d(_synthetic_2d: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(_synthetic_2d, tmp_path / "movie2d"))


def pytest_report_header() -> str:
    import keras

    return f"keras backend: {keras.backend.backend()}"
