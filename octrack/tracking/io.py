"""Loading and saving trackings in any supported format, chosen by file extension, and their statistics."""

from __future__ import annotations

import dataclasses
import statistics
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from octrack.errors import UserError
from octrack.tracking.aut import load_aut, save_aut
from octrack.tracking.checks import check_tracking
from octrack.tracking.ctc import RESULT_FOR_ORGANOIDTRACKER, TRACK_FILES, load_ctc, save_ctc
from octrack.tracking.csv_io import load_csv, save_csv
from octrack.tracking.geff_io import load_geff, save_geff
from octrack.tracking.model import Tracking, VoxelSize

_LOADERS: dict[str, Callable[[Path], Tracking]] = {".aut": load_aut, ".csv": load_csv}
_SAVERS: dict[str, Callable[[Tracking, Path], None]] = {".aut": save_aut, ".csv": save_csv, ".geff": save_geff}
_FORMATS = ".aut, .csv, .geff or a Cell Tracking Challenge folder"
_LOSSLESS = (".aut", ".geff")  # the formats that hold image offsets, file data and lineage data


def load_tracking(path: str | Path, voxel_size: VoxelSize | None = None) -> Tracking:
    """Reads an .aut or .csv file, a .geff folder or a CTC folder (or its man_track.txt / res_track.txt).

    `voxel_size` is used where the file has none."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: not found; check the path")
    if path.suffix.lower() == ".geff":
        tracking = load_geff(path, voxel_size)
    elif path.is_dir():
        tracking = load_ctc(path)
    elif path.name in (*TRACK_FILES, RESULT_FOR_ORGANOIDTRACKER):
        tracking = load_ctc(path.parent)
    elif path.suffix.lower() in _LOADERS:
        tracking = _LOADERS[path.suffix.lower()](path)
    else:
        raise UserError(f"{path}: unknown tracking format {path.suffix!r}; give {_FORMATS}")
    check_tracking(tracking, path)
    if tracking.voxel_size is None:
        tracking.voxel_size = voxel_size
    return tracking


def save_tracking(tracking: Tracking, path: str | Path, *, image_shape_zyx: tuple[int, ...] | None = None,
                  frame_count: int | None = None, radius_um: float | None = None, radius_px: float | None = None,
                  ground_truth: bool = False) -> Path:
    """Writes .aut, .csv or .geff, or a CTC folder for a path without suffix or an existing folder; returns what
    it wrote (a ground-truth CTC folder goes into `TRA/`).

    The image shape and frame count (which a CTC folder needs: see `save_ctc`), the marker radius and
    `ground_truth` (man_track instead of res_track files) apply to CTC only."""
    path = Path(path)
    if path.suffix.lower() not in _LOSSLESS:
        _warn_of_lost_data(tracking, path)
    if path.suffix.lower() in _SAVERS:
        _SAVERS[path.suffix.lower()](tracking, path)
        return path
    if is_ctc_path(path):
        return save_ctc(tracking, path, image_shape_zyx=image_shape_zyx, frame_count=frame_count,
                        radius_um=radius_um, radius_px=radius_px, ground_truth=ground_truth)
    raise UserError(f"{path}: unknown tracking format {path.suffix!r}; give {_FORMATS}")


def is_ctc_tracking(path: Path) -> bool:
    """Whether `load_tracking` reads `path` as Cell Tracking Challenge ground truth or results."""
    return path.suffix.lower() != ".geff" and (path.is_dir() or path.name in (*TRACK_FILES, RESULT_FOR_ORGANOIDTRACKER))


def is_ctc_path(path: Path) -> bool:
    """Whether `save_tracking` writes a CTC folder there: a folder (not a .geff one), or a path without suffix."""
    return path.suffix.lower() not in _SAVERS and (path.is_dir() or not path.suffix)


def _warn_of_lost_data(tracking: Tracking, path: Path) -> None:
    """Only .aut and .geff hold image offsets: elsewhere the positions no longer say where they are in the images."""
    shifted = sum(any(offset) for offset in tracking.image_offsets.values())
    if shifted:
        warnings.warn(f"{path}: only .aut and .geff hold image offsets; the offsets of {shifted} time point(s) are "
                      f"left out, and the positions are written as they are, not in image pixels", stacklevel=3)


def data_left_out(tracking: Tracking, path: Path) -> str | None:
    """What a tracking file at `path` cannot hold of the tracking's file data and lineage metadata (only .aut and
    .geff hold them), as a warning for a command that writes the format the user chose; None if nothing."""
    lost = list(tracking.file_data) + (["lineage metadata"] if tracking.lineage_data else [])
    if not lost or path.suffix.lower() in _LOSSLESS:
        return None
    return f"{path}: only .aut and .geff hold {', '.join(lost)} of the input; left out here"


def tracking_stats(tracking: Tracking) -> dict[str, Any]:
    """Counts of time points, positions, links, tracks and divisions, and track lengths in time points."""
    time_points = tracking.time_points()
    tracks = tracking.tracks()
    lengths = [track[-1].t - track[0].t + 1 for track in tracks]
    return {
        "time_points": len(time_points),
        "first_time_point": time_points[0] if time_points else None,
        "last_time_point": time_points[-1] if time_points else None,
        "positions": len(tracking),
        "positions_per_time_point": {t: len(tracking.positions_at(t)) for t in time_points},
        "links": tracking.link_count(),
        "tracks": len(tracks),
        "divisions": len(tracking.divisions()),
        "track_length": {"min": min(lengths), "median": statistics.median(lengths),
                         "mean": statistics.fmean(lengths), "max": max(lengths)} if lengths else None,
        "voxel_size": dataclasses.asdict(tracking.voxel_size) if tracking.voxel_size else None,
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A human-readable summary of `tracking_stats`."""
    lines = [f"Time points:  {stats['time_points']}" + (
        f" ({stats['first_time_point']} to {stats['last_time_point']})" if stats["time_points"] else "")]
    per_time_point = stats["positions_per_time_point"]
    counts = f" ({min(per_time_point.values())} to {max(per_time_point.values())} per time point)" \
        if per_time_point else ""
    lines += [f"Positions:    {stats['positions']}{counts}",
              f"Links:        {stats['links']}",
              f"Tracks:       {stats['tracks']}",
              f"Divisions:    {stats['divisions']}"]
    length = stats["track_length"]
    if length:
        lines.append(f"Track length: {length['min']} to {length['max']} time points"
                     f" (median {length['median']:g}, mean {length['mean']:.1f})")
    lines.append(f"Voxel size:   {_format_voxel_size(stats['voxel_size'])}")
    if per_time_point:
        lines.append("Positions per time point:")
        lines += [f"  {time_point:>5}: {count}" for time_point, count in per_time_point.items()]
    return "\n".join(lines)


def _format_voxel_size(voxel_size: dict[str, Any] | None) -> str:
    if voxel_size is None:
        return "unknown"
    text = f"z, y, x = {voxel_size['z_um']:g}, {voxel_size['y_um']:g}, {voxel_size['x_um']:g} µm"
    if voxel_size["t_minutes"] is not None:
        text += f", {voxel_size['t_minutes']:g} min per time point"
    return text
