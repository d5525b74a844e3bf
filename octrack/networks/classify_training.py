"""Training the divide and link networks: weighted draws of augmented samples, and calibration at the end.

Batch k of a run is drawn with a random generator seeded by (seed, k) alone, so a resumed run draws the
same batches as an uninterrupted one, whichever worker thread makes them. After training, Platt scaling is
fitted on the validation samples, which keep their natural class balance, and stored in settings.json.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np

from octrack.calibration import (classifier_scores, cross_fitted_calibration_error, fit_platt,
                                 format_reliability, reliability_table)
from octrack.errors import UserError
from octrack.intensity import HIGH_PERCENTILE, LOW_PERCENTILE
from octrack.networks import divide, link
from octrack.networks.classify import PREDICT_BATCH, SampleSet, classification_loss
from octrack.training import DATA_WORKERS, augment_settings

log = logging.getLogger(__name__)


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


class DivideTraining(ClassifierTraining):
    name = divide.NAME
    section = divide.SECTION

    def __init__(self, config: Any, cache_path: Path):
        splits, attributes = divide.load_samples(cache_path, config.get(divide.SECTION, "division_multiplier"),
                                                 augment_settings(config, divide.SECTION))
        super().__init__(config, cache_path, splits, attributes)

    def build_model(self) -> Any:
        return divide.build_model(self.patch_zyx, self.window, self.values["encoder_levels"], self.values["encoder_filters"])


class LinkTraining(ClassifierTraining):
    name = link.NAME
    section = link.SECTION

    def __init__(self, config: Any, cache_path: Path):
        splits, attributes = link.load_samples(cache_path, config.get(link.SECTION, "division_multiplier"),
                                               augment_settings(config, link.SECTION))
        self.candidate_factor = float(attributes["link_candidate_factor"])
        super().__init__(config, cache_path, splits, attributes)

    def build_model(self) -> Any:
        return link.build_model(self.patch_zyx, self.window, self.values["encoder_levels"], self.values["encoder_filters"])

    def network_settings(self) -> dict[str, Any]:
        return {"link_candidate_factor": self.candidate_factor, "max_partners": link.DEFAULT_MAX_PARTNERS,
                "displacement_scale_um": link.DISPLACEMENT_SCALE_UM}
