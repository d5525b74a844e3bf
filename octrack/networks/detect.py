"""Nucleus-centre detection: the network module that the stages use (see networks/base.py for what it provides).

Training samples: per annotated time point, the frames of the time window cropped to the cuboid that
encloses the annotated positions plus a margin (users annotate part of an image; everything inside that
box counts as annotated), with the positions in crop coordinates. The model, target and loss are in
detect_model.py, the training batches and the final report in detect_training.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from octrack.cache import CacheEntry, file_fingerprint, fingerprint, write_array
from octrack.config import Config, DetectSection, PredictSection
from octrack.dataset import Dataset
from octrack.frames import FrameReader, ModelFrames, frames_for_model
from octrack.model_folder import MODEL_FILE, is_organoid_tracker_folder, load_model_folder
from octrack.networks.base import NetworkCache, Predictor
from octrack.networks.detect_model import (NAME, DetectSettings, add_detections, fitted_patch_shape,
                                           patch_fit_note, predict_centres)
from octrack.networks.organoidtracker.frames import OTFrameReader
from octrack.networks.organoidtracker.positions import load_positions
from octrack.networks.organoidtracker.settings import (CONVENTIONS, OTPositionsSettings, pretrained_folder,
                                                       pretrained_organoid_tracker)
from octrack.peaks import find_peaks
from octrack.time_window import TimeWindow
from octrack.tracking import Position, Tracking

log = logging.getLogger(__name__)
SECTION = "train_detect"
STEP = "positions"
FALLBACK = ""  # positions come from detection or from a positions file: there is no step without them
FLOAT16_LIMIT = 6e4  # crops are cached as float16; normalised data stay far below this
DEFAULT_PEAK_THRESHOLD = 0.5  # for a model folder that names none
SETTINGS = DetectSettings


def read_section(config: Config) -> DetectSection:
    return config.section_of(DetectSection, SECTION)


@dataclass(frozen=True)
class DetectionCrops:
    """What shapes a cached detection crop."""

    patch_shape: tuple[int, int, int]  # (z, y, x)
    time_window: TimeWindow
    conventions: str = "octrack"  # or OrganoidTracker's (its normalisation), to train one of its models further

    @property
    def margin_zyx(self) -> tuple[int, int, int]:
        """Half a patch on every side, so that patches centred on edge nuclei still fit."""
        z, y, x = self.patch_shape
        return z // 2, y // 2, x // 2


def cache(section: DetectSection, datasets: list[Dataset]) -> NetworkCache:
    """Crops normalised as octrack normalises, or, to train an OrganoidTracker model further, as it does (over
    the model's time window)."""
    organoid_tracker = pretrained_organoid_tracker(section, OTPositionsSettings)
    if organoid_tracker is not None:
        crops = DetectionCrops(section.patch_shape, organoid_tracker.time_window, CONVENTIONS)
        return NetworkCache(lambda dataset, split, reader: cache_entries(dataset, split, crops, reader), {},
                            _crop_summary, OTFrameReader)
    crops = DetectionCrops(training_patch_shape(section, datasets), section.time_window)
    return NetworkCache(lambda dataset, split, reader: cache_entries(dataset, split, crops, reader), {},
                        _crop_summary)


def training_patch_shape(section: DetectSection, datasets: list[Dataset]) -> tuple[int, int, int]:
    """The section's patch shape fitted to the deepest images and the U-Net (`fitted_patch_shape`); warns once
    where that differs from what the ini asks."""
    depth = max(dataset.images.shape_zyx[0] for dataset in datasets)
    fitted = fitted_patch_shape(section.patch_shape, depth, section.unet_levels)
    note = patch_fit_note(section.patch_shape, fitted, depth)
    if note:
        z, y, x = section.patch_shape
        say = log.debug if "patch_shape" in section.chosen_from_data else log.warning  # the data's, or the user's
        say(f"{section.config_file} [{section.name}] patch_shape = {x}, {y}, {z} (x, y, z): {note}")
    return fitted


def crop_box(positions: list[Position], shape_zyx: tuple[int, int, int],
             margin_zyx: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The cuboid enclosing the positions plus the margin, never past the image."""
    coordinates = np.array([(p.z, p.y, p.x) for p in positions])
    low = np.floor(coordinates.min(axis=0)).astype(int) - margin_zyx
    high = np.ceil(coordinates.max(axis=0)).astype(int) + margin_zyx + 1
    low = np.clip(low, 0, shape_zyx)
    high = np.clip(high, low + 1, shape_zyx)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]


def cache_entries(dataset: Dataset, split: dict[int, str], crops: DetectionCrops,
                  reader: FrameReader) -> list[CacheEntry]:
    """One entry per annotated time point of the dataset."""
    entries = []
    voxel = dataset.voxel_size.zyx_um() if dataset.voxel_size else None
    for time_point in dataset.annotated_time_points():
        positions = dataset.annotated_positions(time_point)
        uncertain = dataset.uncertain_positions(time_point)
        newborn = dataset.newborn_positions(time_point)
        frames = dataset.window_time_points(time_point, crops.time_window)
        sources = file_fingerprint(dataset.images.source_files(frames))
        entries.append(CacheEntry(
            name=f"dataset_{dataset.config.number}/t{time_point:05d}",
            fingerprint=fingerprint(NAME, sources, frames, dataset.how_read(), voxel, sorted(positions),
                                    sorted(uncertain), sorted(newborn), crops, dataset.annotations_cover_image),
            build=_builder(dataset, time_point, positions, uncertain, newborn, crops, reader),
            attributes={"split": split[time_point]}))
    return entries


def _builder(dataset: Dataset, time_point: int, positions: list[Position], uncertain: list[Position],
             newborn: list[Position], crops: DetectionCrops, reader: FrameReader):
    def build(group: h5py.Group) -> None:
        shape = dataset.images.shape_zyx
        box = (tuple(slice(0, size) for size in shape) if dataset.annotations_cover_image
               else crop_box(positions + uncertain, shape, crops.margin_zyx))
        crop, frames = reader.crop(time_point, crops.time_window, box)
        offset = np.array([part.start for part in box], dtype=np.float32)
        write_array(group, "image", np.clip(crop, -FLOAT16_LIMIT, FLOAT16_LIMIT).astype(np.float16),
                    chunks=_chunks(crop.shape))
        for name, points in (("positions_zyx", positions), ("uncertain_zyx", uncertain), ("newborn_zyx", newborn)):
            zyx = np.array([(p.z, p.y, p.x) for p in points], dtype=np.float32).reshape(-1, 3) - offset
            write_array(group, name, zyx, chunks=None)
        voxel = dataset.voxel_size
        group.attrs.update({
            "dataset": dataset.config.number, "time_point": time_point,
            "window_time_points": dataset.window_time_points(time_point, crops.time_window),
            "offset_zyx": offset.astype(int), "frame_shape_zyx": dataset.images.shape_zyx,
            "normalization_low": [frame.low for frame in frames],
            "normalization_high": [frame.high for frame in frames],
            "voxel_size_zyx_um": voxel.zyx_um() if voxel else [np.nan] * 3,
            "patch_shape_zyx": crops.patch_shape, "margin_zyx": crops.margin_zyx,
            "annotated_region": "image" if dataset.annotations_cover_image else "box",
            "image_channels": dataset.config.image_channels})
    return build


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    z, y, x, channels = shape
    return min(z, 16), min(y, 128), min(x, 128), channels


def _crop_summary(path: Path) -> str:
    """Crop sizes per dataset, read back from the cache that was just written."""
    lines = []
    with h5py.File(path, "r") as cache_file:
        for dataset_name in cache_file:
            shapes = [cache_file[dataset_name][t]["image"].shape for t in cache_file[dataset_name]]
            voxels = [np.prod(shape[:3]) for shape in shapes]
            z, y, x, frames = shapes[int(np.argmax(voxels))]
            regions = {str(group.attrs.get("annotated_region", "box")) for group in cache_file[dataset_name].values()}
            region = ("the whole image (annotated_region = image: every nucleus annotated)" if regions == {"image"}
                      else "the cuboid around the annotations plus half a patch")
            lines.append(f"  {dataset_name}: {len(shapes)} crops of {region}, largest z, y, x = {z}, {y}, {x} "
                         f"with {frames} frame(s) each, {sum(voxels) / 1e6:.1f} M voxels in all")
    return "\n".join(lines)


def training(section: DetectSection, cache_path: Path) -> Any:
    """octrack's detection network, or the OrganoidTracker positions model that pretrained_model_path names."""
    from octrack.networks.detect_training import DetectTraining
    from octrack.networks.organoidtracker.training import OTPositionsTraining

    organoid_tracker = pretrained_folder(section)
    if organoid_tracker is not None:
        return OTPositionsTraining(section, cache_path, organoid_tracker)
    return DetectTraining(section, cache_path)


@dataclass(frozen=True)
class Detector:
    """A detection model folder with the decoding values in force (its settings.json, or [predict])."""

    model: Any
    settings: DetectSettings
    threshold: float
    min_distance_um: float
    model_file: Path
    tentative_threshold: float | None = None  # peaks from here up to `threshold` are tentative detections

    def fingerprint(self) -> str:
        """Identifies the model file and the decoding, so that results of another model are never reused."""
        return fingerprint(file_fingerprint([self.model_file]), self.settings.to_json(), self.threshold,
                           self.min_distance_um, self.tentative_threshold)

    def frames(self, dataset: Dataset) -> ModelFrames:
        return frames_for_model(dataset, self.settings.voxel_size, self.settings.time_window)

    def time_points(self, tracking: Tracking, dataset: Dataset) -> list[int]:
        return dataset.time_points

    def predict(self, frames: ModelFrames, tracking: Tracking, time_point: int) -> np.ndarray:
        return detect_in_frames(self, frames.around(time_point), frames.factor_zyx)

    def apply(self, tracking: Tracking, time_point: int, rows: list[list[float]]) -> None:
        add_detections(tracking, time_point, rows, tentative_below=self.threshold)


def load(folder: Path, predict: PredictSection) -> Predictor:
    """A detection model folder: octrack's, or OrganoidTracker's positions model."""
    if is_organoid_tracker_folder(folder):
        return load_positions(folder, predict)
    model, settings = load_model_folder(folder, DetectSettings)
    threshold = predict.peak_threshold or settings.peak_threshold or DEFAULT_PEAK_THRESHOLD
    min_distance = predict.min_distance_um if predict.min_distance_um is not None else settings.min_distance_um
    return Detector(model, settings, float(threshold), float(min_distance), folder / MODEL_FILE,
                    predict.tentative_threshold(float(threshold)))


def detect_in_frames(detector: Detector, frames: list[np.ndarray], factor_zyx: np.ndarray) -> np.ndarray:
    """Peaks (z, y, x, value) in frames at the model's voxel size, in the pixels of the images (`factor_zyx` per
    axis maps those to the frames' pixels; see `octrack.frames.model_frames`)."""
    settings = detector.settings
    centres = predict_centres(detector.model, frames, settings.tile_multiple_zyx, settings.patch_shape,
                              settings.unet_filters)
    peaks = find_peaks(centres, detector.tentative_threshold or detector.threshold,
                       tuple(detector.min_distance_um / np.array(settings.voxel_size.zyx_um())))
    peaks[:, :3] /= factor_zyx
    return peaks
