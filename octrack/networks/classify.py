"""What the divide and link networks share: fixed crops around positions, the encoder, batches, calibration.

A sample is the region around a position over a time window, cut from whole frames normalised exactly as
detection and prediction normalise them (`FrameReader`). Prepare caches each region larger than the patch:
large enough for any rotation and the smallest zoom of the augmentation (`cached_extent`), so that training
warps cached voxels and never invents any at a patch's corners; without augmentation the patch is the middle
of the region, which is exactly the patch that prediction cuts around the same position.

Training draws samples with weights (the oversampling of rare cases); batch k is a pure function of
(seed, k), so the shared trainer's exact resume holds. After training, Platt scaling is fitted on the
validation samples, which keep their natural class balance, and stored in settings.json.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import h5py
import keras
import numpy as np

from octrack.augment import AugmentSettings, Geometry
from octrack.calibration import (classifier_scores, cross_fitted_calibration_error, fit_platt,
                                 format_reliability, reliability_table)
from octrack.errors import UserError
from octrack.intensity import HIGH_PERCENTILE, LOW_PERCENTILE
from octrack.patches import centre_crop, cut_region, offset_centred_on
from octrack.training import DATA_WORKERS, augment_settings

log = logging.getLogger(__name__)
PREDICT_BATCH = 256
T = TypeVar("T")


@dataclass(frozen=True)
class CropSettings:
    """The config values that shape the cached samples of a classifier network."""

    patch_zyx: tuple[int, int, int]
    extent_zyx: tuple[int, int, int]  # the cached region around each position
    time_window_before: int
    time_window_after: int


def crop_settings(config: Any, section: str, image_depth: int) -> CropSettings:
    """patch_shape (x, y, z) of the section as (z, y, x), no deeper than the images (2D data: 2D patches)."""
    x, y, z = config.get(section, "patch_shape")
    patch = (min(z, image_depth), y, x)
    augment = augment_settings(config, section)
    return CropSettings(patch, cached_extent(patch, augment), config.get(section, "time_window_before"),
                        config.get(section, "time_window_after"))


def cached_extent(patch_zyx: tuple[int, int, int], augment: AugmentSettings) -> tuple[int, int, int]:
    """The region that every geometry of the augmentation needs: the largest over rotations at the smallest zoom."""
    angles = np.linspace(0, math.pi / 2, 19) if augment.rotate else [0.0]
    extents = [Geometry(angle=angle, scale=min(augment.scale[0], 1.0)).source_extent(patch_zyx) for angle in angles]
    return tuple(int(value) for value in np.max(extents, axis=0))  # type: ignore[return-value]


def cut_crops(frames: list[np.ndarray], centres_zyx: np.ndarray, extent_zyx: tuple[int, int, int]) -> np.ndarray:
    """(n, z, y, x, frames) float32: the region of `extent` centred on each position, in every frame."""
    crops = np.zeros((len(centres_zyx), *extent_zyx, len(frames)), dtype=np.float32)
    for index, centre in enumerate(np.asarray(centres_zyx, dtype=np.float64).reshape(-1, 3)):
        offset = offset_centred_on(centre, extent_zyx)
        for channel, frame in enumerate(frames):
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


# Samples and batches
class SampleSet(Protocol):
    """The samples of one split, in memory, as a network module loads them from its cache."""

    labels: np.ndarray
    weights: np.ndarray  # drawing weight of each sample in training (the oversampling)

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray, rng: np.random.Generator | None) -> Any:
        """Model inputs for the samples, augmented with `rng` (as they are, without)."""


class TrainingSamples(keras.utils.PyDataset):
    """Endless weighted draws; batch i is made from the seed and `first_step + i` alone."""

    def __init__(self, samples: SampleSet, batch_size: int, seed: int, first_step: int,
                 workers: int = DATA_WORKERS):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.samples, self.batch_size, self.seed, self.first_step = samples, batch_size, seed, first_step
        self.probabilities = samples.weights / samples.weights.sum()

    @property
    def num_batches(self) -> None:
        return None

    def __getitem__(self, index: int) -> tuple[Any, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.first_step + index])
        indices = rng.choice(len(self.samples), size=self.batch_size, p=self.probabilities)
        return self.samples.batch(indices, rng), _targets(self.samples.labels[indices])


class ValidationSamples(keras.utils.PyDataset):
    """Every sample once, in order, not augmented; the same every epoch."""

    def __init__(self, samples: SampleSet, batch_size: int):
        super().__init__()
        self.samples, self.batch_size = samples, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[Any, np.ndarray]:
        indices = np.arange(index * self.batch_size, min((index + 1) * self.batch_size, len(self.samples)))
        return self.samples.batch(indices, None), _targets(self.samples.labels[indices])


def _targets(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels, dtype=np.float32).reshape(-1, 1)


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
    x = keras.layers.Dense(width, activation="relu", name="head")(x)
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="probability")(x)


def classification_loss(y_true: Any, y_pred: Any) -> Any:
    """Binary cross-entropy: the class balance comes from the weighted draws, not from the loss."""
    return keras.losses.binary_crossentropy(y_true, keras.ops.cast(y_pred, "float32"))


def predict_probabilities(model: Any, inputs: Any) -> np.ndarray:
    """The model's (uncalibrated) probabilities for a batch of inputs of any size."""
    count = len(inputs[next(iter(inputs))]) if isinstance(inputs, dict) else len(inputs)
    if count == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(model.predict(inputs, batch_size=PREDICT_BATCH, verbose=0), dtype=np.float64).reshape(-1)


# Training
class ClassifierTraining:
    """A classifier network as the shared trainer sees it; the network module supplies its samples and model."""

    name: str
    section: str

    def __init__(self, config: Any, cache_path: Path, splits: dict[str, SampleSet], cache_attributes: dict[str, Any]):
        self.values = {key: config.get(self.section, key) for key in (
            "time_window_before", "time_window_after", "encoder_levels", "encoder_filters", "division_multiplier")}
        self.augment = augment_settings(config, self.section)
        self.cache_attributes = cache_attributes
        self.patch_zyx = tuple(int(value) for value in cache_attributes["patch_zyx"])
        self.training, self.validation = splits["train"], splits["validation"]
        if not len(self.training) or not self.training.labels.any():
            raise UserError(f"{config.path} [prepare]: no {self.name} training samples with a positive label "
                            f"({len(self.training)} samples); the training time points need annotated "
                            f"{'divisions' if self.name == 'divide' else 'links'} (use_for_N = train or both)")
        if not len(self.validation):
            log.warning(f"{config.path} [prepare]: no validation time points for the {self.name} network: it is "
                        f"calibrated and scored on the training data, which overstates how well it does")
            self.validation = self.training

    @property
    def window(self) -> int:
        return self.values["time_window_before"] + 1 + self.values["time_window_after"]

    def loss(self) -> Any:
        return classification_loss

    def training_batches(self, batch_size: int, seed: int, first_step: int) -> TrainingSamples:
        return TrainingSamples(self.training, batch_size, seed, first_step)

    def validation_batches(self, batch_size: int) -> ValidationSamples:
        return ValidationSamples(self.validation, batch_size)

    def samples_per_pass(self) -> int:
        return len(self.training)

    def settings(self) -> dict[str, Any]:
        voxel = np.asarray(self.cache_attributes["voxel_size_zyx_um"], dtype=float)
        return {
            "network": self.name,
            "time_window": [self.values["time_window_before"], self.values["time_window_after"]],
            "patch_shape_xyz": list(reversed(self.patch_zyx)),
            "voxel_size_um_xyz": [float(voxel[2]), float(voxel[1]), float(voxel[0])],
            "normalization": {"method": "percentiles of each whole frame", "low_percentile": LOW_PERCENTILE,
                              "high_percentile": HIGH_PERCENTILE},
            "encoder_levels": self.values["encoder_levels"], "encoder_filters": self.values["encoder_filters"],
            "division_multiplier": self.values["division_multiplier"],
            "augmentation": asdict(self.augment),
            **self.network_settings(),
        }

    def network_settings(self) -> dict[str, Any]:
        return {}

    def final_report(self, model: Any) -> dict[str, Any]:
        probabilities = np.asarray(model.predict(ValidationSamples(self.validation, PREDICT_BATCH), verbose=0),
                                   dtype=np.float64).reshape(-1)
        return calibration_report(probabilities, self.validation.labels)


def calibration_report(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Platt scaling fitted on the validation samples, and the scores before and after it."""
    platt = fit_platt(probabilities, labels)
    calibrated = platt(probabilities)
    before, after = classifier_scores(probabilities, labels), classifier_scores(calibrated, labels)
    table_before, table_after = reliability_table(probabilities, labels), reliability_table(calibrated, labels)
    cross_fitted = cross_fitted_calibration_error(probabilities, labels)
    scores = {"validation samples": before["samples"], "validation positives": before["positives"],
              "precision (calibrated, p >= 0.5)": after["precision"],
              "recall (calibrated, p >= 0.5)": after["recall"],
              "roc auc": after["roc_auc"], "average precision": after["average_precision"],
              "ece before calibration": before["ece"], "ece after calibration": after["ece"],
              "ece after calibration, cross-fitted": cross_fitted,
              "platt a, b": f"{platt.a:.4f}, {platt.b:.4f}",
              "reliability (validation)": "\n" + format_reliability(table_before, table_after)}
    validation = {"before_calibration": before, "after_calibration": after,
                  "ece_after_calibration_cross_fitted": cross_fitted,
                  "reliability_before": [asdict(row) for row in table_before],
                  "reliability_after": [asdict(row) for row in table_after]}
    return {"scores": scores, "settings": {"calibration": platt.to_json(), "validation_scores": validation}}
