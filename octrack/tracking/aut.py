"""OrganoidTracker `.aut` files (JSON), read in the v1 and v2 layouts and written in v2.

The layouts follow `organoid_tracker/imaging/io.py` of OrganoidTracker (jvzonlab/OrganoidTracker):

- v2 (`"version": "v2"`): `positions` is a list of `{"time_point": t, "coords_xyz_px": [[x, y, z], ...],
  "position_meta": {key: [value or null per position]}}`; `tracks` is a list of
  `{"time_point_start": t, "coords_xyz_px": [...one per consecutive time point...],
  "link_meta": {key: [value or null per link inside the track]}, "coords_xyz_px_before": [[x, y, z], ...],
  "link_meta_before": {key: [value or null per entry of coords_xyz_px_before]}}`, where the positions
  before lie at `time_point_start - 1` (one for a daughter, two or more for a merge);
  `image_resolution` is `{"x_um", "y_um", "z_um", "t_m"}` (0 means not set).
- v1 (`"version": "v1"`): `positions` (older files: `shapes`) maps a time point string to `[[x, y, z, ...]]`;
  `links` is a D3 node-link graph whose `nodes` hold `{"id": {"x", "y", "z", "_time_point_number"},
  metadata...}` and whose `links` hold `{"source": id, "target": id, metadata...}`; keys starting with
  `__lineage_` are lineage metadata.
- Both: `image_offsets` is a list of `{"x", "y", "z", "_time_point_number"}` (pixels): where the image of that
  time point lies in the coordinates of the positions (image pixel = position - offset; time points without
  an entry have none). They become `Tracking.image_offsets` and are written back as they were read.

Lossless: every other top-level key of the file (`name`, `name_is_automatic`, `image_filters`, `image_timings`,
`image_channel_descriptions`, `warning_limits`, `color`, `other_data`, `beacons`, `data_axes`, `data_axes_meta`,
`connections`, and any key a later OrganoidTracker adds) is kept as read in `Tracking.file_data` and written back
in OrganoidTracker's key order; v2 `lineage_meta` (on the first track of a lineage) in `Tracking.lineage_data`.
`link_meta_before` lists are written one element longer than `coords_xyz_px_before`, ending in null, as
OrganoidTracker writes them (its reader ignores the extra element), so that a file read and written back is
unchanged. Positions are read and written as they are in the file, offsets not applied.

The time step: OrganoidTracker refuses a resolution without one (`t_m` 0) for a movie of several time points,
and its own writer then leaves `image_resolution` out. octrack does the same and keeps the voxel size in its
own key `octrack_spatial_resolution`, which OrganoidTracker ignores (it asks for the resolution, as for any file
without one). For a single time point `t_m` 0 is what OrganoidTracker writes.

OrganoidTracker cannot hold a link that skips a time point (its `Links.add_link` raises "Link skipped a time
point", and its CTC reader drops such links); `connections` are pairs of positions of one time point, not links
over time. So links that skip time points go into the top-level key `octrack_gap_links`, which OrganoidTracker
ignores: octrack reads them back, and `save_aut` warns that OrganoidTracker will not show them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from octrack.errors import UserError
from octrack.files import write_text_atomic
from octrack.tracking.model import Offset, Position, Tracking, VoxelSize

GAP_LINKS_KEY = "octrack_gap_links"
SPATIAL_RESOLUTION_KEY = "octrack_spatial_resolution"  # the voxel size where the time step is unknown
_TRACKING_KEYS = ("positions", "shapes", "tracks", "links", "links_scratch", "links_baseline")
_INTERPRETED_KEYS = ("version", *_TRACKING_KEYS, "image_resolution", "image_offsets", GAP_LINKS_KEY,
                     SPATIAL_RESOLUTION_KEY)
# The order of OrganoidTracker's writer (`save_data_to_json`); other keys follow in the order read
_KEY_ORDER = ("version", "positions", "tracks", GAP_LINKS_KEY, "name", "name_is_automatic", "data_axes",
              "data_axes_meta", "beacons", "warning_limits", "connections", "image_resolution",
              SPATIAL_RESOLUTION_KEY, "image_offsets", "image_filters", "image_timings", "image_channel_descriptions",
              "color", "other_data")


def load_aut(path: str | Path) -> Tracking:
    """Reads an OrganoidTracker `.aut` file (v1 or v2 layout)."""
    path = Path(path)
    data = _read_json(path)
    version = data.get("version", "v1")
    try:
        if version == "v2":
            return _parse_v2(data)
        if version == "v1":
            return _parse_v1(data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise UserError(f"{path}: not a valid OrganoidTracker {version} file ({type(error).__name__}: {error});"
                        f" save it again from OrganoidTracker") from error
    raise UserError(f"{path}: unknown OrganoidTracker data version {version!r}; save it again as v1 or v2")


def save_aut(tracking: Tracking, path: str | Path) -> None:
    """Writes `tracking` as an OrganoidTracker v2 `.aut` file, with the file data it was read with."""
    data: dict[str, Any] = {**tracking.file_data, "version": "v2"}
    positions = _encode_positions(tracking)
    if positions:
        data["positions"] = positions
    tracks = _encode_tracks(tracking)
    if tracks:
        data["tracks"] = tracks
    gap_links = _encode_gap_links(tracking)
    if gap_links:
        data[GAP_LINKS_KEY] = gap_links
        warnings.warn(f"{path}: {len(gap_links)} link(s) skip time points, which OrganoidTracker cannot hold; they "
                      f"are kept under {GAP_LINKS_KEY} for octrack, and OrganoidTracker will not show them",
                      stacklevel=3)
    if tracking.voxel_size is not None:
        data.pop("image_resolution", None)
        data.update(_encode_resolution(tracking.voxel_size, len(tracking.time_points())))
    data["image_offsets"] = _encode_offsets(tracking.image_offsets)
    write_text_atomic(path, json.dumps(_in_key_order(data)))


def _in_key_order(data: dict[str, Any]) -> dict[str, Any]:
    order = {key: index for index, key in enumerate(_KEY_ORDER)}
    return dict(sorted(data.items(), key=lambda item: order.get(item[0], len(order))))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as error:
        raise UserError(f"{path}: file not found; check the path") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error}); give an OrganoidTracker .aut file") from error
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be an OrganoidTracker file; give an OrganoidTracker "
                        f".aut file") from None
    if not isinstance(data, dict) or not any(key in data for key in (*_TRACKING_KEYS, "version")):
        raise UserError(f"{path}: holds no positions or links; give an OrganoidTracker .aut file")
    return data


# Reading
def _new_tracking(data: dict[str, Any]) -> Tracking:
    """A tracking with the file's voxel size, image offsets and the data octrack keeps without interpreting."""
    voxel_size = _parse_resolution(data)
    tracking = Tracking(voxel_size, _parse_offsets(data))
    tracking.file_data = {key: value for key, value in data.items() if key not in _INTERPRETED_KEYS}
    if voxel_size is None and "image_resolution" in data:
        tracking.file_data["image_resolution"] = data["image_resolution"]  # e.g. all 0: kept as it was
    return tracking


def _parse_v2(data: dict[str, Any]) -> Tracking:
    tracking = _new_tracking(data)
    for time_point_json in data.get("positions", ()):
        _parse_time_point(tracking, time_point_json)
    for track_json in data.get("tracks", ()):
        _parse_track(tracking, track_json)
    for track_json in data.get("tracks", ()):
        _parse_track_connections(tracking, track_json)
    for gap_link_json in data.get(GAP_LINKS_KEY, ()):
        _parse_gap_link(tracking, gap_link_json)
    return tracking


def _parse_time_point(tracking: Tracking, time_point_json: dict[str, Any]) -> None:
    time_point = _whole(time_point_json["time_point"])
    metadata = time_point_json.get("position_meta", {})
    for index, coords in enumerate(time_point_json["coords_xyz_px"]):
        data = {key: values[index] for key, values in metadata.items() if values[index] is not None}
        tracking.add_position(_position(coords, time_point), **data)


def _parse_track(tracking: Tracking, track_json: dict[str, Any]) -> None:
    start = _whole(track_json["time_point_start"])
    positions = [_added(tracking, _position(coords, start + i))
                 for i, coords in enumerate(track_json["coords_xyz_px"])]
    for i, (earlier, later) in enumerate(zip(positions, positions[1:])):
        tracking.add_link(earlier, later, **_metadata_at(track_json.get("link_meta", {}), i))
    if track_json.get("lineage_meta"):
        tracking.lineage_data[positions[0]] = dict(track_json["lineage_meta"])


def _parse_track_connections(tracking: Tracking, track_json: dict[str, Any]) -> None:
    start = _whole(track_json["time_point_start"])
    first = _position(track_json["coords_xyz_px"][0], start)
    for i, coords in enumerate(track_json.get("coords_xyz_px_before", ())):
        before = _added(tracking, _position(coords, start - 1))
        tracking.add_link(before, first, **_metadata_at(track_json.get("link_meta_before", {}), i))


def _parse_gap_link(tracking: Tracking, gap_link_json: dict[str, Any]) -> None:
    source = _added(tracking, _position(gap_link_json["source_xyz_px"], gap_link_json["source_time_point"]))
    target = _added(tracking, _position(gap_link_json["target_xyz_px"], gap_link_json["target_time_point"]))
    tracking.add_link(source, target, **gap_link_json.get("link_meta", {}))


def _parse_v1(data: dict[str, Any]) -> Tracking:
    tracking = _new_tracking(data)
    positions_json = data.get("shapes", data.get("positions", {}))
    for time_point, coords_list in positions_json.items():
        for coords in coords_list:
            tracking.add_position(_position(coords[:3], _whole(time_point)))
    graph = data.get("links", data.get("links_scratch", data.get("links_baseline")))
    if graph is not None:
        _parse_node_link_graph(tracking, graph)
    return tracking


def _parse_node_link_graph(tracking: Tracking, graph: dict[str, Any]) -> None:
    for node in graph.get("nodes", ()):
        data = {key: value for key, value in node.items() if key != "id" and value is not None}
        tracking.add_position(_position_from_id(node["id"]), **data)
    for link in graph.get("links", ()):
        source = _added(tracking, _position_from_id(link["source"]))
        target = _added(tracking, _position_from_id(link["target"]))
        data = {key: value for key, value in link.items()
                if key not in ("source", "target") and not key.startswith("__lineage_") and value is not None}
        tracking.add_link(source, target, **data)


def _parse_resolution(data: dict[str, Any]) -> VoxelSize | None:
    """OrganoidTracker writes 0 for what is not set; no x/y size means no voxel size at all."""
    resolution = data.get("image_resolution") or data.get(SPATIAL_RESOLUTION_KEY)
    if not resolution or not resolution.get("x_um") or not resolution.get("y_um"):
        return None
    t_m = resolution.get("t_m")
    return VoxelSize(float(resolution["x_um"]), float(resolution["y_um"]), float(resolution.get("z_um") or 0.0),
                     float(t_m) if t_m else None)


def _parse_offsets(data: dict[str, Any]) -> dict[int, Offset]:
    """Offsets by time point; OrganoidTracker applies an entry without a time point to none, so it is left out."""
    return {_whole(entry["_time_point_number"]): (float(entry["x"]), float(entry["y"]), float(entry["z"]))
            for entry in data.get("image_offsets", ()) if "_time_point_number" in entry}


def _position(coords: list[float], time_point: int | float | str) -> Position:
    x, y, z = coords
    return Position(float(x), float(y), float(z), _whole(time_point))


def _whole(time_point: int | float | str) -> int:
    """A time point as written: a whole number (3, 3.0 or "3"); 2.5 is refused, not cut to 2."""
    value = float(time_point)
    if not value.is_integer():
        raise ValueError(f"time point {time_point!r} is not a whole number")
    return int(value)


def _position_from_id(node_id: dict[str, Any]) -> Position:
    return _position([node_id["x"], node_id["y"], node_id["z"]], node_id["_time_point_number"])


def _added(tracking: Tracking, position: Position) -> Position:
    """Adds the position if the file listed it only in a track or link, which OrganoidTracker allows."""
    if position not in tracking:
        tracking.add_position(position)
    return position


def _metadata_at(metadata_lists: dict[str, list[Any]], index: int) -> dict[str, Any]:
    return {key: values[index] for key, values in metadata_lists.items()
            if index < len(values) and values[index] is not None}


# Writing
def _encode_positions(tracking: Tracking) -> list[dict[str, Any]]:
    time_points_json = []
    for time_point in tracking.time_points():
        positions = tracking.positions_at(time_point)
        time_point_json: dict[str, Any] = {"time_point": time_point, "coords_xyz_px": [_xyz(p) for p in positions]}
        metadata = _metadata_lists([tracking.position_data(p) for p in positions])
        if metadata:
            time_point_json["position_meta"] = metadata
        time_points_json.append(time_point_json)
    return time_points_json


def _encode_tracks(tracking: Tracking) -> list[dict[str, Any]]:
    """OrganoidTracker tracks: chains of links between consecutive time points, joined where cells divide."""
    tracks_json = []
    for position in tracking.positions():
        if not _is_track_start(tracking, position):
            continue
        track = _track_from(tracking, position)
        track_json: dict[str, Any] = {"time_point_start": position.t, "coords_xyz_px": [_xyz(p) for p in track]}
        link_meta = _metadata_lists([tracking.link_data(a, b) for a, b in zip(track, track[1:])])
        if link_meta:
            track_json["link_meta"] = link_meta
        before = _consecutive_past(tracking, position)
        if before:
            track_json["coords_xyz_px_before"] = [_xyz(p) for p in before]
            link_meta_before = _metadata_lists([tracking.link_data(p, position) for p in before])
            if link_meta_before:
                track_json["link_meta_before"] = {key: values + [None] for key, values in link_meta_before.items()}
        elif tracking.lineage_data.get(position):
            track_json["lineage_meta"] = tracking.lineage_data[position]
        tracks_json.append(track_json)
    return tracks_json


def _encode_gap_links(tracking: Tracking) -> list[dict[str, Any]]:
    gap_links = []
    for source, target in tracking.links():
        if target.t == source.t + 1:
            continue
        gap_link: dict[str, Any] = {"source_xyz_px": _xyz(source), "source_time_point": source.t,
                                    "target_xyz_px": _xyz(target), "target_time_point": target.t}
        link_meta = {key: value for key, value in tracking.link_data(source, target).items() if value is not None}
        if link_meta:
            gap_link["link_meta"] = link_meta
        gap_links.append(gap_link)
    return gap_links


def _encode_resolution(voxel_size: VoxelSize, time_points: int) -> dict[str, dict[str, float]]:
    """`image_resolution`; without a time step, for several time points, octrack's own key instead (see the
    module's docstring)."""
    spatial = {"x_um": voxel_size.x_um, "y_um": voxel_size.y_um, "z_um": voxel_size.z_um}
    if voxel_size.t_minutes is None and time_points > 1:
        return {SPATIAL_RESOLUTION_KEY: spatial}
    return {"image_resolution": {**spatial, "t_m": voxel_size.t_minutes or 0.0}}


def _encode_offsets(offsets: dict[int, Offset]) -> list[dict[str, float]]:
    return [{"x": x, "y": y, "z": z, "_time_point_number": time_point}
            for time_point, (x, y, z) in sorted(offsets.items())]


def _consecutive_future(tracking: Tracking, position: Position) -> list[Position]:
    return [later for later in tracking.future(position) if later.t == position.t + 1]


def _consecutive_past(tracking: Tracking, position: Position) -> list[Position]:
    return [earlier for earlier in tracking.past(position) if earlier.t == position.t - 1]


def _continues_into(tracking: Tracking, position: Position) -> Position | None:
    """The next position of the same OrganoidTracker track, or None where the track ends here."""
    future = _consecutive_future(tracking, position)
    if len(future) == 1 and len(_consecutive_past(tracking, future[0])) == 1:
        return future[0]
    return None


def _is_track_start(tracking: Tracking, position: Position) -> bool:
    past = _consecutive_past(tracking, position)
    if len(past) == 1:
        return _continues_into(tracking, past[0]) is None
    return bool(past) or bool(_consecutive_future(tracking, position))


def _track_from(tracking: Tracking, start: Position) -> list[Position]:
    track = [start]
    while (following := _continues_into(tracking, track[-1])) is not None:
        track.append(following)
    return track


def _metadata_lists(data_dicts: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """Column-wise metadata as OrganoidTracker stores it: one list per key, None where a value is missing."""
    data_dicts = list(data_dicts)
    keys: dict[str, None] = {}
    for data in data_dicts:
        keys.update({key: None for key, value in data.items() if value is not None})
    return {key: [data.get(key) for data in data_dicts] for key in keys}


def _xyz(position: Position) -> list[float]:
    return [position.x, position.y, position.z]
