"""OrganoidTracker's `.autlist` files: a JSON list of experiments, each naming a tracking file and its images.

OrganoidTracker (`organoid_tracker/imaging/list_io.py`) writes them with sorted keys and an indent of 4, and
resolves relative paths against the folder of the list file. An entry holds at least an `experiment_file` or
some `images_*` keys:

- `experiment_file`: positions and links (`.aut`, or another tracking format), with the voxel size;
- `images_container` and `images_pattern`: a folder of TIFF files and their file name pattern, or one file;
- `images_channel_summing` with `images_original`: the images of `images_original` (a nested entry), with each
  group of channels (numbered from 1) summed into one channel, e.g. `[[1, 3]]`;
- `min_time_point`, `max_time_point`: the time points to use, both included.

An entry becomes one `ListEntry`; the ini's `dataset_file` turns the entries into the datasets of a section
(`octrack.config`). `images_channel_appending` and `images_time_appending` (several image series joined) have no
counterpart in octrack and are refused with a clear message.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octrack.errors import UserError
from octrack.files import write_text_atomic

_JOINED_SERIES = ("images_channel_appending", "images_time_appending")


@dataclass(frozen=True)
class ListEntry:
    """One experiment of an `.autlist`, with its paths resolved against the list file's folder."""

    number: int  # from 1, in the order of the list
    experiment_file: Path | None
    images_container: Path | None
    images_pattern: str | None
    channel_groups: tuple[tuple[int, ...], ...]  # from images_channel_summing; () = the channels as they are
    min_time_point: int | None
    max_time_point: int | None


def read_autlist(path: Path) -> list[ListEntry]:
    """The entries of an `.autlist` file; a UserError naming the file and entry for anything unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; give the .autlist that OrganoidTracker wrote, or list the "
                        f"datasets as numbered keys (images_container_1, ...)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error}); give an OrganoidTracker .autlist file") from None
    if not isinstance(data, list) or not all(isinstance(entry, dict) for entry in data):
        raise UserError(f"{path}: not an OrganoidTracker .autlist (expected a JSON list of experiments)")
    return [_entry(path, number, entry) for number, entry in enumerate(data, 1)]


def _entry(path: Path, number: int, entry: dict[str, Any]) -> ListEntry:
    where = f"{path} entry {number}"
    joined = [key for key in _JOINED_SERIES if key in entry]
    if joined:
        raise UserError(f"{where}: {joined[0]} (image series joined by OrganoidTracker) is not supported by "
                        f"octrack; save the joined images as one TIFF series and name it in images_container")
    images, groups = entry, ()
    if "images_channel_summing" in entry:
        images = entry.get("images_original")
        groups = _channel_groups(where, entry["images_channel_summing"])
        if not isinstance(images, dict):
            raise UserError(f"{where}: images_channel_summing needs images_original (the images whose channels "
                            f"are summed); save the list again from OrganoidTracker")
    experiment_file = _path(path, where, entry, "experiment_file")
    container = _path(path, where, images, "images_container")
    if experiment_file is None and container is None:
        raise UserError(f"{where}: names neither an experiment_file nor images_container; each entry needs one")
    return ListEntry(number, experiment_file, container, images.get("images_pattern") or None, groups,
                     _time_point(where, entry, "min_time_point"), _time_point(where, entry, "max_time_point"))


def _path(list_file: Path, where: str, entry: dict[str, Any], key: str) -> Path | None:
    value = entry.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"{where}: {key} = {value!r} is not a path")
    resolved = Path(value).expanduser()
    return Path(os.path.normpath(resolved if resolved.is_absolute() else list_file.resolve().parent / resolved))


def _time_point(where: str, entry: dict[str, Any], key: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise UserError(f"{where}: {key} = {value!r} is not a whole number")
    return int(value)


def _channel_groups(where: str, groups: Any) -> tuple[tuple[int, ...], ...]:
    allowed = "must be a list of channel groups numbered from 1, e.g. [[1, 3]]"
    if not isinstance(groups, list) or not groups:
        raise UserError(f"{where}: images_channel_summing = {groups!r} {allowed}")
    result = []
    for group in groups:
        if not isinstance(group, list) or not group or not all(
                isinstance(channel, int) and not isinstance(channel, bool) and channel >= 1 for channel in group):
            raise UserError(f"{where}: images_channel_summing = {groups!r} {allowed}")
        result.append(tuple(group))
    return tuple(result)


def autlist_entry(list_file: Path, *, experiment_file: Path | None, images_container: Path | None,
                  images_pattern: str | None, channels: tuple[int, ...] = (1,),
                  time_points: tuple[int, int] | None = None) -> dict[str, Any]:
    """One experiment of an `.autlist` as OrganoidTracker writes it: paths relative to the list file's folder,
    several channels as one summed channel."""
    entry: dict[str, Any] = {}
    if experiment_file is not None:
        entry["experiment_file"] = _relative(experiment_file, list_file)
    if images_container is not None:
        images = {"images_container": _relative(images_container, list_file), "images_pattern": images_pattern or ""}
        if tuple(channels) == (1,):
            entry.update(images)
        else:
            entry.update(images_original=images, images_channel_summing=[list(channels)])
    if time_points is not None:
        entry["min_time_point"], entry["max_time_point"] = time_points
    return entry


def write_autlist(path: Path, entries: list[dict[str, Any]]) -> None:
    """Writes the entries (see `autlist_entry`) as OrganoidTracker does: sorted keys, indent 4."""
    write_text_atomic(path, json.dumps(entries, indent=4, sort_keys=True))


def _relative(path: Path, list_file: Path) -> str:
    """Relative to the list file's folder, with forward slashes, as OrganoidTracker reads on any system."""
    try:
        return Path(os.path.relpath(path.resolve(), list_file.resolve().parent)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.resolve().as_posix()
