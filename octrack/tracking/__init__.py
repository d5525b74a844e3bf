"""Tracking data: the in-memory model and its readers and writers (.aut, CSV, Cell Tracking Challenge)."""

from octrack.tracking.io import load_tracking, save_tracking, tracking_stats
from octrack.tracking.model import Position, Tracking, VoxelSize

__all__ = ["Position", "Tracking", "VoxelSize", "load_tracking", "save_tracking", "tracking_stats"]
