"""Frames as OrganoidTracker's predictors prepare them, for running (and training further) its models.

What differs from octrack's own frames (octrack.frames):

* The frames of a time window: a frame the movie lacks is replaced by the nearest frame of the same window,
  the earlier one first at each distance (`window_time_points`).
* Several channels (`image_channels_N = 1,3`) are each scaled to 8 bits (maximum → 255, after adding the
  channel's minimum, as OrganoidTracker does) and added with saturation at 255 (`summed_channels`). One
  channel passes unchanged.
* Normalisation over the whole window: low = the lowest 1 % quantile (`numpy.quantile` of each whole 3D frame),
  high = the highest 99 % quantile among the window's frames; then (value - low) / (high - low), clipped to
  0..1, computed in float32 as OrganoidTracker computes it. So the same frame is normalised differently in
  different windows, and `OTFrameReader` keeps raw frames and normalises per window.
* No rescaling: OrganoidTracker's models run at the images' own pixels (its scale factors default to 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from octrack.dataset import Dataset
from octrack.frames import FrameReader, ModelFrames, NormalizedFrame
from octrack.time_window import TimeWindow
from octrack.tracking import VoxelSize

log = logging.getLogger(__name__)
QUANTILES = (0.01, 0.99)  # OrganoidTracker's intensity_min_quantile, intensity_max_quantile


def window_time_points(existing: list[int], time_point: int, window: TimeWindow) -> list[int]:
    """The frames of the window around `time_point`, each missing one replaced by the nearest frame of the
    window (earlier first at each distance; replacements may themselves be replacements, as in OrganoidTracker,
    which fills the window's frames in order)."""
    wanted = window.time_points(time_point)
    present = set(existing)
    chosen: dict[int, int | None] = {t: t if t in present else None for t in wanted}
    for t in wanted:
        if chosen[t] is not None:
            continue
        for distance in range(1, len(wanted) + 1):
            found = next((chosen[other] for other in (t - distance, t + distance) if chosen.get(other) is not None),
                         None)
            if found is not None:
                chosen[t] = found
                break
    return [int(chosen[t]) for t in wanted]  # type: ignore[arg-type]  # the centre always exists


def eight_bits(image: np.ndarray) -> np.ndarray:
    """A channel as OrganoidTracker scales it for summing: unchanged if uint8, else its minimum added (sic) and
    the maximum mapped to 255, truncated to uint8."""
    if image.dtype == np.uint8:
        return image
    scaled = image.astype(np.float32)
    scaled += scaled.min()
    return (scaled / float(scaled.max()) * 255.0).astype(np.uint8)


def summed_channels(channels: list[np.ndarray]) -> np.ndarray:
    """OrganoidTracker's sum of several channels: each in 8 bits, added with saturation at 255."""
    total = channels[0]
    for channel in channels[1:]:
        total = np.minimum(eight_bits(total).astype(np.uint16) + eight_bits(channel), 255).astype(np.uint8)
    return total


def read_frame(dataset: Dataset, time_point: int) -> np.ndarray:
    """One frame of the dataset's configured channel(s) as OrganoidTracker reads it: in the stored number type
    (integers stay integers, so that quantiles are computed as OrganoidTracker computes them)."""
    images, channels = dataset.images, dataset.config.image_channels
    stored = [images.read(time_point, (channel,)).astype(images.dtype, copy=False) for channel in channels]
    return stored[0] if len(stored) == 1 else summed_channels(stored)


def normalized(raw: np.ndarray, low: float, high: float) -> np.ndarray:
    """float32 (raw - low) / (high - low), clipped to 0..1, in OrganoidTracker's order of float32 steps."""
    data = raw.astype(np.float32)
    data /= np.float32(high - low)
    data -= np.float32(low / (high - low))
    np.clip(data, 0.0, 1.0, out=data)
    return data


def padding_value(low: float, high: float) -> float:
    """What a voxel outside the image becomes: OrganoidTracker pads a patch with zeros before normalising it."""
    return float(normalized(np.zeros(1, dtype=np.float32), low, high)[0])


@dataclass(frozen=True)
class _RawFrame:
    data: np.ndarray
    low: float  # its QUANTILES
    high: float


class OTFrameReader(FrameReader):
    """A dataset's frames normalised per time window as OrganoidTracker normalises them (see the module).

    It holds the raw frames of the last window asked for, and the window's normalised copies while they are in
    use: consecutive windows share all but one frame, so each frame is read once."""

    def __init__(self, dataset: Dataset):
        super().__init__(dataset)
        self._raw: dict[int, _RawFrame] = {}

    def frames(self, time_point: int, window: TimeWindow) -> list[NormalizedFrame]:
        time_points = window_time_points(self.dataset.images.time_points, time_point, window)
        self._raw = {t: frame for t, frame in self._raw.items() if t in time_points}
        for missing in dict.fromkeys(t for t in time_points if t not in self._raw):
            raw = read_frame(self.dataset, missing)
            low, high = (float(value) for value in np.quantile(raw, QUANTILES))
            self._raw[missing] = _RawFrame(raw, low, high)
        low = min(self._raw[t].low for t in time_points)
        high = max(self._raw[t].high for t in time_points)
        data = {t: normalized(self._raw[t].data, low, high) for t in dict.fromkeys(time_points)}
        return [NormalizedFrame(data[t], low, high) for t in time_points]


def ot_frames(dataset: Dataset, window: TimeWindow) -> ModelFrames:
    """The dataset's frames for an OrganoidTracker model with this time window, at the images' own pixels.
    Where the dataset's voxel size is unknown, pixels count as µm (with a warning: only the candidate links,
    chosen by distance, depend on it)."""
    voxel_size = dataset.voxel_size
    if voxel_size is None:
        log.warning(f"{dataset.config.where('pixel_size_x_um')}: the voxel size of {dataset.name} is not known; "
                    f"distances are measured in pixels")
        voxel_size = VoxelSize(1.0, 1.0, 1.0)
    return ModelFrames(OTFrameReader(dataset), window, np.ones(3), voxel_size, dataset.images.shape_zyx[0])


def cut_patch(frames: list[NormalizedFrame], start_zyx: tuple[int, ...], shape_zyx: tuple[int, ...]) -> np.ndarray:
    """(z, y, x, frames) float32: the box of `shape` at `start` (may stick out) in each normalised frame of a
    window; outside the image, the value OrganoidTracker's zero padding becomes (`padding_value`)."""
    patch = np.full((*shape_zyx, len(frames)), padding_value(frames[0].low, frames[0].high), dtype=np.float32)
    image_shape = np.array(frames[0].data.shape)
    start = np.asarray(start_zyx, dtype=int)
    low, high = np.clip(start, 0, image_shape), np.clip(start + shape_zyx, 0, image_shape)
    if np.all(high > low):
        inside = tuple(slice(a, b) for a, b in zip(low, high))
        target = tuple(slice(a, b) for a, b in zip(low - start, high - start))
        for channel, frame in enumerate(frames):
            patch[(*target, channel)] = frame.data[inside]
    return patch


def patch_start(centre_zyx: np.ndarray, shape_zyx: tuple[int, int, int]) -> tuple[int, int, int]:
    """Where OrganoidTracker starts the patch around a position: round(coordinate − size / 2) per axis (round
    half to even, as Python's `round`)."""
    return tuple(int(value) for value in np.round(np.asarray(centre_zyx, dtype=np.float64)
                                                  - np.asarray(shape_zyx) / 2))  # type: ignore[return-value]
