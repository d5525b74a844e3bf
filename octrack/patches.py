"""Cutting fixed-size regions out of volumes, zero-filled where they stick out (shared by the three networks)."""

from __future__ import annotations

import numpy as np


def cut_region(volume: np.ndarray, offset_zyx: np.ndarray, extent_zyx: tuple[int, int, int]) -> np.ndarray:
    """The region of `volume` (z, y, x, ...) of shape `extent` starting at `offset` (may be negative or reach
    past the end): float32, zeros where it lies outside the volume."""
    offset = np.asarray(offset_zyx, dtype=int)
    region = np.zeros((*extent_zyx, *volume.shape[3:]), dtype=np.float32)
    source_low = np.clip(offset, 0, volume.shape[:3])
    source_high = np.clip(offset + extent_zyx, 0, volume.shape[:3])
    if np.all(source_high > source_low):
        target_low, target_high = source_low - offset, source_high - offset
        region[target_low[0]:target_high[0], target_low[1]:target_high[1], target_low[2]:target_high[2]] = \
            volume[source_low[0]:source_high[0], source_low[1]:source_high[1], source_low[2]:source_high[2]]
    return region


def offset_centred_on(centre_zyx: np.ndarray, extent_zyx: tuple[int, int, int]) -> np.ndarray:
    """The offset of a region of `extent` whose central voxel (for even sizes: the one after the middle)
    holds `centre`; regions of different extents around one centre share their middle exactly, as long as
    the extents differ by even numbers."""
    return np.floor(np.asarray(centre_zyx, dtype=np.float64) - (np.asarray(extent_zyx) - 1) / 2 + 0.5).astype(int)


def centre_crop(region: np.ndarray, patch_zyx: tuple[int, int, int]) -> np.ndarray:
    """The middle `patch` of a region (z, y, x, ...) whose extent exceeds the patch by even numbers."""
    low = [(size - patch) // 2 for size, patch in zip(region.shape[:3], patch_zyx)]
    return region[low[0]:low[0] + patch_zyx[0], low[1]:low[1] + patch_zyx[1], low[2]:low[2] + patch_zyx[2]]
