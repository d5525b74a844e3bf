"""The division network: the frames around a nucleus over a time window (default t−1, t, t+1) → the
probability that it divides, i.e. that t is its last time point before two daughters.

The network module that the stages use (see networks/base.py for what it provides); what it shares with the
link network is in classifier.py and classifier_training.py.

Samples: every annotated position of a time point whose next time point is annotated too (else whether it
divides is unknown). A mother is positive. Hard negatives, the cases that look most like a division: the
mother's positions at the `HARD_NEGATIVE_SPAN` time points before (it rounds up) and the daughters' first
time points (they are born). Every other position is a random negative, drawn at its natural rate.

The crops of the window's other frames follow the shift of the whole picture (`window_offsets`): where the
sample drifts, as the breast-cancer movie does by about 16 px per time point at nuclei 15–25 px across, a crop
cut at the mother's place in the next frame would show the daughters at its edge or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from octrack.augment import augment_intensity, sample_geometry
from octrack.cache import CacheEntry, file_fingerprint, fingerprint, write_array
from octrack.candidates import SHIFT_MIN_POSITIONS, frame_shift
from octrack.config import ClassifierSection, Config, PredictSection
from octrack.dataset import Dataset
from octrack.frames import FrameReader, ModelFrames
from octrack.model_folder import MODEL_FILE, is_organoid_tracker_folder, load_model_folder, stored
from octrack.networks.base import NetworkCache, Predictor
from octrack.networks.classifier import (Classifier, ClassifierCrops, ClassifierSettings, crops_of, cut_crops,
                                         describe_oversampling, oversampling_weights, predict_probabilities,
                                         probability_data, read_cache, warp_crop)
from octrack.networks.organoidtracker.classifiers import load_divisions
from octrack.networks.organoidtracker.frames import OTFrameReader
from octrack.networks.organoidtracker.settings import (CONVENTIONS, OTDivisionSettings, pretrained_folder,
                                                       pretrained_organoid_tracker)
from octrack.tracking import Position, Tracking

NAME = "divide"
SECTION = "train_divide"
STEP = "divisions"
FALLBACK = "geometry"  # what the tracker uses to find divisions without a division model
OTHER, HARD_NEGATIVE, MOTHER = 0, 1, 2
KIND_NAMES = {OTHER: "other negatives", HARD_NEGATIVE: "hard negatives", MOTHER: "mothers"}
HARD_NEGATIVE_SPAN = 3
HARD_NEGATIVE_WEIGHT = 3.0  # hard negatives are drawn this many times as often as other negatives


@dataclass(frozen=True, kw_only=True)
class DivideSettings(ClassifierSettings):
    """settings.json of a division model folder."""

    NETWORK = NAME
    crops_follow_drift: bool = stored(default=False)  # `window_offsets`; models from before it have none


SETTINGS = DivideSettings


def read_section(config: Config) -> ClassifierSection:
    return config.section_of(ClassifierSection, SECTION)


def cache(section: ClassifierSection, datasets: list[Dataset]) -> NetworkCache:
    """Crops as octrack cuts them, or, to train an OrganoidTracker division model further, as it does."""
    organoid_tracker = pretrained_organoid_tracker(section, OTDivisionSettings)
    crops = crops_of(section, datasets, organoid_tracker, pretrained_folder(section))
    return NetworkCache(lambda dataset, split, reader: cache_entries(dataset, split, crops, reader),
                        crops.attributes(), lambda path: summary(path, section.division_multiplier),
                        FrameReader if organoid_tracker is None else OTFrameReader)


def training(section: ClassifierSection, cache_path: Path) -> Any:
    """octrack's division network, or the OrganoidTracker division model that pretrained_model_path names."""
    from octrack.networks.classifier_training import ClassifierTraining
    from octrack.networks.organoidtracker.training import OTClassifierTraining

    samples = load_samples(cache_path, section.division_multiplier, section.augment)
    organoid_tracker = pretrained_folder(section)
    if organoid_tracker is not None:
        return OTClassifierTraining(NAME, section, samples, OTDivisionSettings, organoid_tracker)
    return ClassifierTraining(NAME, section, samples, build_model, DivideSettings, {"crops_follow_drift": True})


def division_kinds(tracking: Tracking, span: int = HARD_NEGATIVE_SPAN) -> dict[Position, int]:
    """MOTHER or HARD_NEGATIVE for the positions that are one; every other position is OTHER."""
    kinds: dict[Position, int] = {}
    mothers = tracking.divisions()
    for mother in mothers:
        for daughter in tracking.future(mother):
            kinds[daughter] = HARD_NEGATIVE
        earlier = mother
        for _ in range(span):
            past = tracking.past(earlier)
            if len(past) != 1:
                break
            earlier = past[0]
            kinds[earlier] = HARD_NEGATIVE
    kinds.update(dict.fromkeys(mothers, MOTHER))
    return kinds


def sample_time_points(dataset: Dataset) -> list[int]:
    """Annotated time points whose next time point is annotated as well."""
    tracking = dataset.tracking
    return [t for t in dataset.time_points if dataset.annotations_in_image(t) and tracking.positions_at(t + 1)]


def window_offsets(positions_at: Callable[[int], np.ndarray], window_time_points: list[int], time_point: int
                   ) -> np.ndarray:
    """(frames, 3): where each frame of the window shows what lies at a position of `time_point`, relative to
    it: the shifts of the whole picture (`candidates.frame_shift`, from the positions, (n, 3) pixels, that
    `positions_at` gives for a time point) summed over the steps between. A step with too few positions on
    either side (beyond the annotated or predicted time points) takes the mean of the window's other steps, so
    that a window reaching past them is cut as one inside them is."""
    steps: dict[int, np.ndarray] = {}
    for step in range(min(window_time_points), max(window_time_points)):
        sources, targets = positions_at(step), positions_at(step + 1)
        if min(len(sources), len(targets)) >= SHIFT_MIN_POSITIONS:
            steps[step] = frame_shift(sources, targets)[0]
    fallback = np.mean(list(steps.values()), axis=0) if steps else np.zeros(3)

    def offset(frame: int) -> np.ndarray:
        between = range(min(frame, time_point), max(frame, time_point))
        total = np.sum([steps.get(step, fallback) for step in between], axis=0) if len(between) else np.zeros(3)
        return total if frame >= time_point else -total

    return np.array([offset(frame) for frame in window_time_points], dtype=np.float64).reshape(-1, 3)


def cache_entries(dataset: Dataset, split: dict[int, str], crops: ClassifierCrops,
                  reader: FrameReader) -> list[CacheEntry]:
    """One entry per time point with samples: the crops of its positions, their labels and kinds."""
    kinds = division_kinds(dataset.tracking)
    voxel = dataset.voxel_size.zyx_um() if dataset.voxel_size else None
    entries = []
    for time_point in sample_time_points(dataset):
        annotations = dataset.annotations_in_image(time_point)
        centres = np.array([(image.z, image.y, image.x) for _, image in annotations], dtype=np.float32)
        sample_kinds = np.array([kinds.get(annotated, OTHER) for annotated, _ in annotations], dtype=np.uint8)
        frames = dataset.window_time_points(time_point, crops.time_window)
        offsets = (None if crops.conventions == CONVENTIONS
                   else window_offsets(lambda t: _image_zyx(dataset, t), frames, time_point))
        sources = file_fingerprint(dataset.images.source_files(frames))
        entries.append(CacheEntry(
            name=f"dataset_{dataset.config.number}/t{time_point:05d}",
            fingerprint=fingerprint(NAME, sources, frames, dataset.how_read(), voxel, centres.tolist(),
                                    sample_kinds.tolist(), crops, None if offsets is None else offsets.tolist()),
            build=_builder(dataset, time_point, centres, sample_kinds, crops, reader, offsets),
            attributes={"split": split[time_point]}))
    return entries


def _image_zyx(dataset: Dataset, time_point: int) -> np.ndarray:
    """(n, 3) the image pixels of the annotated positions of a time point inside the image."""
    return np.array([(image.z, image.y, image.x) for _, image in dataset.annotations_in_image(time_point)],
                    dtype=np.float64).reshape(-1, 3)


def _builder(dataset: Dataset, time_point: int, centres: np.ndarray, kinds: np.ndarray, crops: ClassifierCrops,
             reader: FrameReader, frame_offsets: np.ndarray | None):
    def build(group: h5py.Group) -> None:
        frames = reader.frames(time_point, crops.time_window)
        regions = crops.regions([frame.data for frame in frames], centres, frame_offsets)
        write_array(group, "crops", regions.astype(np.float16), chunks=(1, *regions.shape[1:]))
        write_array(group, "positions_zyx", centres, chunks=None)
        write_array(group, "kinds", kinds, chunks=None)
        write_array(group, "labels", (kinds == MOTHER).astype(np.uint8), chunks=None)
        voxel = dataset.voxel_size
        group.attrs.update({
            "dataset": dataset.config.number, "time_point": time_point,
            "window_time_points": dataset.window_time_points(time_point, crops.time_window),
            "normalization_low": [frame.low for frame in frames],
            "normalization_high": [frame.high for frame in frames],
            "voxel_size_zyx_um": voxel.zyx_um() if voxel else [np.nan] * 3})
    return build


# Training samples
@dataclass
class DivisionSamples:
    """The cached crops of one split, with their labels, kinds and drawing weights."""

    crops: np.ndarray  # float16 (n, z, y, x, frames), the cached extent
    labels: np.ndarray
    kinds: np.ndarray
    weights: np.ndarray
    patch_zyx: tuple[int, int, int]
    augment: Any = None

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        patches = []
        for index in indices:
            geometry = sample_geometry(rng, self.augment) if rng is not None else None
            patch = warp_crop(self.crops[index], self.patch_zyx, geometry)
            patches.append(augment_intensity(patch, rng, self.augment) if rng is not None else patch)
        return np.stack(patches) if patches else np.zeros((0, *self.patch_zyx, self.crops.shape[-1]), np.float32)


def kind_weights(multiplier: float) -> dict[int, float]:
    return {OTHER: 1.0, HARD_NEGATIVE: HARD_NEGATIVE_WEIGHT, MOTHER: multiplier}


def load_samples(cache_path: Path, multiplier: float, augment: Any) -> tuple[dict[str, DivisionSamples], dict[str, Any]]:
    def read(group: h5py.Group) -> tuple[np.ndarray, np.ndarray]:
        return group["crops"][()], group["kinds"][()]

    groups, attributes = read_cache(cache_path, read)
    patch = tuple(int(value) for value in attributes["patch_zyx"])
    splits = {}
    for split, parts in groups.items():
        extent_shape = (0, *attributes["extent_zyx"], attributes["frames"])
        crops = np.concatenate([crops for crops, _ in parts]) if parts else np.zeros(extent_shape, np.float16)
        kinds = np.concatenate([kinds for _, kinds in parts]) if parts else np.zeros(0, np.uint8)
        splits[split] = DivisionSamples(crops, (kinds == MOTHER).astype(np.uint8), kinds,
                                        oversampling_weights(kinds, kind_weights(multiplier)), patch, augment)
    return splits, attributes


def build_model(patch_zyx: tuple[int, int, int], frames: int, levels: int, filters: int) -> Any:
    """Frames of the time window stacked as channels → encoder → P(divides)."""
    import keras

    from octrack.networks.classifier import encoder, probability_head

    inputs = keras.Input(shape=(*patch_zyx, frames), name="frames")
    features = encoder((*patch_zyx, frames), levels, filters)(inputs)
    return keras.Model(inputs, probability_head(features, 4 * filters), name="divide_classifier")


def summary(cache_path: Path, multiplier: float) -> str:
    """Per dataset and split: samples per class and kind, and the oversampling of the training draws."""
    lines = []
    with h5py.File(cache_path, "r") as cache:
        for dataset_name in cache:
            for split in ("train", "validation"):
                kinds = [cache[dataset_name][t]["kinds"][()] for t in cache[dataset_name]
                         if cache[dataset_name][t].attrs["split"] == split]
                if not kinds:
                    continue
                kinds = np.concatenate(kinds)
                counts = ", ".join(f"{np.sum(kinds == kind)} {label}" for kind, label in KIND_NAMES.items())
                line = f"  divide {dataset_name} {split}: {len(kinds)} samples ({counts})"
                if split == "train":
                    weights = oversampling_weights(kinds, kind_weights(multiplier))
                    line += (f"; mothers drawn ×{multiplier:g}, hard negatives ×{HARD_NEGATIVE_WEIGHT:g}: "
                             f"{describe_oversampling(kinds == MOTHER, weights)}")
                lines.append(line)
    return "\n".join(lines)


@dataclass(frozen=True)
class Divider(Classifier):
    """A division model folder, as the predict stage runs it: a calibrated P(divides) for every position."""

    def time_points(self, tracking: Tracking, dataset: Dataset) -> list[int]:
        return tracking.time_points()

    def predict(self, frames: ModelFrames, tracking: Tracking, time_point: int) -> np.ndarray:
        def image_zyx(t: int) -> np.ndarray:
            return frames.image_zyx(tracking, tracking.positions_at(t)) * frames.factor_zyx

        offsets = None
        if self.settings.crops_follow_drift:
            offsets = window_offsets(image_zyx, frames.reader.dataset.window_time_points(time_point, frames.window),
                                     time_point)
        raw = division_probabilities(self.model, frames.around(time_point), image_zyx(time_point),
                                     self.settings.patch_shape, offsets)
        return self.calibration(raw)

    def apply(self, tracking: Tracking, time_point: int, rows: list[float]) -> None:
        """Sets `division_probability` (calibrated) and `division_penalty` on every position of the time point."""
        for position, probability in zip(tracking.positions_at(time_point), rows):
            tracking.position_data(position).update(probability_data("division", probability))


def load(folder: Path, predict: PredictSection) -> Predictor:
    """A division model folder: octrack's, or OrganoidTracker's divisions model."""
    if is_organoid_tracker_folder(folder):
        return load_divisions(folder, predict)
    model, settings = load_model_folder(folder, DivideSettings)
    return Divider(model, settings, folder / MODEL_FILE)


def division_probabilities(model: Any, frames: list[np.ndarray], centres_zyx: np.ndarray,
                           patch_zyx: tuple[int, int, int], frame_offsets_zyx: np.ndarray | None = None
                           ) -> np.ndarray:
    """The model's uncalibrated P(divides) of each position (image pixels) of a time point, given the frames
    of its time window (normalised, at the model's voxel size) and where each shows what lies at a position
    (`window_offsets`; None: in place)."""
    return predict_probabilities(model, cut_crops(frames, centres_zyx, patch_zyx,
                                                  frame_offsets_zyx=frame_offsets_zyx))
