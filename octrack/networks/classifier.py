"""What the divide and link networks share: fixed crops around positions, the encoder, settings, loading.

A sample is the region around a position over a time window, cut from whole frames normalised exactly as
detection and prediction normalise them (`FrameReader`). Prepare caches each region larger than the patch:
large enough for any rotation and the smallest zoom of the augmentation (`cached_extent`), so that training
warps cached voxels and never invents any at a patch's corners; without augmentation the patch is the middle
of the region, which is exactly the patch that prediction cuts around the same position.

Training (classifier_training.py) draws samples with weights, the oversampling of rare cases, and calibrates
the network on the validation samples at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import h5py
import numpy as np

from octrack.augment import AugmentSettings, Geometry
from octrack.cache import file_fingerprint, fingerprint
from octrack.calibration import Platt
from octrack.config import ClassifierSection
from octrack.dataset import Dataset
from octrack.frames import ModelFrames, frames_for_model
from octrack.model_folder import ModelSettings, stored
from octrack.networks.organoidtracker.frames import patch_start
from octrack.networks.organoidtracker.settings import CONVENTIONS, OTClassifierSettings
from octrack.patches import centre_crop, cut_region, offset_centred_on
from octrack.time_window import TimeWindow

PREDICT_BATCH = 256
T = TypeVar("T")


@dataclass(frozen=True)
class ClassifierCrops:
    """What shapes the cached samples of a classifier network."""

    patch_shape: tuple[int, int, int]  # (z, y, x)
    extent: tuple[int, int, int]  # (z, y, x) of the region cached around each position
    time_window: TimeWindow
    conventions: str = "octrack"  # or OrganoidTracker's (its normalisation and patch start), to train its models

    def attributes(self) -> dict[str, Any]:
        """The cache file's attributes that training reads back."""
        return {"patch_zyx": self.patch_shape, "extent_zyx": self.extent, "frames": self.time_window.size}

    def regions(self, frames: list[np.ndarray], centres_zyx: np.ndarray,
                frame_offsets_zyx: np.ndarray | None = None) -> np.ndarray:
        """The cached region around each position: its middle is the patch that prediction cuts there (octrack's
        centred patch, in each frame moved by its `frame_offsets_zyx`, or the patch that OrganoidTracker starts
        at round(coordinate − size / 2))."""
        if self.conventions != CONVENTIONS:
            return cut_crops(frames, centres_zyx, self.extent, frame_offsets_zyx=frame_offsets_zyx)
        margin = (np.array(self.extent) - self.patch_shape) // 2
        offsets = [np.array(patch_start(centre, self.patch_shape)) - margin for centre in centres_zyx]
        return cut_crops(frames, centres_zyx, self.extent, np.array(offsets).reshape(-1, 3))


def crops_of(section: ClassifierSection, datasets: list[Dataset],
             organoid_tracker: OTClassifierSettings | None = None, folder: Path | None = None) -> ClassifierCrops:
    """The section's patch shape, no deeper than the deepest images (2D data: 2D patches), and the region
    that its augmentation needs; or, to train an OrganoidTracker model (in `folder`) further, its patch shape
    and time window, cut and normalised as OrganoidTracker does."""
    if organoid_tracker is not None:
        patch = organoid_tracker.input_shape(folder)  # type: ignore[arg-type]
        return ClassifierCrops(patch, cached_extent(patch, section.augment), organoid_tracker.time_window,
                               CONVENTIONS)
    z, y, x = section.patch_shape
    patch = (min(z, max(dataset.images.shape_zyx[0] for dataset in datasets)), y, x)
    return ClassifierCrops(patch, cached_extent(patch, section.augment), section.time_window)


def cached_extent(patch_zyx: tuple[int, int, int], augment: AugmentSettings) -> tuple[int, int, int]:
    """The region that every geometry of the augmentation needs: the largest over rotations at the smallest zoom."""
    angles = np.linspace(0, math.pi / 2, 19) if augment.rotate else [0.0]
    extents = [Geometry(angle=angle, scale=min(augment.scale[0], 1.0)).source_extent(patch_zyx) for angle in angles]
    return tuple(int(value) for value in np.max(extents, axis=0))  # type: ignore[return-value]


def cut_crops(frames: list[np.ndarray], centres_zyx: np.ndarray, extent_zyx: tuple[int, int, int],
              offsets_zyx: np.ndarray | None = None, frame_offsets_zyx: np.ndarray | None = None) -> np.ndarray:
    """(n, z, y, x, frames) float32: the region of `extent` centred on each position (or starting at its
    `offsets_zyx`), in every frame; centred in frame i on the position moved by `frame_offsets_zyx[i]` where
    given (frames, 3): where that frame shows what lies at the position."""
    crops = np.zeros((len(centres_zyx), *extent_zyx, len(frames)), dtype=np.float32)
    moves = np.zeros((len(frames), 3)) if frame_offsets_zyx is None else np.asarray(frame_offsets_zyx, np.float64)
    for index, centre in enumerate(np.asarray(centres_zyx, dtype=np.float64).reshape(-1, 3)):
        for channel, frame in enumerate(frames):
            offset = (offset_centred_on(centre + moves[channel], extent_zyx) if offsets_zyx is None
                      else offsets_zyx[index])
            crops[index, ..., channel] = cut_region(frame, offset, extent_zyx)
    return crops


def warp_crop(region: np.ndarray, patch_zyx: tuple[int, int, int], geometry: Geometry | None) -> np.ndarray:
    """The patch of a cached region: warped by `geometry`, or its middle (the identity) without one."""
    if geometry is None:
        return centre_crop(region, patch_zyx).astype(np.float32)
    return geometry.warp(region.astype(np.float32), patch_zyx, order=1)


def oversampling_weights(kinds: np.ndarray, weight_per_kind: dict[int, float]) -> np.ndarray:
    return np.array([weight_per_kind[int(kind)] for kind in kinds], dtype=np.float64)


def describe_oversampling(labels: np.ndarray, weights: np.ndarray) -> str:
    labels = np.asarray(labels, dtype=bool)
    if not len(labels):
        return "no samples"
    natural = labels.mean()
    drawn = weights[labels].sum() / weights.sum() if weights.sum() else 0.0
    return f"positives {100 * natural:.1f}% of the samples, {100 * drawn:.1f}% of those drawn for training"


# Samples
class SampleSet(Protocol):
    """The samples of one split, in memory, as a network module loads them from its cache."""

    labels: np.ndarray
    weights: np.ndarray  # drawing weight of each sample in training (the oversampling)

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray, rng: np.random.Generator | None) -> Any:
        """Model inputs for the samples, augmented with `rng` (as they are, without)."""


def read_cache(cache_path: Path, read_group: Callable[[h5py.Group], T]) -> tuple[dict[str, list[T]], dict[str, Any]]:
    """Every entry of a classifier cache as `read_group` reads it, by split (train, validation), and the
    cache's attributes plus the voxel size of its first entry."""
    splits: dict[str, list[T]] = {"train": [], "validation": []}
    with h5py.File(cache_path, "r") as cache:
        attributes = dict(cache.attrs)
        for dataset_name in cache:
            for time_name in cache[dataset_name]:
                group = cache[dataset_name][time_name]
                attributes.setdefault("voxel_size_zyx_um", group.attrs["voxel_size_zyx_um"])
                splits[str(group.attrs["split"])].append(read_group(group))
    return splits, attributes


# Model
def encoder(input_shape_zyxc: tuple[int, int, int, int], levels: int, filters: int, name: str = "encoder") -> Any:
    """Convolutions and poolings (pooling z only while there is depth: 2D+time works) to a feature vector."""
    import keras

    from octrack.networks.blocks import conv_block, depths_per_level, pool_plan

    depth, height, width, _ = input_shape_zyxc
    levels = min(levels, int(math.log2(max(1, min(height, width)))))
    plan = pool_plan(depth, levels)
    depths = depths_per_level(depth, plan)
    inputs = keras.Input(shape=input_shape_zyxc, name=f"{name}_input")
    x = inputs
    for level, pool in enumerate(plan):
        x = conv_block(x, filters * 2 ** level, depths[level], f"{name}{level}")
        x = keras.layers.MaxPooling3D(pool, name=f"{name}_pool{level}")(x)
    x = conv_block(x, filters * 2 ** levels, depths[levels], f"{name}_bottom")
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = keras.layers.Dense(8 * filters, activation="relu", name=f"{name}_features")(x)
    return keras.Model(inputs, x, name=name)


def probability_head(x: Any, width: int) -> Any:
    import keras

    x = keras.layers.Dense(width, activation="relu", name="head")(x)
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)


def classification_loss(y_true: Any, y_pred: Any) -> Any:
    """Binary cross-entropy: the class balance comes from the weighted draws, not from the loss."""
    import keras

    return keras.losses.binary_crossentropy(y_true, keras.ops.cast(y_pred, "float32"))


def predict_probabilities(model: Any, inputs: Any) -> np.ndarray:
    """The model's (uncalibrated) probabilities for a batch of inputs of any size."""
    count = len(inputs[next(iter(inputs))]) if isinstance(inputs, dict) else len(inputs)
    if count == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(model.predict(inputs, batch_size=PREDICT_BATCH, verbose=0), dtype=np.float64).reshape(-1)




# Settings and loading
@dataclass(frozen=True, kw_only=True)
class ClassifierSettings(ModelSettings):
    """settings.json of a divide or link model folder."""

    encoder_levels: int = stored()
    encoder_filters: int = stored()
    division_multiplier: float = stored()
    calibration: Platt | None = stored(write=Platt.to_json, read=Platt.from_json, default=None,
                                       omitted_when_none=True)  # fitted on the validation data after training


@dataclass(frozen=True)
class Classifier:
    """A divide or link model folder with its calibration (Platt scaling from settings.json); each network's
    predictor adds how it runs."""

    model: Any
    settings: ClassifierSettings
    model_file: Path

    @property
    def calibration(self) -> Platt:
        return self.settings.calibration or Platt()

    def fingerprint(self, *decoding: Any) -> str:
        """Identifies the model file, its settings and the `decoding` values in force."""
        return fingerprint(file_fingerprint([self.model_file]), self.settings.to_json(), *decoding)

    def frames(self, dataset: Dataset) -> ModelFrames:
        return frames_for_model(dataset, self.settings.voxel_size, self.settings.time_window)


def probability_data(name: str, probability: float) -> dict[str, float]:
    """OrganoidTracker's metadata of a calibrated probability: `NAME_probability` and `NAME_penalty`, −log10 of
    the odds."""
    from octrack.calibration import penalty

    return {f"{name}_probability": round(float(probability), 6),
            f"{name}_penalty": round(float(penalty(np.array([probability]))[0]), 6)}
