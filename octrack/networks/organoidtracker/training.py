"""Training an OrganoidTracker model further (`pretrained_model_path` = its folder) with octrack's trainer.

OrganoidTracker's advice to users with little data is to start from one of its published models. Here its
architecture (its `model.keras`, loaded without compiling) is trained further on the user's annotations by
octrack's engine (checkpoints, exact resume, best model, logs, early stopping), and the result keeps
OrganoidTracker's conventions so that OrganoidTracker can run it as well as octrack:

* the training crops are normalised as OrganoidTracker's predictors normalise (frames.py), over the model's
  own time window (its settings.json), at the images' own pixels;
* the positions network learns OrganoidTracker's target, not octrack's: `ot_target` draws OrganoidTracker's
  distance-map blob (see there) and blurs it in y and x as OrganoidTracker's loss does, so that the output
  keeps its scale (about 1 at a nucleus centre; OrganoidTracker's peak threshold 0.1 keeps its meaning).
  The loss is octrack's masked squared error with foreground and background weighted equally
  (`detection_loss`), as OrganoidTracker's loss weighs them equally too; it also ignores what is not
  annotated and a band along the crops' edges as wide as the target reaches;
* patches of the positions network have the model's depth in z (its input fixes it) and sizes in y and x that
  are multiples of 32; the division and link networks take the patch shape their settings.json names, started
  at round(coordinate − size / 2) as OrganoidTracker starts them, and the link network gets its three inputs
  (coordinate channels, the reversed second input, the displacement in whole pixels);
* the division and link networks learn with binary cross-entropy, as OrganoidTracker's do, and are
  calibrated at the end on the validation samples into OrganoidTracker's `platt_scaling`, `platt_intercept`;
* the model folder written at the end holds OrganoidTracker's settings.json fields (`type`, `time_window` as
  signed offsets) next to octrack's (the peak threshold that scored best on the validation data, the voxel
  size of the data, the training record), and the model is saved without optimizer state or loss, so that
  OrganoidTracker's loader, which compiles with its own loss, loads it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octrack.config import ClassifierSection, DetectSection, TrainSection
from octrack.devices import AUTO_PRECISION
from octrack.errors import UserError
from octrack.frames import NormalizedFrame
from octrack.model_folder import MODEL_FILE, OrganoidTrackerSettings, load_keras_model, load_settings
from octrack.networks.classifier import PREDICT_BATCH
from octrack.networks.classifier_training import ClassifierTraining, ValidationSamples, calibration_report
from octrack.networks.detect_training import THRESHOLDS, Crop, DetectTraining, load_crops, validation_report
from octrack.networks.organoidtracker.frames import QUANTILES
from octrack.networks.organoidtracker.positions import (DEFAULT_MIN_DISTANCE_PX, model_depth, positions_of_tiles,
                                                        tile_outputs)
from octrack.networks.organoidtracker.settings import OTClassifierSettings, OTPositionsSettings
from octrack.training import FinalReport
from octrack.tracking import VoxelSize

log = logging.getLogger(__name__)

# OrganoidTracker's positions target: the reach of a nucleus' blob in pixels (z, y, x), the sharpness of the
# soft maximum, the squared width of the bell, and the blur of its loss (σ in pixels, taps at offsets -1…2)
REACH_ZYX_PX = (3.0, 16.0, 16.0)
SOFT_MAXIMUM_SHARPNESS = 20.0
BELL_WIDTH_SQUARED = 0.125
BLUR_SIGMA_PX = 1.5
BLUR_TAPS = (-1, 0, 1, 2)
TARGET_BAND_ZYX_PX = (3, 18, 18)  # how far a nucleus' blurred target reaches
YX_MULTIPLE = 32  # the positions network pools y and x five times
OT_THRESHOLDS = (0.05, *THRESHOLDS)  # peak thresholds tried on the validation data
NORMALIZATION = {"method": "OrganoidTracker: quantiles of the time window's whole frames, clipped to 0..1",
                 "low_quantile": QUANTILES[0], "high_quantile": QUANTILES[1]}


def ot_target(points_zyx: np.ndarray, shape_zyx: tuple[int, int, int], sigma_zyx_px: Any = None) -> np.ndarray:
    """OrganoidTracker's training target for its positions network (the sigma of octrack's target is unused).

    For a voxel v and a nucleus centre c, r = |(v − c) / REACH| (an ellipsoid of 3 × 16 × 16 pixels) and
    d = 1 − min(r, 1). Over all centres, S = Σ d and M = ln(1 + Σ (e^(20 d) − 1)) / 20 (a soft maximum of d);
    D = min(1, 1 − 2M + S), which is r near a lone nucleus and rises between touching ones. The blob is the
    bell (e^(−D² / 0.25) − e^(−4)) / (1 − e^(−4)): 1 at a centre, 0 from r = 1 on. Last, it is blurred in y
    and x by a normalised Gaussian of σ 1.5 pixels over four taps (offsets −1, 0, 1, 2, as a 'same'
    convolution with an even kernel places them), as OrganoidTracker's loss blurs it and its network blurs
    its own output."""
    reach = np.asarray(REACH_ZYX_PX)
    total = np.zeros(shape_zyx, dtype=np.float64)
    exponentials = np.zeros(shape_zyx, dtype=np.float64)
    for centre in np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3):
        low = np.maximum(np.ceil(centre - reach).astype(int), 0)
        high = np.minimum(np.floor(centre + reach).astype(int) + 1, shape_zyx)
        if np.any(high <= low):
            continue
        axes = [(np.arange(a, b) - c) / r for a, b, c, r in zip(low, high, centre, reach)]
        distance = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)
        inverted = 1 - np.minimum(distance, 1)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        total[box] += inverted
        exponentials[box] += np.expm1(SOFT_MAXIMUM_SHARPNESS * inverted)
    soft_maximum = np.log1p(exponentials) / SOFT_MAXIMUM_SHARPNESS
    spread = np.minimum(1 - 2 * soft_maximum + total, 1)
    floor = np.exp(-1 / (2 * BELL_WIDTH_SQUARED))
    blob = (np.exp(-spread ** 2 / (2 * BELL_WIDTH_SQUARED)) - floor) / (1 - floor)
    return _blur_yx(blob).astype(np.float32)


def _blur_yx(volume: np.ndarray) -> np.ndarray:
    taps = np.asarray(BLUR_TAPS)
    weights = np.exp(-taps ** 2 / (2 * BLUR_SIGMA_PX ** 2))
    weights /= weights.sum()
    for axis in (1, 2):
        padded = np.pad(volume, [(0, 0)] * axis + [(-taps[0], taps[-1])] + [(0, 0)] * (2 - axis))
        size = volume.shape[axis]
        volume = sum(weight * np.take(padded, np.arange(size) + tap - taps[0], axis=axis)
                     for weight, tap in zip(weights, taps))
    return volume


@dataclass(frozen=True)
class OTDecoding:
    """OrganoidTracker's decoding (`octrack.networks.organoidtracker.positions`) on a validation crop: tiles as
    wide as the crop (plus the buffers), not OrganoidTracker's 384 pixels, to keep validation fast."""

    min_distance_px: int

    def output(self, model: Any, frames: list[np.ndarray]) -> tuple[list[Any], tuple[int, ...]]:
        tile_yx = tuple(-(-size // YX_MULTIPLE) * YX_MULTIPLE for size in frames[0].shape[1:])
        normalized = [NormalizedFrame(frame, 0.0, 1.0) for frame in frames]  # outside the crop: 0
        return list(tile_outputs(model, normalized, tile_yx)), frames[0].shape  # type: ignore[arg-type]

    def peaks(self, output: tuple[list[Any], tuple[int, ...]], thresholds: tuple[float, ...],
              voxel_size_zyx_um: np.ndarray) -> list[np.ndarray]:
        """OrganoidTracker's peak caller once per threshold, as OrganoidTracker would run it."""
        tiles, shape = output
        return [positions_of_tiles(tiles, threshold, self.min_distance_px, shape) for threshold in thresholds]


def _require_float32(section: TrainSection, folder: Path) -> None:
    if section.mixed_precision not in ("float32", AUTO_PRECISION):
        raise UserError(f"{section.config_file} [{section.name}] mixed_precision = {section.mixed_precision}: "
                        f"OrganoidTracker's models compute in float32; set mixed_precision = float32 to train "
                        f"{folder} further")


class OTPositionsTraining(DetectTraining):
    """OrganoidTracker's positions network as the engine sees it, trained further from its folder."""

    def __init__(self, section: DetectSection, cache_path: Path, folder: Path):
        _require_float32(section, folder)
        self.ot_settings = load_settings(folder, OTPositionsSettings)
        self.model = load_keras_model(folder / MODEL_FILE, "OrganoidTracker's positions model (model.keras)")
        super().__init__(section, cache_path)

    render = staticmethod(ot_target)

    def _load_crops(self, cache_path: Path) -> list[Crop]:
        return load_crops(cache_path, self.section.target_sigma_um, TARGET_BAND_ZYX_PX)

    def _patch_shape(self, crops: list[Crop]) -> tuple[int, int, int]:
        """The model's depth in z; y and x of the section's patch_shape, rounded up to multiples of 32."""
        z, y, x = self.section.patch_shape
        shape = (model_depth(self.model), *(-(-size // YX_MULTIPLE) * YX_MULTIPLE for size in (y, x)))
        if shape != (z, y, x):
            log.info(f"{self.section.config_file} [{self.section.name}] patch_shape: x, y, z = {x}, {y}, {z}; "
                     f"OrganoidTracker's positions model takes z = {shape[0]} and x, y in multiples of "
                     f"{YX_MULTIPLE}, so patches are x, y, z = {shape[2]}, {shape[1]}, {shape[0]}")
        return shape  # type: ignore[return-value]

    def build_model(self) -> Any:
        return self.model

    def settings(self) -> OrganoidTrackerSettings:
        z_um, y_um, x_um = (float(value) for value in self.training_crops[0].voxel_size_zyx_um)
        return OTPositionsSettings(
            ot_type=OTPositionsSettings.OT_TYPE, network=self.name, time_window=self.ot_settings.time_window,
            voxel_size=VoxelSize(x_um, y_um, z_um), mixed_precision=self.section.mixed_precision,
            normalization=NORMALIZATION, augmentation=asdict(self.section.augment),
            peak_threshold=self.section.peak_threshold)

    def final_report(self, model: Any) -> FinalReport:
        scores = validation_report(model, self.validation_crops, OTDecoding(DEFAULT_MIN_DISTANCE_PX),
                                   self.section.match_distance_um, self.section.peak_threshold, OT_THRESHOLDS)
        report = {f"validation {key}": value for key, value in scores.items()}
        report["OrganoidTracker"] = (f"set threshold = {scores['threshold']:g} in [predict_positions] of "
                                     f"OrganoidTracker's ini (octrack reads it from settings.json)")
        return FinalReport(report, self.settings().replace(peak_threshold=scores["threshold"],
                                                           validation_scores=scores))


class OTClassifierTraining(ClassifierTraining):
    """OrganoidTracker's division or link network as the engine sees it, trained further from its folder.

    Its samples are cut and normalised as OrganoidTracker's predictors cut them (divide.py and link.py cache
    them so, and the link samples come as OrganoidTracker's three inputs); the loss is binary cross-entropy, as
    OrganoidTracker's; at the end Platt scaling is fitted on the validation samples, sigmoid(a · logit(p) + b),
    and written as OrganoidTracker's `platt_scaling` = a and `platt_intercept` = b."""

    def __init__(self, name: str, section: ClassifierSection, samples: tuple[dict[str, Any], dict[str, Any]],
                 kind: type[OTClassifierSettings], folder: Path):
        _require_float32(section, folder)
        self.ot_settings = load_settings(folder, kind)
        self.ot_settings.input_shape(folder)
        self.model = load_keras_model(folder / MODEL_FILE, f"OrganoidTracker's {kind.OT_TYPE} model (model.keras)")
        super().__init__(name, section, samples, lambda *shape: self.model, kind)

    def settings(self) -> OTClassifierSettings:
        z_um, y_um, x_um = (float(value) for value in self.cache_attributes["voxel_size_zyx_um"])
        return self.settings_kind(
            ot_type=self.settings_kind.OT_TYPE, network=self.name, time_window=self.ot_settings.time_window,
            patch_shape=self.ot_settings.patch_shape, voxel_size=VoxelSize(x_um, y_um, z_um),
            mixed_precision=self.section.mixed_precision, normalization=NORMALIZATION,
            augmentation=asdict(self.section.augment))

    def final_report(self, model: Any) -> FinalReport:
        probabilities = np.asarray(model.predict(ValidationSamples(self.validation, PREDICT_BATCH), verbose=0),
                                   dtype=np.float64).reshape(-1)
        scores, platt, validation = calibration_report(probabilities, self.validation.labels)
        return FinalReport(scores, self.settings().replace(platt_scaling=platt.a, platt_intercept=platt.b,
                                                           validation_scores=validation))
