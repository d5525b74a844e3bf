"""Training the divide and link networks: weighted draws of augmented samples, and calibration at the end.

After training, Platt scaling is fitted on the validation samples, which keep their natural class balance,
and stored in settings.json.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import keras
import numpy as np

from octrack.calibration import (Platt, classifier_scores, cross_fitted_calibration_error, fit_platt,
                                 format_reliability, reliability_table)
from octrack.config import ClassifierSection
from octrack.errors import UserError
from octrack.intensity import HIGH_PERCENTILE, LOW_PERCENTILE
from octrack.networks.classifier import PREDICT_BATCH, ClassifierSettings, SampleSet, classification_loss
from octrack.tracking import VoxelSize
from octrack.training import DATA_WORKERS, FinalReport, SeededBatches

log = logging.getLogger(__name__)


class TrainingSamples(SeededBatches):
    """Endless weighted draws of augmented samples."""

    def __init__(self, samples: SampleSet, batch_size: int, seed: int, first_step: int,
                 workers: int = DATA_WORKERS):
        super().__init__(seed, first_step, workers)
        self.samples, self.batch_size = samples, batch_size
        self.probabilities = samples.weights / samples.weights.sum()

    def make_batch(self, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
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


class ClassifierTraining:
    """A classifier network as the engine sees it: the network module supplies its samples (by split, with the
    cache's attributes), its model builder and its settings class with any fields of its own."""

    def __init__(self, name: str, section: ClassifierSection, samples: tuple[dict[str, SampleSet], dict[str, Any]],
                 build: Callable[[tuple[int, int, int], int, int, int], Any], settings_kind: type[ClassifierSettings],
                 own_settings: dict[str, Any] | None = None):
        splits, self.cache_attributes = samples
        self.name, self.section, self.build = name, section, build
        self.settings_kind, self.own_settings = settings_kind, own_settings or {}
        self.patch_zyx = tuple(int(value) for value in self.cache_attributes["patch_zyx"])
        self.training, self.validation = splits["train"], splits["validation"]
        if not len(self.training) or not self.training.labels.any():
            raise UserError(f"{section.config_file} [prepare]: no {name} training samples with a positive label "
                            f"({len(self.training)} samples); the training time points need annotated "
                            f"{'divisions' if name == 'divide' else 'links'} (use_for_N = train or both)")
        if not len(self.validation):
            log.warning(f"{section.config_file} [prepare]: no validation time points for the {name} network: it is "
                        f"calibrated and scored on the training data, which overstates how well it does")
            self.validation = self.training

    def build_model(self) -> Any:
        return self.build(self.patch_zyx, self.section.time_window.size, self.section.encoder_levels,
                          self.section.encoder_filters)

    def loss(self) -> Any:
        return classification_loss

    def training_batches(self, batch_size: int, seed: int, first_step: int) -> TrainingSamples:
        return TrainingSamples(self.training, batch_size, seed, first_step)

    def validation_batches(self, batch_size: int) -> ValidationSamples:
        return ValidationSamples(self.validation, batch_size)

    def samples_per_pass(self) -> int:
        return len(self.training)

    def settings(self) -> ClassifierSettings:
        z_um, y_um, x_um = (float(value) for value in self.cache_attributes["voxel_size_zyx_um"])
        section = self.section
        return self.settings_kind(
            network=self.name, time_window=section.time_window, patch_shape=self.patch_zyx,
            voxel_size=VoxelSize(x_um, y_um, z_um), mixed_precision=section.mixed_precision,
            normalization={"method": "percentiles of each whole frame", "low_percentile": LOW_PERCENTILE,
                           "high_percentile": HIGH_PERCENTILE},
            augmentation=asdict(section.augment), encoder_levels=section.encoder_levels,
            encoder_filters=section.encoder_filters, division_multiplier=section.division_multiplier,
            **self.own_settings)

    def final_report(self, model: Any) -> FinalReport:
        probabilities = np.asarray(model.predict(ValidationSamples(self.validation, PREDICT_BATCH), verbose=0),
                                   dtype=np.float64).reshape(-1)
        scores, platt, validation = calibration_report(probabilities, self.validation.labels)
        return FinalReport(scores, self.settings().replace(calibration=platt, validation_scores=validation))


def calibration_report(probabilities: np.ndarray, labels: np.ndarray
                       ) -> tuple[dict[str, Any], Platt, dict[str, Any]]:
    """Platt scaling fitted on the validation samples; the scores before and after it, to print and to store."""
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
    return scores, platt, validation
