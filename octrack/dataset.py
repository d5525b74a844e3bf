"""A configured dataset: its images (read lazily), its annotations, its time points and voxel size.

This is where a numbered dataset of the ini meets the files it names, so this is where mistakes that
need both (a channel the images lack, time points that do not exist) are reported, naming the ini key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from octrack.config import Config, DatasetConfig
from octrack.errors import UserError
from octrack.images import ImageSource, open_images
from octrack.tracking import Tracking, VoxelSize, load_tracking


@dataclass
class Dataset:
    config: DatasetConfig
    images: ImageSource
    tracking: Tracking | None
    time_points: list[int]
    voxel_size: VoxelSize | None

    @property
    def name(self) -> str:
        return f"{self.config.section} dataset {self.config.number}"

    def read(self, time_point: int) -> np.ndarray:
        """One frame, float32 (z, y, x), with the configured channels summed."""
        return self.images.read(time_point, self.config.image_channels)

    def window(self, time_point: int, before: int, after: int) -> list[int]:
        """Time points of the window around `time_point`; at the ends of the movie the nearest one repeats."""
        first, last = self.time_points[0], self.time_points[-1]
        return [min(max(t, first), last) for t in range(time_point - before, time_point + after + 1)]

    def describe(self) -> str:
        voxel = (f"{self.voxel_size.x_um:g} × {self.voxel_size.y_um:g} × {self.voxel_size.z_um:g} µm"
                 if self.voxel_size else "unknown (pixels)")
        annotated = f", {len(self.tracking)} annotated positions" if self.tracking is not None else ""
        z, y, x = self.images.shape_zyx
        return (f"{self.name}: time points {self.time_points[0]}–{self.time_points[-1]}, "
                f"x,y,z = {x},{y},{z}, channels {','.join(map(str, self.config.image_channels))}, "
                f"voxel size {voxel}{annotated}")


def open_datasets(config: Config, section: str, *, check_all_files: bool = False) -> list[Dataset]:
    datasets = [open_dataset(dataset, check_all_files=check_all_files) for dataset in config.datasets(section)]
    if not datasets:
        raise UserError(f"{config.path} [{section}]: no datasets; add images_container_1 and "
                        f"images_pattern_1 (see organoid_tracker.ini.example)")
    return datasets


def open_dataset(config: DatasetConfig, *, check_all_files: bool = False) -> Dataset:
    images = _open_images(config, check_all_files)
    _check_channels(config, images)
    tracking = _load_tracking(config)
    time_points = _time_points(config, images)
    voxel_size = _voxel_size(config, images, tracking)
    return Dataset(config, images, tracking, time_points, voxel_size)


def _open_images(config: DatasetConfig, check_all_files: bool) -> ImageSource:
    key = "images_pattern" if config.images_pattern else "images_container"
    try:
        images = open_images(config.images_container, config.images_pattern, config.images_axes)
        if check_all_files:
            images.check_shapes()
    except UserError as error:
        raise UserError(f"{config.where(key)}: {error}") from None
    return images


def _check_channels(config: DatasetConfig, images: ImageSource) -> None:
    missing = [channel for channel in config.image_channels if channel > images.channel_count]
    if missing:
        raise UserError(f"{config.where('image_channels')} = {','.join(map(str, config.image_channels))}: "
                        f"the images have {images.channel_count} channel(s), so channel {missing[0]} does not "
                        f"exist; use channels 1–{images.channel_count}")


def _load_tracking(config: DatasetConfig) -> Tracking | None:
    if config.tracking_file is None:
        return None
    try:
        return load_tracking(config.tracking_file)
    except UserError as error:
        raise UserError(f"{config.where('tracking_file')}: {error}") from None


def _time_points(config: DatasetConfig, images: ImageSource) -> list[int]:
    existing = images.time_points
    span = f"{existing[0]}–{existing[-1]}"
    for key, value in (("min_time_point", config.min_time_point), ("max_time_point", config.max_time_point)):
        if value is not None and not existing[0] <= value <= existing[-1]:
            raise UserError(f"{config.where(key)} = {value}: the images have time points {span} only; "
                            f"choose a time point in that range or leave the key empty")
    first = existing[0] if config.min_time_point is None else config.min_time_point
    last = existing[-1] if config.max_time_point is None else config.max_time_point
    return [t for t in existing if first <= t <= last]


def _voxel_size(config: DatasetConfig, images: ImageSource, tracking: Tracking | None) -> VoxelSize | None:
    """Per axis: the ini's value, else the TIFF metadata, else the tracking file's resolution."""
    fallbacks = [source for source in (images.voxel_size, tracking.voxel_size if tracking else None) if source]
    axes = {}
    for axis in ("x", "y", "z"):
        value = getattr(config, f"pixel_size_{axis}_um")
        candidates = [value] + [getattr(source, f"{axis}_um") for source in fallbacks]
        axes[axis] = next((candidate for candidate in candidates if candidate), None)
    minutes = config.time_point_duration_m or next(
        (source.t_minutes for source in fallbacks if source.t_minutes), None)
    if None in axes.values():
        return None
    return VoxelSize(axes["x"], axes["y"], axes["z"], minutes)


def require_voxel_size(dataset: Dataset) -> VoxelSize:
    """For commands that cannot work in pixels: the voxel size, or a UserError that says how to give it."""
    if dataset.voxel_size is None:
        raise UserError(f"{dataset.config.where('pixel_size_x_um')}: the voxel size of {dataset.name} is not "
                        f"known (not in the ini, the TIFF metadata or the tracking file); set "
                        f"pixel_size_x_um_{dataset.config.number}, pixel_size_y_um_{dataset.config.number} and "
                        f"pixel_size_z_um_{dataset.config.number} (1 each to work in pixels)")
    return dataset.voxel_size
