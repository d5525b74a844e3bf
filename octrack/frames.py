"""Normalised frames of a dataset, read once and reused across the overlapping time windows of samples."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from octrack.dataset import Dataset
from octrack.intensity import normalize, percentile_range


@dataclass(frozen=True)
class NormalizedFrame:
    data: np.ndarray  # float32 (z, y, x)
    low: float
    high: float


class FrameReader:
    """Reads and normalises frames of one dataset, keeping the last few (a time window's worth) in memory."""

    def __init__(self, dataset: Dataset, keep: int = 4):
        self.dataset = dataset
        self._keep = keep
        self._frames: OrderedDict[int, NormalizedFrame] = OrderedDict()

    def frame(self, time_point: int) -> NormalizedFrame:
        if time_point in self._frames:
            self._frames.move_to_end(time_point)
            return self._frames[time_point]
        raw = self.dataset.read(time_point)
        low, high = percentile_range(raw)
        frame = NormalizedFrame(normalize(raw, low, high), low, high)
        self._frames[time_point] = frame
        if len(self._frames) > self._keep:
            self._frames.popitem(last=False)
        return frame

    def frames(self, time_point: int, before: int, after: int) -> list[NormalizedFrame]:
        """The frames of the time window around `time_point` (the nearest one repeats at the movie's ends)."""
        return [self.frame(t) for t in self.dataset.window(time_point, before, after)]

    def window(self, time_point: int, before: int, after: int,
               box: tuple[slice, slice, slice]) -> tuple[np.ndarray, list[NormalizedFrame]]:
        """The frames of the time window, cut to `box` (z, y, x), as channels: float32 (z, y, x, window)."""
        frames = self.frames(time_point, before, after)
        return np.stack([frame.data[box] for frame in frames], axis=-1), frames
