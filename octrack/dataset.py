"""A configured dataset: its images (read lazily), its annotations, its time points and voxel size.

This is where a numbered dataset of the ini meets the files it names, so this is where mistakes that
need both (a channel the images lack, time points that do not exist) are reported, naming the ini key.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from octrack.config import Config, DatasetConfig
from octrack.errors import UserError
from octrack.image_filters import FILE_KEY, ImageFilters
from octrack.images import ImageSource, open_images
from octrack.time_window import TimeWindow
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking
from octrack.tracking.checks import check_lineage
from octrack.tracking.io import is_ctc_tracking

log = logging.getLogger(__name__)


@dataclass
class Dataset:
    config: DatasetConfig
    images: ImageSource
    tracking: Tracking | None
    time_points: list[int]  # those of the images within min_time_point … max_time_point
    voxel_size: VoxelSize | None
    image_filters: ImageFilters | None = None  # OrganoidTracker's, from the tracking file

    @property
    def name(self) -> str:
        return f"{self.config.section} dataset {self.config.number}"

    def read(self, time_point: int) -> np.ndarray:
        """One frame, float32 (z, y, x), with the configured channels summed (each after its image filters)."""
        return self.images.read(time_point, self.config.image_channels, self.image_filters)

    def how_read(self) -> list:
        """What decides the pixel values read besides the image files (channels, axes, image filters): for the
        fingerprints of what is made from them."""
        return [list(self.config.image_channels), self.config.images_axes,
                self.image_filters.data if self.image_filters else None]

    def window_time_points(self, time_point: int, window: TimeWindow) -> list[int]:
        """The frames of the time window around `time_point`: the movie's own, also beyond min_time_point and
        max_time_point, so that a time point has the same window in training as in prediction. Where the movie
        has no such frame (at its ends, or a missing file) the nearest existing one stands in, on a tie the one
        nearer to `time_point`."""
        existing = self.images.time_points
        return [_nearest(existing, t, time_point) for t in window.time_points(time_point)]

    @property
    def annotations_cover_image(self) -> bool:
        """Whether every nucleus of an annotated time point is annotated in the whole image (annotated_region_N;
        by default for Cell Tracking Challenge ground truth, which marks every nucleus), not only in the cuboid
        around the annotations."""
        if self.config.annotated_region is not None:
            return self.config.annotated_region == "image"
        return self.config.tracking_file is not None and is_ctc_tracking(self.config.tracking_file)

    def annotated_time_points(self) -> list[int]:
        """The time points with annotated positions inside the image."""
        return [t for t in self.time_points if self.annotated_positions(t)]

    def annotated_positions(self, time_point: int) -> list[Position]:
        """The annotated positions of a time point in image pixels: with the tracking's image offset of that
        time point subtracted, z = 0 for 2D images (annotations of 2D images may say z = 1), and only those inside
        the image; `outside_positions` counts the others. Uncertain annotations are not among them (see
        `uncertain_positions`). Empty without a tracking file."""
        return [image for _, image in self._annotations(time_point)[0]]

    def newborn_positions(self, time_point: int) -> list[Position]:
        """The annotated positions of a time point (image pixels, as `annotated_positions`) that are daughters in
        their first time point: their predecessor divides."""
        tracking = self.tracking
        if tracking is None:
            return []
        return [image for position, image in self.annotations_in_image(time_point)
                if any(len(tracking.future(mother)) == 2 for mother in tracking.past(position))]

    def uncertain_positions(self, time_point: int) -> list[Position]:
        """The uncertain annotations of a time point inside the image, in image pixels: training neither asks
        for a detection there nor against one."""
        return self._annotations(time_point)[2]

    def annotations_in_image(self, time_point: int) -> list[tuple[Position, Position]]:
        """(position in the tracking, the same in image pixels) for the annotated positions of a time point that
        lie inside the image: the tracking's positions carry its links, the image pixels say where to look."""
        return self._annotations(time_point)[0]

    def outside_positions(self, time_point: int) -> int:
        """How many annotated positions of a time point `annotated_positions` leaves out: outside the image."""
        return len(self._annotations(time_point)[1])

    def _annotations(self, time_point: int
                     ) -> tuple[list[tuple[Position, Position]], list[Position], list[Position]]:
        """The certain annotations of a time point inside the image (each with its image pixels), the
        annotations outside the image, and the uncertain ones inside (image pixels)."""
        if self.tracking is None:
            return [], [], []
        depth, height, width = self.images.shape_zyx
        inside, outside, uncertain = [], [], []
        for annotated in self.tracking.positions_at(time_point):
            position = self.tracking.image_position(annotated)
            if depth == 1:
                position = position._replace(z=0.0)
            if not (0 <= position.x < width and 0 <= position.y < height and 0 <= position.z < depth):
                outside.append(position)
            elif self.tracking.is_uncertain(annotated):
                uncertain.append(position)
            else:
                inside.append((annotated, position))
        return inside, outside, uncertain

    def describe(self) -> str:
        voxel = (f"z, y, x = {self.voxel_size.z_um:g}, {self.voxel_size.y_um:g}, {self.voxel_size.x_um:g} µm"
                 if self.voxel_size else "unknown (pixels)")
        annotated = f", {len(self.tracking)} annotated positions" if self.tracking is not None else ""
        z, y, x = self.images.shape_zyx
        return (f"{self.name}: time points {self.time_points[0]}–{self.time_points[-1]}, "
                f"z, y, x = {z}, {y}, {x}, channels {','.join(map(str, self.config.image_channels))}, "
                f"voxel size {voxel}{annotated}")


def open_datasets(config: Config, section: str, *, check_all_files: bool = False) -> list[Dataset]:
    datasets = [open_dataset(dataset, check_all_files=check_all_files) for dataset in config.datasets(section)]
    if not datasets:
        raise UserError(f"{config.path} [{section}]: no datasets; add images_container_1 and "
                        f"images_pattern_1 (`octrack init --example` lists every key)")
    return datasets


def open_dataset(config: DatasetConfig, *, check_all_files: bool = False) -> Dataset:
    """The dataset; `check_all_files` checks the headers of the image files of its time points."""
    with _naming_images_key(config):
        images = open_images(config.images_container, config.images_pattern, config.images_axes)
    _check_channels(config, images)
    tracking = _load_tracking(config)
    time_points = _time_points(config, images)
    if check_all_files:
        with _naming_images_key(config):
            images.check_shapes(time_points)
    voxel_size = _voxel_size(config, images, tracking)
    dataset = Dataset(config, images, tracking, time_points, voxel_size, _image_filters(config, tracking))
    _check_annotations_fit(dataset)
    return dataset


def _check_annotations_fit(dataset: Dataset) -> None:
    """Refuses annotations that mostly lie outside the images, or at many depths of images read as 2D: the
    images' axes (or size) are then read wrong, e.g. a 3D movie whose metadata say 2D, and training on what is
    left would be silently wrong. A few outside (at the border) only warn, where prepare counts them."""
    if dataset.tracking is None:
        return
    positions = [dataset.tracking.image_position(position) for t in dataset.time_points
                 for position in dataset.tracking.positions_at(t)]
    depths = {round(position.z) for position in positions}
    outside = sum(dataset.outside_positions(t) for t in dataset.time_points)
    problem = (f"{len(positions) - outside} of {len(positions)} annotated positions lie inside the images"
               if outside * 2 > len(positions) else
               f"the annotations lie at {len(depths)} depths (z {min(depths)}-{max(depths)})"
               if dataset.images.shape_zyx[0] == 1 and len(depths) > 2 else None)
    if problem:
        raise UserError(f"{dataset.config.where('tracking_file')}: {problem}, but the images are read as "
                        f"{dataset.images.describe()}; the images' axes or size are likely read wrong: set "
                        f"images_axes_{dataset.config.number} (e.g. TZYX), or check that the annotations belong to "
                        f"these images")


def _image_filters(config: DatasetConfig, tracking: Tracking | None) -> ImageFilters | None:
    """The image filters of the tracking file, applied as OrganoidTracker applies them (see
    `octrack.image_filters`); not where an .autlist sums channels, as its filters belong to the summed channel."""
    data = tracking.file_data.get(FILE_KEY) if tracking is not None else None
    if not data:
        return None
    where = config.where("tracking_file")
    if config.list_file is not None and len(config.image_channels) > 1:
        log.warning(f"{where}: its image filters are not applied: they belong to the channels that "
                    f"images_channel_summing makes, and octrack sums channels after reading them")
        return None
    filters = ImageFilters(data, where)
    if filters:
        log.info(f"{where}: applying OrganoidTracker's image filters ({filters.describe()}), as OrganoidTracker "
                 f"does to training images")
    return filters or None


def _images_key(config: DatasetConfig) -> str:
    """The ini key that names the image files, for messages about them."""
    return config.where("images_pattern" if config.images_pattern else "images_container")


@contextlib.contextmanager
def _naming_images_key(config: DatasetConfig) -> Iterator[None]:
    """Prefixes a UserError about the images with the ini key that names them."""
    try:
        yield
    except UserError as error:
        raise UserError(f"{_images_key(config)}: {error}") from None


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
        tracking = load_tracking(config.tracking_file)
    except UserError as error:
        raise UserError(f"{config.where('tracking_file')}: {error}") from None
    check_lineage(tracking, f"{config.where('tracking_file')}: {config.tracking_file}")
    return tracking


def _time_points(config: DatasetConfig, images: ImageSource) -> list[int]:
    existing = images.time_points
    span = f"{existing[0]}–{existing[-1]}"
    for key, value in (("min_time_point", config.min_time_point), ("max_time_point", config.max_time_point)):
        if value is not None and not existing[0] <= value <= existing[-1]:
            raise UserError(f"{config.where(key)} = {value}: the images have time points {span} only; "
                            f"choose a time point in that range or leave the key empty")
    first = existing[0] if config.min_time_point is None else config.min_time_point
    last = existing[-1] if config.max_time_point is None else config.max_time_point
    time_points = [t for t in existing if first <= t <= last]
    gaps = sorted(set(range(first, last + 1)) - set(time_points))
    if gaps:
        log.warning(f"{_images_key(config)}: the images lack time point(s) {_spans(gaps)} "
                    f"(missing files); those are left out, and time windows use the nearest frame instead")
    return time_points


def _spans(numbers: list[int]) -> str:
    """Sorted whole numbers as spans: [3, 5, 6, 7] → '3, 5-7'."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _nearest(existing: list[int], time_point: int, centre: int) -> int:
    """The time point of `existing` (sorted) nearest to `time_point`, on a tie the one nearer to `centre`."""
    index = bisect.bisect_left(existing, time_point)
    candidates = existing[max(index - 1, 0):index + 1]
    return min(candidates, key=lambda candidate: (abs(candidate - time_point), abs(candidate - centre)))


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
    if dataset.voxel_size is None and dataset.config.list_file is not None:
        raise UserError(f"{dataset.config.where('tracking_file')}: the voxel size of {dataset.name} is not known (not "
                        f"in the experiment file or the TIFF metadata); set the image resolution in OrganoidTracker "
                        f"and save the experiment file again")
    if dataset.voxel_size is None:
        raise UserError(f"{dataset.config.where('pixel_size_x_um')}: the voxel size of {dataset.name} is not "
                        f"known (not in the ini, the TIFF metadata or the tracking file); set "
                        f"pixel_size_x_um_{dataset.config.number}, pixel_size_y_um_{dataset.config.number} and "
                        f"pixel_size_z_um_{dataset.config.number} (1 each to work in pixels)")
    return dataset.voxel_size
