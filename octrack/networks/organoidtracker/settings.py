"""The settings.json of each kind of OrganoidTracker model folder, typed (see
`octrack.model_folder.OrganoidTrackerSettings` for the fields they share), and OrganoidTracker's calibration."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from octrack.calibration import sigmoid
from octrack.config import TrainSection
from octrack.errors import UserError
from octrack.model_folder import OrganoidTrackerSettings, SettingsT, is_organoid_tracker_folder, load_settings, stored

log = logging.getLogger(__name__)
CONVENTIONS = "organoidtracker"  # how training crops are cut and normalised to train one of its models further

# octrack's names of the networks (the registry's); tests/test_organoidtracker.py checks that they agree
POSITIONS_NETWORK, DIVISIONS_NETWORK, LINKS_NETWORK = "detect", "divide", "link"


@dataclass(frozen=True, kw_only=True)
class OTPositionsSettings(OrganoidTrackerSettings):
    """An OrganoidTracker positions (nucleus centre) model: `{"type": "positions", "time_window": [0, 1]}`.

    octrack adds, to the folders of the models it trains further, the peak threshold that scored best on the
    validation data (OrganoidTracker reads its threshold from its own ini instead)."""

    NETWORK = POSITIONS_NETWORK
    OT_TYPE = "positions"
    peak_threshold: float | None = stored(default=None, omitted_when_none=True)


@dataclass(frozen=True, kw_only=True)
class OTClassifierSettings(OrganoidTrackerSettings):
    """An OrganoidTracker division or link model: with `patch_shape_zyx` and the Platt calibration of its
    output, `platt_intercept` (a) and `platt_scaling` (b); absent, they mean a = 0, b = 1."""

    platt_intercept: float | None = stored(default=None, omitted_when_none=True)
    platt_scaling: float | None = stored(default=None, omitted_when_none=True)

    def input_shape(self, folder: Path) -> tuple[int, int, int]:
        """The model's patch shape (z, y, x), which these models' settings must name."""
        if self.patch_shape is None:
            raise UserError(f"{folder}: its settings.json has no patch_shape_zyx, which an OrganoidTracker "
                            f"{self.OT_TYPE} model needs; add it (z, y, x of the model's input) or train it again")
        return self.patch_shape

    def log10_odds(self, raw: np.ndarray) -> np.ndarray:
        """The calibrated log10 odds L of raw network outputs, as OrganoidTracker computes them (the ratio in
        float32, as it is there): L = log10(e^a) + b · (log10(p + 1e-10) − log10(1 − p + 1e-10)). The
        probability is 10^L / (1 + 10^L) = sigmoid(a + b · logit(p)); the penalty is −L."""
        intercept = np.log10(np.exp(np.float64(0.0 if self.platt_intercept is None else self.platt_intercept)))
        scaling = np.float32(1.0 if self.platt_scaling is None else self.platt_scaling)
        p = np.asarray(raw, dtype=np.float32).reshape(-1)
        ratio = np.log10(p + np.float32(1e-10)) - np.log10(np.float32(1.0) - p + np.float32(1e-10))
        return intercept + (scaling * ratio).astype(np.float64)


def probability_data(name: str, log10_odds: float) -> dict[str, float]:
    """OrganoidTracker's metadata of a calibrated output: `NAME_probability` = 10^L / (1 + 10^L) and
    `NAME_penalty` = −L."""
    probability = float(sigmoid(np.log(10.0) * float(log10_odds)))
    return {f"{name}_probability": probability, f"{name}_penalty": -float(log10_odds)}


@dataclass(frozen=True, kw_only=True)
class OTDivisionSettings(OTClassifierSettings):
    NETWORK = DIVISIONS_NETWORK
    OT_TYPE = "divisions"


@dataclass(frozen=True, kw_only=True)
class OTLinkSettings(OTClassifierSettings):
    NETWORK = LINKS_NETWORK
    OT_TYPE = "links"


def pretrained_organoid_tracker(section: TrainSection, kind: type[SettingsT]) -> SettingsT | None:
    """The settings of the OrganoidTracker folder that `pretrained_model_path` names (the folder or its
    model.keras), or None where it names no OrganoidTracker folder; a folder of another type is a UserError."""
    folder = pretrained_folder(section)
    if folder is None:
        return None
    settings = load_settings(folder, kind)
    first, last = -settings.time_window.before, settings.time_window.after
    log.info(f"{section.config_file} [{section.name}] pretrained_model_path: OrganoidTracker's {kind.OT_TYPE} model "
             f"{folder}, trained further with its own time window [{first}, {last}] and input shape, and "
             f"OrganoidTracker's normalisation")
    return settings


def pretrained_folder(section: TrainSection) -> Path | None:
    """The OrganoidTracker folder of `pretrained_model_path`, if it names one."""
    path = section.pretrained_model_path
    if path is None:
        return None
    folder = path if path.is_dir() else path.parent
    return folder if is_organoid_tracker_folder(folder) else None
