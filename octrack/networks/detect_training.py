"""Training the detection network: batches of augmented patches from the cache, and the final report (the
validation scores and the peak threshold with the best F1)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import keras
import numpy as np

from octrack.augment import AugmentSettings, augment_intensity, sample_geometry
from octrack.config import DetectSection
from octrack.errors import UserError
from octrack.intensity import HIGH_PERCENTILE, LOW_PERCENTILE
from octrack.matching import match_time_point, without_uncertain_matches
from octrack.networks.detect_model import (NAME, DetectSettings, build_model, detection_loss, fitted_patch_shape,
                                           predict_centres, render_target, uncertain_zone, unet_tile_multiple)
from octrack.patches import cut_region
from octrack.peaks import find_peaks_at
from octrack.scoring import DetectionScores
from octrack.tracking import Position, VoxelSize
from octrack.training import DATA_WORKERS, FinalReport, SeededBatches

log = logging.getLogger(__name__)
NEAR_NUCLEUS_SHARE = 0.7  # share of patches centred near an annotated nucleus; the rest anywhere in a crop
# The warped mask channel of a training patch: above HAS_DATA the voxel comes from the crop; above ANNOTATED
# it is annotated. Outside the crop the patch is kept at exactly 0 after the intensity changes, as prediction
# sees beyond the image's edge: noise there would hide where the image ends, and with it whether a nucleus
# at the edge is mostly inside (annotated) or mostly outside (not).
HAS_DATA, ANNOTATED = 0.25, 0.75
THRESHOLDS = np.round(np.arange(0.1, 0.91, 0.05), 2)


@dataclass
class Crop:
    """A cached training crop in memory: frames, positions and the annotated box.

    The frames are kept as `columns`, laid out (y, x, z, window) as `Geometry.warp_columns` reads them;
    `image` is the same data seen as (z, y, x, window)."""

    columns: np.ndarray
    positions_zyx: np.ndarray
    uncertain_zyx: np.ndarray  # uncertain annotations: the loss ignores the output around them
    newborn_zyx: np.ndarray  # the positions that are daughters in their first time point
    annotated_low: np.ndarray
    annotated_high: np.ndarray
    sigma_px: np.ndarray
    voxel_size_zyx_um: np.ndarray
    split: str
    name: str
    frame_shape_zyx: np.ndarray  # of the time point's whole frame

    @property
    def image(self) -> np.ndarray:
        return self.columns.transpose(2, 0, 1, 3)

    def annotated_box_in(self, offset_zyx: np.ndarray, shape_zyx: tuple[int, int, int]
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Low and high corners (z, y, x) of the annotated box in a region at `offset_zyx` (may stick out)."""
        return (np.clip(self.annotated_low - offset_zyx, 0, shape_zyx),
                np.clip(self.annotated_high - offset_zyx, 0, shape_zyx))


def load_crops(cache_path: Path, target_sigma_um: float, band_zyx_px: tuple[int, int, int] | None = None
               ) -> list[Crop]:
    """All crops of a detection cache (float16 in memory, as cached). `band_zyx_px`: how far a nucleus' target
    reaches (default: twice the target's sigma), the band left out along the crops' edges (`annotated_box`)."""
    crops = []
    with h5py.File(cache_path, "r") as cache:
        for dataset_name in cache:
            for time_name in cache[dataset_name]:
                group = cache[dataset_name][time_name]
                crops.append(_crop(group, f"{dataset_name}/{time_name}", target_sigma_um, band_zyx_px))
    return crops


def _crop(group: h5py.Group, name: str, target_sigma_um: float, band_zyx_px: tuple[int, int, int] | None) -> Crop:
    voxel = np.asarray(group.attrs["voxel_size_zyx_um"], dtype=np.float64)
    positions = group["positions_zyx"][()].reshape(-1, 3)
    uncertain = group["uncertain_zyx"][()].reshape(-1, 3)
    newborn = group["newborn_zyx"][()].reshape(-1, 3)
    sigma = np.float32(target_sigma_um) / voxel.astype(np.float32)
    band = np.ceil(2 * sigma).astype(int) if band_zyx_px is None else np.asarray(band_zyx_px)
    image = group["image"][()]
    low, high = annotated_box(np.asarray(group.attrs["offset_zyx"]), np.asarray(image.shape[:3]),
                              np.asarray(group.attrs["frame_shape_zyx"]), band)
    columns = np.ascontiguousarray(image.transpose(1, 2, 0, 3))
    return Crop(columns, positions, uncertain, newborn, low, high, sigma, voxel, str(group.attrs["split"]), name,
                np.asarray(group.attrs["frame_shape_zyx"]))


def annotated_box(offset: np.ndarray, crop_shape: np.ndarray, frame_shape: np.ndarray, band: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The part of a crop whose voxels the loss uses: all of it but a band along the crop's edges inside the
    image, where a nucleus may be cut off (at the image's own edges the view ends for prediction too)."""
    low = np.where(offset > 0, band, 0)
    high = crop_shape - np.where(offset + crop_shape < frame_shape, band, 0)
    return low, np.maximum(high, low + 1)


class TrainingPatches(SeededBatches):
    """An endless stream of augmented patches, drawn across all crops in proportion to their volume, with the
    targets that `render` (points, patch shape, sigma in pixels → target) draws; `division_share` of them
    centred near a newborn daughter where the crop has one (see `_patch_centre`)."""

    def __init__(self, crops: list[Crop], patch_zyx: tuple[int, int, int], batch_size: int, seed: int,
                 first_step: int, augment: AugmentSettings, workers: int = DATA_WORKERS,
                 render: Callable[..., np.ndarray] = render_target, division_share: float = 0.0):
        super().__init__(seed, first_step, workers)
        self.crops, self.patch_zyx, self.batch_size, self.augment = crops, patch_zyx, batch_size, augment
        self.division_share = division_share
        self.render = render
        volumes = np.array([np.prod(crop.image.shape[:3]) for crop in crops], dtype=np.float64)
        self.crop_weights = volumes / volumes.sum()

    def make_batch(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        samples = [self._sample(rng) for _ in range(self.batch_size)]
        return np.stack([x for x, _ in samples]), np.stack([y for _, y in samples])

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        crop = self.crops[rng.choice(len(self.crops), p=self.crop_weights)]
        centre = _patch_centre(crop, self.patch_zyx, rng, self.division_share)
        geometry = sample_geometry(rng, self.augment)
        extent = geometry.source_extent(self.patch_zyx)
        region, offset = _cut(crop, centre, extent)
        warped = geometry.warp_columns(region, self.patch_zyx)
        patch, mask = warped[..., :-1], warped[..., -1]
        points = geometry.warp_points(crop.positions_zyx - offset, extent, self.patch_zyx)
        target = self.render(points, self.patch_zyx, tuple(crop.sigma_px))
        uncertain = geometry.warp_points(crop.uncertain_zyx - offset, extent, self.patch_zyx)
        annotated = (mask > ANNOTATED) & ~uncertain_zone(uncertain, target, tuple(crop.sigma_px), self.render)
        patch = augment_intensity(patch, rng, self.augment)
        patch *= (mask > HAS_DATA)[..., np.newaxis]
        return patch, np.stack([target, annotated.astype(np.float32)], axis=-1)


class ValidationPatches(keras.utils.PyDataset):
    """Patches on a grid over the annotated box of every validation crop; the same every epoch."""

    def __init__(self, crops: list[Crop], patch_zyx: tuple[int, int, int], batch_size: int,
                 max_patches: int = 512, render: Callable[..., np.ndarray] = render_target):
        super().__init__()
        self.samples = _grid_samples(crops, patch_zyx, max_patches, render)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = self.samples[index * self.batch_size:(index + 1) * self.batch_size]
        return np.stack([x for x, _ in batch]), np.stack([y for _, y in batch])


def _grid_samples(crops: list[Crop], patch_zyx: tuple[int, int, int], max_patches: int,
                  render: Callable[..., np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    centres = [(crop, centre) for crop in crops for centre in _grid_centres(crop, patch_zyx)]
    if len(centres) > max_patches:
        chosen = np.random.default_rng(0).choice(len(centres), size=max_patches, replace=False)
        centres = [centres[i] for i in sorted(chosen)]
    samples = []
    for crop, centre in centres:
        region, offset = _cut(crop, centre, patch_zyx)
        frames_and_mask = np.ascontiguousarray(region.transpose(2, 0, 1, 3))
        target = render(crop.positions_zyx - offset, patch_zyx, tuple(crop.sigma_px))
        annotated = (frames_and_mask[..., -1] > ANNOTATED) & ~uncertain_zone(
            crop.uncertain_zyx - offset, target, tuple(crop.sigma_px), render)
        samples.append((frames_and_mask[..., :-1], np.stack([target, annotated.astype(np.float32)], axis=-1)))
    return samples


def _grid_centres(crop: Crop, patch_zyx: tuple[int, int, int]) -> list[np.ndarray]:
    axes = []
    for low, high, size in zip(crop.annotated_low, crop.annotated_high, patch_zyx):
        count = max(1, math.ceil((high - low) / size))
        axes.append(np.linspace(low + size / 2, high - size / 2, count) if high - low > size
                    else np.array([(low + high) / 2]))
    return [np.array(point) for point in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)]


def _patch_centre(crop: Crop, patch_zyx: tuple[int, int, int], rng: np.random.Generator,
                  division_share: float = 0.0) -> np.ndarray:
    """Near a newborn daughter (`division_share` of the time, where the crop has one), near any annotated
    nucleus, or anywhere in the annotated box."""
    draw = rng.random()
    for share, nuclei in ((division_share, crop.newborn_zyx), (NEAR_NUCLEUS_SHARE, crop.positions_zyx)):
        if draw < share and len(nuclei):
            nucleus = nuclei[rng.integers(len(nuclei))]
            return nucleus + rng.uniform(-0.25, 0.25, 3) * np.asarray(patch_zyx)
    return rng.uniform(crop.annotated_low, crop.annotated_high)


def _cut(crop: Crop, centre: np.ndarray, extent_zyx: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The region of `extent` around `centre`, and its offset (z, y, x) in the crop.

    The region is laid out (y, x, z, channel) as the crop's columns, zeros outside the crop; its channels
    are the frames, then a mask that is 1 inside the annotated box, 0.5 elsewhere in the crop and 0 outside
    it, so that one warp moves frames and both masks (see HAS_DATA and ANNOTATED)."""
    offset = np.round(np.asarray(centre) - np.asarray(extent_zyx) / 2).astype(int)
    depth, height, width = extent_zyx
    frames = cut_region(crop.columns, offset[[1, 2, 0]], (height, width, depth))
    mask = np.zeros((height, width, depth, 1), dtype=np.float32)
    (z0, y0, x0), (z1, y1, x1) = np.clip(-offset, 0, extent_zyx), np.clip(
        np.asarray(crop.image.shape[:3]) - offset, 0, extent_zyx)
    mask[y0:y1, x0:x1, z0:z1] = 0.5
    (z0, y0, x0), (z1, y1, x1) = crop.annotated_box_in(offset, extent_zyx)
    mask[y0:y1, x0:x1, z0:z1] = 1
    return np.concatenate([frames, mask], axis=-1), offset


# Final report: detection scores on the validation crops, and the peak threshold that maximises F1
class Decoding(Protocol):
    """How a detection network's output over a crop becomes positions."""

    def output(self, model: Any, frames: list[np.ndarray]) -> Any:
        """The network's output for the frames of a crop (float32 (z, y, x) each)."""

    def peaks(self, output: Any, thresholds: tuple[float, ...], voxel_size_zyx_um: np.ndarray) -> list[np.ndarray]:
        """(n, >= 3) z, y, x of the positions in that output at each peak threshold."""


@dataclass(frozen=True)
class UNetDecoding:
    """octrack's detection network: tiled output (`predict_centres`), peaks at least min_distance_um apart."""

    patch_zyx: tuple[int, int, int]
    levels: int
    filters: int
    min_distance_um: float

    def output(self, model: Any, frames: list[np.ndarray]) -> np.ndarray:
        return predict_centres(model, frames, unet_tile_multiple(self.patch_zyx[0], self.levels), self.patch_zyx,
                               self.filters)

    def peaks(self, output: np.ndarray, thresholds: tuple[float, ...], voxel_size_zyx_um: np.ndarray
              ) -> list[np.ndarray]:
        """One set of candidates for all thresholds (`find_peaks_at`)."""
        return find_peaks_at(output, thresholds, tuple(self.min_distance_um / voxel_size_zyx_um))


def validation_report(model: Any, crops: list[Crop], decoding: Decoding, match_distance_um: float,
                      fixed_threshold: float | None, thresholds: tuple[float, ...] = tuple(THRESHOLDS)
                      ) -> dict[str, Any]:
    """Scores at each candidate threshold over all validation crops; keeps the best (or the fixed one)."""
    thresholds = (fixed_threshold,) if fixed_threshold is not None else thresholds
    counts = {threshold: np.zeros(3, dtype=int) for threshold in thresholds}
    for crop in crops:
        frames = [crop.image[..., channel].astype(np.float32) for channel in range(crop.image.shape[-1])]
        output = decoding.output(model, frames)
        for threshold, peaks in zip(thresholds, decoding.peaks(output, thresholds, crop.voxel_size_zyx_um)):
            counts[threshold] += _match_counts(crop, peaks, match_distance_um)
    scores = {threshold: DetectionScores(*map(int, counts[threshold]), match_distance_um, "um")
              for threshold in thresholds}
    best = max(thresholds, key=lambda threshold: scores[threshold].f1)
    chosen = scores[best]
    return {"threshold": float(best), "true_positives": chosen.true_positives,
            "false_positives": chosen.false_positives, "false_negatives": chosen.false_negatives,
            "precision": chosen.precision, "recall": chosen.recall, "f1": chosen.f1}


def _match_counts(crop: Crop, peaks: np.ndarray, distance_um: float) -> np.ndarray:
    """TP, FP, FN of the peaks and annotated positions inside the part of the crop that the loss uses,
    scored as `octrack evaluate` scores them (uncertain annotations count neither way)."""
    def inside(points: np.ndarray) -> list[Position]:
        points = points[np.all((points >= crop.annotated_low) & (points < crop.annotated_high), axis=1)]
        return [Position(x, y, z, 0) for z, y, x in points]

    predicted, true, uncertain = inside(peaks[:, :3]), inside(crop.positions_zyx), inside(crop.uncertain_zyx)
    z_um, y_um, x_um = crop.voxel_size_zyx_um
    voxel_size = VoxelSize(x_um, y_um, z_um)
    matches = match_time_point(true, predicted, distance_um, voxel_size)
    counted = len(without_uncertain_matches(matches, predicted, uncertain, distance_um, voxel_size))
    return np.array([len(matches), counted - len(matches), len(true) - len(matches)])


class DetectTraining:
    """The detection network as the engine sees it."""

    name = NAME
    render = staticmethod(render_target)  # the target: (points, patch shape, sigma in pixels) → target

    def __init__(self, section: DetectSection, cache_path: Path):
        self.section = section
        crops = self._load_crops(cache_path)
        self.training_crops = [crop for crop in crops if crop.split == "train"]
        self.validation_crops = [crop for crop in crops if crop.split == "validation"]
        if not self.training_crops:
            raise UserError(f"{section.config_file} [prepare]: no training time points (all are use_for_N = "
                            f"validation); set use_for_N = train or both for at least one dataset")
        if not self.validation_crops:
            log.warning(f"{section.config_file} [prepare]: no validation time points (raise validation_fraction or "
                        f"set use_for_N = validation for a dataset): the best model is chosen and scored on the "
                        f"training data, which overstates how well it does")
            self.validation_crops = self.training_crops
        self.patch_zyx = self._patch_shape(crops)

    def _load_crops(self, cache_path: Path) -> list[Crop]:
        return load_crops(cache_path, self.section.target_sigma_um)

    def _patch_shape(self, crops: list[Crop]) -> tuple[int, int, int]:
        """The section's patch shape fitted to the deepest images and the U-Net (prepare said how)."""
        depth = max(int(crop.frame_shape_zyx[0]) for crop in crops)
        return fitted_patch_shape(self.section.patch_shape, depth, self.section.unet_levels)

    def build_model(self) -> Any:
        return build_model(self.section.time_window.size, self.patch_zyx[0], self.section.unet_levels,
                           self.section.unet_filters)

    def loss(self) -> Any:
        return detection_loss

    def training_batches(self, batch_size: int, seed: int, first_step: int) -> TrainingPatches:
        return TrainingPatches(self.training_crops, self.patch_zyx, batch_size, seed, first_step,
                               self.section.augment, render=self.render,
                               division_share=self.section.division_patch_share)

    def validation_batches(self, batch_size: int) -> ValidationPatches:
        return ValidationPatches(self.validation_crops, self.patch_zyx, batch_size, render=self.render)

    def samples_per_pass(self) -> int:
        """Patches that tile the annotated boxes of the training crops once."""
        return sum(math.prod(math.ceil((high - low) / size) for low, high, size in
                             zip(crop.annotated_low, crop.annotated_high, self.patch_zyx))
                   for crop in self.training_crops)

    def settings(self) -> DetectSettings:
        z_um, y_um, x_um = (float(value) for value in self.training_crops[0].voxel_size_zyx_um)
        section = self.section
        return DetectSettings(
            network=NAME, time_window=section.time_window, patch_shape=self.patch_zyx,
            voxel_size=VoxelSize(x_um, y_um, z_um), mixed_precision=section.mixed_precision,
            normalization={"method": "percentiles of each whole frame", "low_percentile": LOW_PERCENTILE,
                           "high_percentile": HIGH_PERCENTILE},
            augmentation=asdict(section.augment), unet_levels=section.unet_levels,
            unet_filters=section.unet_filters,
            tile_multiple_zyx=unet_tile_multiple(self.patch_zyx[0], section.unet_levels),
            target_sigma_um=section.target_sigma_um, min_distance_um=section.min_distance_um,
            peak_threshold=section.peak_threshold, chosen_from_data=section.chosen_from_data or None)

    def final_report(self, model: Any) -> FinalReport:
        section = self.section
        decoding = UNetDecoding(self.patch_zyx, section.unet_levels, section.unet_filters, section.min_distance_um)
        scores = validation_report(model, self.validation_crops, decoding, section.match_distance_um,
                                   section.peak_threshold)
        return FinalReport({f"validation {key}": value for key, value in scores.items()},
                           self.settings().replace(peak_threshold=scores["threshold"], validation_scores=scores))
