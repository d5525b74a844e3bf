"""OrganoidTracker's image filters: the `.aut` key `image_filters`, which OrganoidTracker applies to the images
of an experiment wherever it reads them through the experiment (its training scripts among them).

The file holds a list of filters per channel (`channel_0` = the first channel, ...); each channel's filters apply
in order to each 3D frame of that channel, in its own number type, before anything else:

- `threshold` (`min`): pixels below `min` × the frame's maximum become 0;
- `gaussian` (`radius_px`): a Gaussian blur of each z slice with σ = radius / 2 pixels (edges: nearest pixel);
- `multiply` (`factor`): brightness × factor, clipped at the frame's maximum;
- `interpolated_min_max` (`points`: `{t, z, min, max}`): per z slice, the window min…max (interpolated
  linearly in time point and z between the points, else the nearest point's) stretched to the full range of
  the number type (0…1 for floats).

octrack applies them where a dataset's tracking file has them (`octrack.dataset`), to training and prediction
alike, so that a network sees the same kind of images in both. A filter type octrack does not know is left out
with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FILE_KEY = "image_filters"
Filter = Callable[[np.ndarray, int], None]  # (frame (z, y, x) changed in place, time point)


class ImageFilters:
    """The filters of each channel (0-based index), from an `.aut` file's `image_filters`."""

    def __init__(self, data: dict[str, Any] | None = None, source: str = ""):
        self.data = data or {}
        self._filters: dict[int, list[Filter]] = {}
        for key, filters in self.data.items():
            channel = int(key.removeprefix("channel_"))
            self._filters[channel] = [made for made in (_filter(spec, source) for spec in filters) if made]

    def __bool__(self) -> bool:
        return any(self._filters.values())

    def apply(self, frame: np.ndarray, time_point: int, channel: int) -> np.ndarray:
        """The frame of a channel (0-based) with its filters applied (a filtered copy; unchanged without filters)."""
        filters = self._filters.get(channel)
        if not filters:
            return frame
        frame = np.array(frame, copy=True)
        for image_filter in filters:
            image_filter(frame, time_point)
        return frame

    def describe(self) -> str:
        return "; ".join(f"channel {int(key.removeprefix('channel_')) + 1}: "
                         + ", ".join(spec.get("type", "?") for spec in filters)
                         for key, filters in self.data.items() if filters)


def _filter(spec: dict[str, Any], source: str) -> Filter | None:
    kind = spec.get("type")
    try:
        if kind == "threshold":
            return _threshold(float(spec["min"]))
        if kind == "gaussian":
            return _gaussian(float(spec["radius_px"]))
        if kind == "multiply":
            return _multiply(float(spec["factor"]))
        if kind == "interpolated_min_max":
            return _min_max([(float(p["t"]), float(p["z"]), float(p["min"]), float(p["max"])) for p in spec["points"]])
    except (KeyError, TypeError, ValueError) as error:
        log.warning(f"{source}: image filter {spec!r} is incomplete ({error}); it is left out")
        return None
    log.warning(f"{source}: image filter type {kind!r} is unknown to octrack; it is left out")
    return None


def _threshold(minimum: float) -> Filter:
    def apply(frame: np.ndarray, time_point: int) -> None:
        frame[frame < minimum * frame.max()] = 0
    return apply


def _gaussian(radius: float) -> Filter:
    from scipy import ndimage

    def apply(frame: np.ndarray, time_point: int) -> None:
        for z in range(frame.shape[0]):
            blurred = ndimage.gaussian_filter(frame[z].astype(np.float32), sigma=radius / 2, mode="nearest",
                                              truncate=4.0)
            frame[z] = blurred.astype(frame.dtype)
    return apply


def _multiply(factor: float) -> Filter:
    def apply(frame: np.ndarray, time_point: int) -> None:
        maximum = frame.max()
        if factor == int(factor) and np.issubdtype(frame.dtype, np.integer):
            np.minimum(frame, int(maximum / factor) if factor else maximum, out=frame)
            frame *= int(factor)
            return
        scaled = frame * factor
        scaled[scaled > maximum] = maximum
        frame[...] = scaled.astype(frame.dtype)
    return apply


def _min_max(points: list[tuple[float, float, float, float]]) -> Filter:
    window = _window_interpolation(points)

    def apply(frame: np.ndarray, time_point: int) -> None:
        integer = np.issubdtype(frame.dtype, np.integer)
        top = np.iinfo(frame.dtype).max if integer else 1.0
        for z in range(frame.shape[0]):
            low, high = window(time_point, z)
            if integer:
                low, high = int(low), int(high)
            plane = frame[z]
            np.clip(plane, low, high, out=plane)
            plane -= low
            plane[...] = plane * (top / (high - low)) if high > low else 0
    return apply


def _window_interpolation(points: list[tuple[float, float, float, float]]
                          ) -> Callable[[int, int], tuple[float, float]]:
    """(min, max) at (time point, z): linear between the points where they span an area, else the nearest."""
    from scipy.interpolate import LinearNDInterpolator
    from scipy.spatial import QhullError

    where = np.array([(t, z) for t, z, _, _ in points])
    values = np.array([(low, high) for _, _, low, high in points])
    interpolate = None
    if len(points) >= 3:
        try:
            interpolate = LinearNDInterpolator(where, values)
        except QhullError:  # all points on one line: no area to interpolate in
            interpolate = None

    def window(time_point: int, z: int) -> tuple[float, float]:
        if interpolate is not None:
            low, high = interpolate(time_point, z)[0]
            if not (np.isnan(low) or np.isnan(high)):
                return float(low), float(high)
        nearest = int(np.argmin(((where - (time_point, z)) ** 2).sum(axis=1)))
        return float(values[nearest][0]), float(values[nearest][1])
    return window
