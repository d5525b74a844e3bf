"""Normalised frames of a dataset, read once and reused across the overlapping time windows of samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from octrack.dataset import Dataset
from octrack.intensity import normalize_in_place, percentile_range


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

    def frames(self, time_point: int, before: int, after: int) -> list[NormalizedFrame]:
        """The frames of the time window around `time_point` (the nearest one repeats at the movie's ends)."""
        window = self.dataset.window(time_point, before, after)
        self._frames = {t: frame for t, frame in self._frames.items() if t in window}  # before reading more
        for missing in dict.fromkeys(t for t in window if t not in self._frames):
            self._frames[missing] = self._read(missing)
        return [self._frames[t] for t in window]

    def arrays(self, time_point: int, before: int, after: int) -> list[np.ndarray]:
        """The data of `frames`. Hold them no longer than one time point needs them: a frame that leaves the
        window is freed only when nothing else holds it."""
        return [frame.data for frame in self.frames(time_point, before, after)]

    def _read(self, time_point: int) -> NormalizedFrame:
        raw = self.dataset.read(time_point)
        low, high = percentile_range(raw)
        data = normalize_in_place(raw, low, high)
        if self.zoom_zyx is not None:
            from scipy import ndimage

            data = ndimage.zoom(data, self.zoom_zyx, order=1)
        return NormalizedFrame(data, low, high)

    def window(self, time_point: int, before: int, after: int,
               box: tuple[slice, slice, slice]) -> tuple[np.ndarray, list[NormalizedFrame]]:
        """The frames of the time window, cut to `box` (z, y, x), as channels: float32 (z, y, x, window)."""
        frames = self.frames(time_point, before, after)
        return np.stack([frame.data[box] for frame in frames], axis=-1), frames
