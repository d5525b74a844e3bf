"""What a network module provides to the stages above it (see `Network`), and the shapes of what it hands them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from octrack.cache import CacheEntry
from octrack.config import Config, PredictSection, TrainSection
from octrack.dataset import Dataset
from octrack.frames import FrameReader, ModelFrames
from octrack.model_folder import ModelSettings
from octrack.tracking import Tracking


@dataclass
class NetworkCache:
    """How one network's cache is made: its entries per dataset (from the frames that `reader` reads), its file
    attributes, its printed summary."""

    entries: Callable[[Dataset, dict[int, str], FrameReader], list[CacheEntry]]
    attributes: dict[str, Any]
    summary: Callable[[Path], str]
    reader: Callable[[Dataset], FrameReader] = FrameReader


class Predictor(Protocol):
    """A loaded model folder of one network, as the predict stage runs it over the time points of a dataset.

    For each time point the stage asks `predict` for rows of numbers (they go into the progress file, so an
    interrupted run resumes), then gives all rows back to `apply`, which adds them to the tracking."""

    settings: ModelSettings

    def fingerprint(self) -> str:
        """Identifies the model and every value that changes its results (rows of another are never reused)."""

    def frames(self, dataset: Dataset) -> ModelFrames:
        """The dataset's frames as this model sees them (normalised, at its voxel size, over its time window)."""

    def time_points(self, tracking: Tracking, dataset: Dataset) -> list[int]:
        """The time points this step predicts, given what the tracking holds so far."""

    def predict(self, frames: ModelFrames, tracking: Tracking, time_point: int) -> np.ndarray:
        """The rows of one time point."""

    def apply(self, tracking: Tracking, time_point: int, rows: list[list[float]]) -> None:
        """Adds the rows of one time point to the tracking (positions, or metadata, or links)."""


class Network(Protocol):
    """What a network module (networks/detect.py, divide.py, link.py) provides; the registry lists the modules.

    NAME is the network's name (`octrack train-NAME`, `model_NAME/`, `NAME.h5`); SECTION its ini section;
    STEP the `octrack predict` step it runs; FALLBACK what the tracker uses where there is no such model;
    SETTINGS the class of its settings.json."""

    NAME: str
    SECTION: str
    STEP: str
    FALLBACK: str
    SETTINGS: type[ModelSettings]  # its settings.json

    def read_section(self, config: Config) -> TrainSection:
        """Its [train_NAME] section, typed."""

    def cache(self, section: TrainSection, datasets: list[Dataset]) -> NetworkCache:
        """How prepare caches its training samples."""

    def training(self, section: TrainSection, cache_path: Path) -> Any:
        """Its `octrack.training.NetworkTraining` on a prepared cache."""

    def load(self, folder: Path, predict: PredictSection) -> Predictor:
        """A model folder of its kind, ready to predict with the decoding values of [predict]."""
