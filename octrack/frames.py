"""Normalised frames of a dataset, read once and reused across the overlapping time windows of samples; and the
same frames as a trained model sees them (at its voxel size), for prediction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from octrack.dataset import Dataset
from octrack.intensity import normalize_in_place, percentile_range
from octrack.time_window import TimeWindow
from octrack.tracking import Position, Tracking, VoxelSize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NormalizedFrame:
    data: np.ndarray  # float32 (z, y, x)
    low: float
    high: float


class FrameReader:
    """Reads and normalises frames of one dataset, optionally rescaled by `zoom_zyx` (scipy.ndimage.zoom,
    linear) after normalisation.

    It holds the frames of the last time window asked for and no others: consecutive windows share all but
    one frame, so each frame is read once, and memory holds one window's frames however long the movie.
    """

    def __init__(self, dataset: Dataset, zoom_zyx: Sequence[float] | None = None):
        self.dataset = dataset
        self.zoom_zyx = zoom_zyx
        self._frames: dict[int, NormalizedFrame] = {}

    def frames(self, time_point: int, window: TimeWindow) -> list[NormalizedFrame]:
        """The frames of the time window around `time_point` (the nearest one repeats at the movie's ends)."""
        time_points = self.dataset.window_time_points(time_point, window)
        self._frames = {t: frame for t, frame in self._frames.items() if t in time_points}  # before reading more
        for missing in dict.fromkeys(t for t in time_points if t not in self._frames):
            self._frames[missing] = self._read(missing)
        return [self._frames[t] for t in time_points]

    def arrays(self, time_point: int, window: TimeWindow) -> list[np.ndarray]:
        """The data of `frames`. Hold them no longer than one time point needs them: a frame that leaves the
        window is freed only when nothing else holds it."""
        return [frame.data for frame in self.frames(time_point, window)]

    def _read(self, time_point: int) -> NormalizedFrame:
        raw = self.dataset.read(time_point)
        low, high = percentile_range(raw)
        data = normalize_in_place(raw, low, high)
        if self.zoom_zyx is not None:
            from scipy import ndimage

            data = ndimage.zoom(data, self.zoom_zyx, order=1)
        return NormalizedFrame(data, low, high)

    def crop(self, time_point: int, window: TimeWindow, box: tuple[slice, slice, slice]
             ) -> tuple[np.ndarray, list[NormalizedFrame]]:
        """The frames of the time window, cut to `box` (z, y, x), as channels: float32 (z, y, x, frames)."""
        frames = self.frames(time_point, window)
        return np.stack([frame.data[box] for frame in frames], axis=-1), frames


@dataclass
class ModelFrames:
    """A dataset's frames as one trained model sees them: normalised exactly as prepare normalised its training
    crops, rescaled to the voxel size it was trained at, over its time window."""

    reader: FrameReader
    window: TimeWindow
    factor_zyx: np.ndarray  # per axis, maps pixel coordinates of the images to those of the frames
    voxel_size: VoxelSize  # of the images (the model's, where the dataset's is unknown)
    depth: int  # z slices of the images

    def around(self, time_point: int) -> list[np.ndarray]:
        """The frames of the window around `time_point`."""
        return self.reader.arrays(time_point, self.window)

    def image_zyx(self, tracking: Tracking, positions: list[Position]) -> np.ndarray:
        """(n, 3) the image pixels of positions: their time point's offset taken off, z = 0 in 2D images."""
        images = [tracking.image_position(position) for position in positions]
        return np.array([(0.0 if self.depth == 1 else p.z, p.y, p.x) for p in images],
                        dtype=np.float64).reshape(-1, 3)


def frames_for_model(dataset: Dataset, model_voxel_size: VoxelSize, window: TimeWindow) -> ModelFrames:
    """The dataset's frames for a model trained at `model_voxel_size` (see `ModelFrames`)."""
    voxel_size = voxel_size_or_model(dataset, model_voxel_size)
    reader, factor = model_frames(dataset, voxel_size, model_voxel_size)
    return ModelFrames(reader, window, factor, voxel_size, dataset.images.shape_zyx[0])


def voxel_size_or_model(dataset: Dataset, model_voxel_size: VoxelSize) -> VoxelSize:
    """The dataset's voxel size; where it is unknown, the model's, with a warning."""
    if dataset.voxel_size is not None:
        return dataset.voxel_size
    log.warning(f"{dataset.config.where('pixel_size_x_um')}: the voxel size of {dataset.name} is not known; "
                f"assuming the model's, z, y, x = {model_voxel_size.z_um:g}, {model_voxel_size.y_um:g}, "
                f"{model_voxel_size.x_um:g} µm")
    return model_voxel_size


def model_frames(dataset: Dataset, voxel_size: VoxelSize, model_voxel_size: VoxelSize
                 ) -> tuple[FrameReader, np.ndarray]:
    """A reader of the dataset's frames at the model's voxel size (rescaled as they are read, left as they are
    where it matches within 2 %), and per axis (z, y, x) the factor that maps pixel coordinates of the images
    to those of its frames."""
    shape = np.array(dataset.images.shape_zyx)
    zoom = np.array(voxel_size.zyx_um()) / np.array(model_voxel_size.zyx_um())
    zoom[shape == 1] = 1.0
    if np.allclose(zoom, 1.0, rtol=0.02):
        return FrameReader(dataset), np.ones(3)
    zoomed = np.round(shape * zoom)  # the shape ndimage.zoom gives; it maps the first and last voxels onto each other
    return FrameReader(dataset, tuple(zoom)), np.where(zoomed > 1, (zoomed - 1) / np.maximum(shape - 1, 1), 1.0)
