"""Intensity normalisation, shared by prepare and predict so that training and prediction never disagree."""

from __future__ import annotations

import numpy as np

LOW_PERCENTILE = 1.0
HIGH_PERCENTILE = 99.8
_MAX_VOXELS_FOR_PERCENTILES = 1 << 24


def percentile_range(frame: np.ndarray) -> tuple[float, float]:
    """Percentiles 1 and 99.8 of a whole frame.

    Frames above 16 M voxels are sampled with a fixed stride (the same stride for the same frame shape),
    which changes the percentiles by far less than the noise and keeps prepare and predict fast.
    """
    values = frame.reshape(-1)[:: max(1, -(-frame.size // _MAX_VOXELS_FOR_PERCENTILES))]
    low, high = (float(value) for value in np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE]))
    if high - low <= 1e-6 * max(abs(low), abs(high), 1.0):  # a (nearly) empty frame: do not amplify noise
        high = low + max(float(values.max()) - low, 1.0)
    return low, high


def normalize_in_place(frame: np.ndarray, low: float, high: float) -> np.ndarray:
    """Maps `low` to 0 and `high` to 1 (values outside stay outside: nothing is clipped) in a float32 frame,
    overwriting it, so that memory never holds a second copy of a large frame. Returns the frame."""
    if frame.dtype != np.float32:
        raise TypeError(f"normalize_in_place needs a float32 frame, not {frame.dtype}")
    frame -= np.float32(low)
    frame /= np.float32(high - low)
    return frame
