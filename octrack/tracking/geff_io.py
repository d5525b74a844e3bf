"""GEFF, the graph exchange file format (a zarr folder, `*.geff`), read and written with the `geff` package.

OrganoidTracker, Trackastra, Ultrack, TrackMate and traccuracy read and write it. octrack follows
OrganoidTracker's convention (`organoid_tracker/imaging/geff_io.py`), so that OrganoidTracker reads what octrack
writes:

- one node per position, with the properties `t` (time point), `z`, `y`, `x` (image pixels: the position minus
  its time point's image offset, as GEFF has no offsets per time point), and the position's metadata;
- one edge per link, from the earlier position to the later, with the link's metadata;
- axes `t` (type time, unit frame), `z`, `y`, `x` (type space, unit pixel); with a voxel size, each axis has a
  `scale` to physical units: minutes per time point (`scaled_unit` minute) and µm per pixel (micrometer), each
  axis its own (OrganoidTracker's exporter gives z the x scale and x the z scale; octrack does not);
- `extra`: OrganoidTracker's global data (the `.aut` key `other_data`), key by key, and under the key
  `octrack` what else the tracking holds (the other top-level data of an `.aut`, image offsets, lineage
  metadata), so that `.aut` → `.geff` → `.aut` loses nothing. OrganoidTracker keeps that key among its global
  data.

Reading also accepts positions in a length unit (micrometer, ...; converted to pixels with the voxel size) and
time in a time unit (converted to time points with the time step).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from octrack.errors import UserError
from octrack.files import atomic_path
from octrack.tracking.model import Position, Tracking, VoxelSize

OCTRACK_KEY = "octrack"
_SPACE = ("z", "y", "x")
_MICROMETRES = {"meter": 1e6, "centimeter": 1e4, "millimeter": 1e3, "micrometer": 1.0, "micron": 1.0,
                "nanometer": 1e-3}
_MINUTES = {"day": 1440.0, "hour": 60.0, "minute": 1.0, "second": 1 / 60, "millisecond": 1 / 60000}
_PIXELS, _FRAMES = (None, "pixel"), (None, "frame")


def save_geff(tracking: Tracking, path: str | Path) -> None:
    """Writes `tracking` as a GEFF zarr folder (replacing one that is there)."""
    import geff
    import networkx as nx

    graph = nx.DiGraph()
    ids = {position: node for node, position in enumerate(tracking.positions())}
    for position, node in ids.items():
        x, y, z = tracking.image_offsets.get(position.t, (0.0, 0.0, 0.0))
        graph.add_node(node, **_plain(tracking.position_data(position)), t=position.t, z=position.z - z,
                       y=position.y - y, x=position.x - x)
    for source, target in tracking.links():
        graph.add_edge(ids[source], ids[target], **_plain(tracking.link_data(source, target)))
    metadata = geff.GeffMetadata(geff_version=geff.__version__, directed=True, axes=_axes(tracking.voxel_size),
                                 node_props_metadata={}, edge_props_metadata={}, extra=_extra(tracking, ids))
    path = Path(path)
    with atomic_path(path) as temporary:
        try:
            geff.write(graph, temporary, metadata=metadata)
        except (TypeError, ValueError) as error:
            raise UserError(f"{path}: GEFF cannot hold this tracking's metadata ({error}); write .aut or .csv "
                            f"instead") from error


def load_geff(path: str | Path, voxel_size: VoxelSize | None = None) -> Tracking:
    """Reads a GEFF zarr folder; `voxel_size` converts positions given in µm (or time in minutes) where the file
    gives no scale of its own."""
    import geff

    path = Path(path)
    try:
        graph, metadata = geff.read(path)
    except Exception as error:  # the geff package raises many kinds (zarr, pydantic, its own) for unreadable input
        raise UserError(f"{path}: not a readable GEFF folder ({type(error).__name__}: {error}); give a .geff "
                        f"folder written by a GEFF writer") from error
    axes = {axis.name: axis for axis in metadata.axes or ()}
    names = _axis_names(path, axes)
    voxel_size = _voxel_size(axes, names) or voxel_size
    to_pixels = _space_to_pixels(path, axes, names, voxel_size)
    to_frames = _time_to_frames(path, axes[names["t"]] if names["t"] in axes else None, voxel_size)
    extra = dict(metadata.extra or {})
    saved = extra.pop(OCTRACK_KEY, {}) or {}
    tracking = Tracking(voxel_size, {int(t): tuple(offset) for t, offset in saved.get("image_offsets", {}).items()})
    tracking.file_data = dict(saved.get("file_data", {}))
    if extra:
        tracking.file_data["other_data"] = extra
    coordinates = {names[name]: name for name in ("t", *_SPACE)}
    positions = {}
    for node, data in graph.nodes(data=True):
        values = {coordinates[key]: _python(value) for key, value in data.items() if key in coordinates}
        if "t" not in values or "x" not in values or "y" not in values:
            raise UserError(f"{path}: node {node} has no {names['t']}, {names['y']} and {names['x']}; give a GEFF "
                            f"whose nodes have positions and time points")
        t = to_frames(values["t"])
        x, y, z = (to_pixels[axis](values.get(axis, 0.0)) + offset for axis, offset in
                   zip(("x", "y", "z"), tracking.image_offsets.get(t, (0.0, 0.0, 0.0))))
        metadata_of_node = {key: _python(value) for key, value in data.items() if key not in coordinates}
        positions[node] = tracking.add_position(Position(x, y, z, t), **metadata_of_node)
    for source, target, data in graph.edges(data=True):
        tracking.add_link(positions[source], positions[target], **{key: _python(value) for key, value in data.items()})
    for entry in saved.get("lineage_data", ()):
        tracking.lineage_data[positions[entry["node"]]] = entry["data"]
    return tracking


def _axes(voxel_size: VoxelSize | None) -> list[Any]:
    from geff_spec import Axis

    if voxel_size is None:
        return [Axis(name="t", type="time", unit="frame")] + [Axis(name=name, type="space", unit="pixel")
                                                                for name in _SPACE]
    time = Axis(name="t", type="time", unit="frame", scale=voxel_size.t_minutes, scaled_unit="minute") \
        if voxel_size.t_minutes else Axis(name="t", type="time", unit="frame")
    return [time] + [Axis(name=name, type="space", unit="pixel", scale=size, scaled_unit="micrometer")
                     for name, size in zip(_SPACE, voxel_size.zyx_um())]


def _extra(tracking: Tracking, ids: dict[Position, int]) -> dict[str, Any]:
    """OrganoidTracker's global data, and under `octrack` what else the tracking holds."""
    file_data = dict(tracking.file_data)
    extra = dict(file_data.pop("other_data", None) or {})
    saved = {"file_data": file_data,
             "image_offsets": {str(t): list(offset) for t, offset in tracking.image_offsets.items()},
             "lineage_data": [{"node": ids[position], "data": data}
                              for position, data in tracking.lineage_data.items() if position in ids]}
    saved = {key: value for key, value in saved.items() if value}
    if saved:
        extra[OCTRACK_KEY] = saved
    return extra


def _axis_names(path: Path, axes: dict[str, Any]) -> dict[str, str]:
    """The property names of t, z, y, x: the axes of type time and space, named as OrganoidTracker names them."""
    times = [name for name, axis in axes.items() if axis.type == "time"]
    spaces = [name for name, axis in axes.items() if axis.type == "space"]
    unknown = [name for name in spaces if name not in _SPACE]
    if unknown or len(times) > 1:
        raise UserError(f"{path}: axes {', '.join(axes)}: octrack reads one time axis and space axes named z, y, x")
    return {"t": times[0] if times else "t", **{name: name for name in _SPACE}}


def _voxel_size(axes: dict[str, Any], names: dict[str, str]) -> VoxelSize | None:
    """µm per pixel from the scales of pixel axes, and minutes per time point from a frame axis."""
    sizes = {}
    for name in _SPACE:
        axis = axes.get(name)
        if axis is None or axis.unit not in _PIXELS or not axis.scale or axis.scaled_unit not in _MICROMETRES:
            if name == "z" and axis is None:
                sizes[name] = 1.0  # 2D
                continue
            return None
        sizes[name] = axis.scale * _MICROMETRES[axis.scaled_unit]
    time = axes.get(names["t"])
    minutes = time.scale * _MINUTES[time.scaled_unit] if time is not None and time.unit in _FRAMES and \
        time.scale and time.scaled_unit in _MINUTES else None
    return VoxelSize(sizes["x"], sizes["y"], sizes["z"], minutes)


def _space_to_pixels(path: Path, axes: dict[str, Any], names: dict[str, str], voxel_size: VoxelSize | None
                     ) -> dict[str, Any]:
    converters = {}
    for name in _SPACE:
        unit = axes[name].unit if name in axes else None
        if unit in _PIXELS:
            converters[name] = float
        elif unit in _MICROMETRES:
            if voxel_size is None:
                raise UserError(f"{path}: positions are in {unit}s and the voxel size is unknown; give it with "
                                f"--voxel-size X Y Z (µm)")
            size = {"x": voxel_size.x_um, "y": voxel_size.y_um, "z": voxel_size.z_um}[name]
            converters[name] = lambda value, factor=_MICROMETRES[unit] / size: float(value) * factor
        else:
            raise UserError(f"{path}: axis {name} has the unit {unit!r}; octrack reads pixel or a length unit")
    return converters


def _time_to_frames(path: Path, axis: Any, voxel_size: VoxelSize | None) -> Any:
    unit = axis.unit if axis is not None else None
    if unit in _FRAMES:
        return _whole_time_point(path)
    if unit not in _MINUTES:
        raise UserError(f"{path}: the time axis has the unit {unit!r}; octrack reads frame or a time unit")
    if voxel_size is None or not voxel_size.t_minutes:
        raise UserError(f"{path}: time is in {unit}s and the time between time points is unknown; convert the "
                        f"file with time in frames")
    to_time_point = _whole_time_point(path)
    return lambda value: to_time_point(float(value) * _MINUTES[unit] / voxel_size.t_minutes)


def _whole_time_point(path: Path) -> Any:
    def convert(value: Any) -> int:
        number = float(value)
        if not math.isclose(number, round(number), abs_tol=1e-6):
            raise UserError(f"{path}: time point {number} is not a whole number of frames")
        return int(round(number))
    return convert


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """Metadata without missing values (GEFF marks them missing itself)."""
    return {key: value for key, value in data.items() if value is not None}


def _python(value: Any) -> Any:
    """numpy scalars and arrays from zarr as plain Python values, as the other readers give them."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value

