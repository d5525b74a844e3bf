"""OrganoidTracker's division and link models, run as OrganoidTracker runs them.

Division: for every position of a time point, a patch of the model's `patch_shape_zyx` starting at
round(coordinate − size / 2) per axis (frames.py `patch_start`), over the frames of the model's time window
(default t−1, t, t+1), normalised over that window.

Link: the candidate links between consecutive time points by OrganoidTracker's nearest-neighbour rule with
tolerance 2 (`candidate_pairs`: octrack's rule, computed as OrganoidTracker computes it, so that a partner at
exactly twice the nearest distance is in or out as there); for each, patches around A (at t) and B (at t+1)
over the same frames, those of t's window (t, t+1), and the displacement d = B − A in pixels, rounded, as
three numbers (z, y, x). Each patch gets three
coordinate channels: for an axis of length n, |arange(−n//2, n//2) − d| / n for A and |… + d| / n for B.
The model's three inputs are `input_1` = [frames, Z_A, Y_A, X_A], `input_2` = [X_B, Y_B, Z_B, frames] (the
model reverses its channels itself) and `input_distances` = d.

Both outputs are calibrated as OrganoidTracker calibrates them (settings.py `log10_odds`) and stored as
OrganoidTracker stores them: `division_probability` and `division_penalty` per position, `link_probability`
and `link_penalty` per link. The rows kept for resume are the log10 odds, so that tiny probabilities keep
their digits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octrack.cache import file_fingerprint, fingerprint
from octrack.candidates import DEFAULT_FACTOR, DEFAULT_MAX_PARTNERS
from octrack.config import PredictSection
from octrack.dataset import Dataset
from octrack.frames import ModelFrames, NormalizedFrame
from octrack.model_folder import MODEL_FILE, load_keras_model, load_settings
from octrack.networks.organoidtracker.frames import cut_patch, ot_frames, patch_start
from octrack.networks.organoidtracker.settings import (OTClassifierSettings, OTDivisionSettings, OTLinkSettings,
                                                       probability_data)
from octrack.tracking import Position, Tracking, VoxelSize

log = logging.getLogger(__name__)
BATCH = 64  # OrganoidTracker's batch_size of prediction


def patches_around(frames: list[NormalizedFrame], centres_zyx: np.ndarray, shape_zyx: tuple[int, int, int]
                   ) -> np.ndarray:
    """(n, z, y, x, frames): the patch around each centre (image pixels), started as OrganoidTracker starts it."""
    patches = np.zeros((len(centres_zyx), *shape_zyx, len(frames)), dtype=np.float32)
    for index, centre in enumerate(np.asarray(centres_zyx, dtype=np.float64).reshape(-1, 3)):
        patches[index] = cut_patch(frames, patch_start(centre, shape_zyx), shape_zyx)
    return patches


def coordinate_channels(shape_zyx: tuple[int, int, int], distance_zyx: np.ndarray, sign: int) -> list[np.ndarray]:
    """[Z, Y, X] (each of the patch's shape): per axis of length n, |arange(−n//2, n//2) + sign · d| / n,
    in float32 as OrganoidTracker computes them."""
    axes = [np.abs(np.arange((-n) // 2, n // 2, dtype=np.float32) + np.float32(sign * d)) / np.float32(n)
            for n, d in zip(shape_zyx, distance_zyx)]
    return list(np.meshgrid(*axes, indexing="ij"))


def link_inputs(patches_a: np.ndarray, patches_b: np.ndarray, distances_zyx: np.ndarray) -> dict[str, np.ndarray]:
    """The link model's inputs from the frame patches around A and B (n, z, y, x, frames) and the rounded
    displacements B − A in pixels (n, 3)."""
    shape = patches_a.shape[1:4]
    first = np.zeros((*patches_a.shape[:4], patches_a.shape[-1] + 3), dtype=np.float32)
    second = np.zeros_like(first)
    for index, distance in enumerate(distances_zyx):
        z_a, y_a, x_a = coordinate_channels(shape, distance, -1)
        z_b, y_b, x_b = coordinate_channels(shape, distance, +1)
        first[index] = np.concatenate([patches_a[index], np.stack([z_a, y_a, x_a], axis=-1)], axis=-1)
        second[index, ..., :3] = np.stack([x_b, y_b, z_b], axis=-1)
        second[index, ..., 3:] = patches_b[index]
    return {"input_1": first, "input_2": second, "input_distances": np.asarray(distances_zyx, dtype=np.float32)}


def raw_outputs(model: Any, inputs_of: Callable[[slice], Any], count: int) -> np.ndarray:
    """The model's outputs for `count` samples, in batches of BATCH whose inputs `inputs_of` makes (so that memory
    holds one batch of patches)."""
    import keras

    parts = [np.zeros(0, dtype=np.float32)]
    for start in range(0, count, BATCH):
        batch = inputs_of(slice(start, min(start + BATCH, count)))
        parts.append(np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)), dtype=np.float32))
    return np.concatenate([part.reshape(-1) for part in parts])


@dataclass(frozen=True)
class OTClassifier:
    """An OrganoidTracker division or link folder (what the two predictors share)."""

    model: Any
    settings: OTClassifierSettings
    model_file: Path

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        return self.settings.patch_shape  # type: ignore[return-value]  # required on loading

    def fingerprint(self, *decoding: Any) -> str:
        return fingerprint(file_fingerprint([self.model_file]), self.settings.to_json(), *decoding)

    def frames(self, dataset: Dataset) -> ModelFrames:
        return ot_frames(dataset, self.settings.time_window)


@dataclass(frozen=True)
class OTDivider(OTClassifier):
    """An OrganoidTracker division folder, as the predict stage runs it (a `Predictor`)."""

    def time_points(self, tracking: Tracking, dataset: Dataset) -> list[int]:
        return tracking.time_points()

    def predict(self, frames: ModelFrames, tracking: Tracking, time_point: int) -> np.ndarray:
        centres = frames.image_zyx(tracking, tracking.positions_at(time_point))
        window = frames.reader.frames(time_point, frames.window)
        raw = raw_outputs(self.model, lambda part: patches_around(window, centres[part], self.patch_shape),
                          len(centres))
        return self.settings.log10_odds(raw)

    def apply(self, tracking: Tracking, time_point: int, rows: list[float]) -> None:
        for position, log10_odds in zip(tracking.positions_at(time_point), rows):
            tracking.position_data(position).update(probability_data("division", log10_odds))


@dataclass(frozen=True)
class OTLinker(OTClassifier):
    """An OrganoidTracker link folder, as the predict stage runs it (a `Predictor`)."""

    candidate_factor: float

    def fingerprint(self) -> str:  # type: ignore[override]
        return super().fingerprint(self.candidate_factor)

    def time_points(self, tracking: Tracking, dataset: Dataset) -> list[int]:
        return [t for t in tracking.time_points() if tracking.positions_at(t + 1)]

    def predict(self, frames: ModelFrames, tracking: Tracking, time_point: int) -> np.ndarray:
        """Rows (source index, target index, log10 odds) of the candidate links from `time_point`."""
        sources, targets = tracking.positions_at(time_point), tracking.positions_at(time_point + 1)
        pairs = candidate_pairs(sources, targets, frames.voxel_size, self.candidate_factor)
        window = frames.reader.frames(time_point, frames.window)
        source_zyx, target_zyx = frames.image_zyx(tracking, sources), frames.image_zyx(tracking, targets)
        distances = np.array([[round(b - a) for a, b in zip(_zyx(sources[i]), _zyx(targets[j]))] for i, j in pairs],
                             dtype=np.float32).reshape(-1, 3)

        def inputs_of(part: slice) -> dict[str, np.ndarray]:
            return link_inputs(patches_around(window, source_zyx[pairs[part, 0]], self.patch_shape),
                               patches_around(window, target_zyx[pairs[part, 1]], self.patch_shape), distances[part])

        log10_odds = self.settings.log10_odds(raw_outputs(self.model, inputs_of, len(pairs)))
        return np.column_stack([pairs, log10_odds]).reshape(-1, 3)

    def apply(self, tracking: Tracking, time_point: int, rows: list[list[float]]) -> None:
        sources, targets = tracking.positions_at(time_point), tracking.positions_at(time_point + 1)
        for source, target, log10_odds in rows:
            tracking.add_link(sources[int(source)], targets[int(target)], **probability_data("link", log10_odds))


def _zyx(position: Position) -> tuple[float, float, float]:
    return position.z, position.y, position.x


def candidate_pairs(sources: list[Position], targets: list[Position], voxel_size: VoxelSize, tolerance: float,
                    max_partners: int = DEFAULT_MAX_PARTNERS) -> np.ndarray:
    """(n, 2) sorted (source, target) indices: for each target its nearest sources and for each source its
    nearest targets, up to `max_partners` within `tolerance` times the nearest distance. Squared distances in µm,
    each axis' difference times its voxel size squared and summed, compared without slack (d² <= tolerance² ·
    nearest²), as OrganoidTracker's nearest-neighbour linker does."""
    scale = np.array([voxel_size.x_um, voxel_size.y_um, voxel_size.z_um])
    a = np.array([(p.x, p.y, p.z) for p in sources], dtype=np.float64).reshape(-1, 3)
    b = np.array([(p.x, p.y, p.z) for p in targets], dtype=np.float64).reshape(-1, 3)
    if not len(a) or not len(b):
        return np.zeros((0, 2), dtype=np.int64)
    differences = (a[:, np.newaxis, :] - b[np.newaxis, :, :]) * scale
    squared = differences[..., 0] ** 2 + differences[..., 1] ** 2 + differences[..., 2] ** 2
    found = {(int(i), int(j)) for i, j in _nearest(squared, tolerance, max_partners)}
    found |= {(int(i), int(j)) for j, i in _nearest(squared.T, tolerance, max_partners)}
    return np.array(sorted(found), dtype=np.int64).reshape(-1, 2)


def _nearest(squared: np.ndarray, tolerance: float, max_partners: int) -> list[tuple[int, int]]:
    """(row, column) for each row's nearest columns by the rule of `candidate_pairs`."""
    found = []
    for row, distances in enumerate(squared):
        within = np.flatnonzero(distances <= tolerance ** 2 * distances.min())
        nearest = within[np.argsort(distances[within], kind="stable")[:max_partners]]
        found += [(row, int(column)) for column in nearest]
    return found


def _classifier_parts(folder: Path, kind: type[OTClassifierSettings]) -> tuple[Any, Any, Path]:
    settings = load_settings(folder, kind)
    settings.input_shape(folder)
    model = load_keras_model(folder / MODEL_FILE, f"OrganoidTracker's {kind.OT_TYPE} model (model.keras)")
    log.info(f"{folder}: an OrganoidTracker {kind.OT_TYPE} model, run at the images' own pixel size on patches of "
             f"x, y, z = {', '.join(map(str, reversed(settings.patch_shape)))}, calibrated by its platt_intercept "
             f"and platt_scaling")
    return model, settings, folder / MODEL_FILE


def load_divisions(folder: Path, predict: PredictSection) -> OTDivider:
    return OTDivider(*_classifier_parts(folder, OTDivisionSettings))


def load_links(folder: Path, predict: PredictSection) -> OTLinker:
    """With the candidate rule of OrganoidTracker's link prediction (tolerance 2) unless [predict] sets
    link_candidate_factor."""
    return OTLinker(*_classifier_parts(folder, OTLinkSettings), float(predict.link_candidate_factor or DEFAULT_FACTOR))
