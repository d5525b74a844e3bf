"""The in-memory tracking model: positions per time point, links between them, metadata, voxel size.

Coordinates are pixels (x, y, z as OrganoidTracker writes them), floats. OrganoidTracker may shift the images
of a time point against the positions (image offsets, e.g. to follow a drifting organoid): image pixel =
position - offset of its time point, see `Tracking.image_position`. A position with two links to later
positions is a division. Links normally join consecutive time points; a link may skip time points
(Cell Tracking Challenge tracks with gaps), and every reader and writer keeps such links.

A tracking read from a file keeps what octrack does not interpret, so that every file written from it holds it
again: `file_data` (the other top-level data of an OrganoidTracker file: its name, image filters, channel
descriptions, beacons, data axes, global data, ...) and `lineage_data` (metadata of a whole lineage, by the
lineage's first position).

A position whose metadata `uncertain` is true is an annotation that may or may not be counted as a nucleus,
such as a nucleus mostly outside the image: evaluation counts it neither for nor against a prediction, and
training neither asks for nor against a detection there (KITTI's "don't care" annotations).

A predicted position whose metadata `detection_tentative` is true is a weak detection (a peak below the detection
threshold): not a detection of its own, for evaluation, but one the tracker may take into a track where its links
pay for it (a newborn daughter's weak peak); the tracker's output holds it, without the mark, only where taken.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

UNCERTAIN = "uncertain"
TENTATIVE = "detection_tentative"


class Position(NamedTuple):
    """A nucleus centre in pixels at a time point. Hashable: positions are the nodes of the graph."""

    x: float
    y: float
    z: float
    t: int


Link = tuple[Position, Position]
Offset = tuple[float, float, float]  # x, y, z in pixels


@dataclass(frozen=True)
class VoxelSize:
    """Size of one voxel in micrometres, and the time between time points in minutes (None if unknown)."""

    x_um: float
    y_um: float
    z_um: float
    t_minutes: float | None = None

    def zyx_um(self) -> tuple[float, float, float]:
        return self.z_um, self.y_um, self.x_um


class Tracking:
    """Positions, links and their metadata; the one model that every reader fills and every writer reads."""

    def __init__(self, voxel_size: VoxelSize | None = None, image_offsets: dict[int, Offset] | None = None):
        self.voxel_size = voxel_size
        self.image_offsets: dict[int, Offset] = dict(image_offsets or {})  # per time point; absent = no offset
        self.file_data: dict[str, Any] = {}  # the file's top-level data that octrack does not interpret, as read
        self.lineage_data: dict[Position, dict[str, Any]] = {}  # by the first position of a lineage
        self._by_time: dict[int, dict[Position, None]] = defaultdict(dict)
        self._future: dict[Position, set[Position]] = defaultdict(set)
        self._past: dict[Position, set[Position]] = defaultdict(set)
        self._position_data: dict[Position, dict[str, Any]] = {}
        self._link_data: dict[Link, dict[str, Any]] = {}

    def empty_copy(self) -> Tracking:
        """A tracking without positions, with this one's voxel size, image offsets and file data."""
        copy = Tracking(self.voxel_size, self.image_offsets)
        copy.file_data = dict(self.file_data)
        return copy

    # Positions
    def add_position(self, position: Position, **data: Any) -> Position:
        position = Position(float(position.x), float(position.y), float(position.z), int(position.t))
        self._by_time[position.t][position] = None
        if data:
            self._position_data.setdefault(position, {}).update(data)
        return position

    def remove_position(self, position: Position) -> None:
        for other in list(self._future.get(position, ())) + list(self._past.get(position, ())):
            self.remove_link(position, other)
        self._by_time[position.t].pop(position, None)
        if not self._by_time[position.t]:
            del self._by_time[position.t]
        self._position_data.pop(position, None)
        self.lineage_data.pop(position, None)
        self._future.pop(position, None)
        self._past.pop(position, None)

    def image_position(self, position: Position) -> Position:
        """The position in the pixels of the image of its time point: minus that time point's offset."""
        x, y, z = self.image_offsets.get(position.t, (0.0, 0.0, 0.0))
        return Position(position.x - x, position.y - y, position.z - z, position.t)

    def __contains__(self, position: Position) -> bool:
        return position in self._by_time.get(position.t, {})

    def positions_at(self, time_point: int) -> list[Position]:
        return list(self._by_time.get(time_point, {}))

    def positions(self) -> Iterator[Position]:
        """All positions, by time point, each time point in insertion order."""
        for time_point in self.time_points():
            yield from self._by_time[time_point]

    def time_points(self) -> list[int]:
        return sorted(t for t, positions in self._by_time.items() if positions)

    def __len__(self) -> int:
        return sum(len(positions) for positions in self._by_time.values())

    def position_data(self, position: Position) -> dict[str, Any]:
        """Metadata of a position (a live dict: changes are kept)."""
        return self._position_data.setdefault(position, {})

    def is_uncertain(self, position: Position) -> bool:
        """Whether the position is an uncertain annotation (see the module's docstring)."""
        return bool(self._position_data.get(position, {}).get(UNCERTAIN, False))

    def is_tentative(self, position: Position) -> bool:
        """Whether the position is a tentative detection (see the module's docstring)."""
        return bool(self._position_data.get(position, {}).get(TENTATIVE, False))

    def set_position_data(self, position: Position, key: str, value: Any) -> None:
        self.position_data(position)[key] = value

    def position_data_keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for data in self._position_data.values():
            keys.update(dict.fromkeys(data))
        return list(keys)

    # Links
    def add_link(self, a: Position, b: Position, **data: Any) -> None:
        """Links two positions (in either order); both must already be in the tracking."""
        earlier, later = (a, b) if a.t < b.t else (b, a)
        if earlier.t == later.t:
            raise ValueError(f"cannot link two positions of the same time point: {a}, {b}")
        for position in (earlier, later):
            if position not in self:
                raise ValueError(f"cannot link a position that is not in the tracking: {position}")
        self._future[earlier].add(later)
        self._past[later].add(earlier)
        if data:
            self._link_data.setdefault((earlier, later), {}).update(data)

    def remove_link(self, a: Position, b: Position) -> None:
        earlier, later = (a, b) if a.t < b.t else (b, a)
        self._future[earlier].discard(later)
        self._past[later].discard(earlier)
        self._link_data.pop((earlier, later), None)

    def has_link(self, a: Position, b: Position) -> bool:
        earlier, later = (a, b) if a.t < b.t else (b, a)
        return later in self._future.get(earlier, ())

    def links(self) -> Iterator[Link]:
        """Every link once, as (earlier, later), ordered by the earlier position's time point."""
        for position in self.positions():
            for later in sorted(self._future.get(position, ()), key=_sort_key):
                yield position, later

    def link_count(self) -> int:
        return sum(len(later) for later in self._future.values())

    def future(self, position: Position) -> list[Position]:
        return sorted(self._future.get(position, ()), key=_sort_key)

    def past(self, position: Position) -> list[Position]:
        return sorted(self._past.get(position, ()), key=_sort_key)

    def link_data(self, a: Position, b: Position) -> dict[str, Any]:
        """Metadata of a link (a live dict: changes are kept)."""
        earlier, later = (a, b) if a.t < b.t else (b, a)
        return self._link_data.setdefault((earlier, later), {})

    def link_data_keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for data in self._link_data.values():
            keys.update(dict.fromkeys(data))
        return list(keys)

    # Lineage
    def is_division(self, position: Position) -> bool:
        """True for a mother: its last time point before two (or more) daughters."""
        return len(self._future.get(position, ())) >= 2

    def divisions(self) -> list[Position]:
        return [position for position in self.positions() if self.is_division(position)]

    def track_starts(self) -> list[Position]:
        """First position of every track: no past, or a past that divides or merges."""
        starts = []
        for position in self.positions():
            past = self._past.get(position, ())
            if len(past) != 1 or len(self._future[next(iter(past))]) != 1:
                starts.append(position)
        return starts

    def track(self, start: Position) -> list[Position]:
        """The positions of the track (cell cycle segment) that begins at `start`, in time order."""
        track = [start]
        while True:
            future = self._future.get(track[-1], ())
            if len(future) != 1:
                return track
            following = next(iter(future))
            if len(self._past.get(following, ())) != 1:
                return track
            track.append(following)

    def tracks(self) -> list[list[Position]]:
        return [self.track(start) for start in self.track_starts()]


def _sort_key(position: Position) -> tuple[int, float, float, float]:
    return position.t, position.z, position.y, position.x


def distance_um(a: Position, b: Position, voxel_size: VoxelSize | None) -> float:
    """Euclidean distance in µm, or in pixels when the voxel size is unknown."""
    scale = voxel_size or VoxelSize(1.0, 1.0, 1.0)
    return math.sqrt(((a.x - b.x) * scale.x_um) ** 2 + ((a.y - b.y) * scale.y_um) ** 2
                     + ((a.z - b.z) * scale.z_um) ** 2)


def coordinates_um(positions: list[Position], voxel_size: VoxelSize | None) -> np.ndarray:
    """(n, 3) x, y, z in µm (in pixels where the voxel size is unknown)."""
    xyz = np.array([(p.x, p.y, p.z) for p in positions], dtype=np.float64).reshape(-1, 3)
    if voxel_size is None:
        return xyz
    return xyz * np.array([voxel_size.x_um, voxel_size.y_um, voxel_size.z_um])


def from_positions(positions: Iterable[Position], voxel_size: VoxelSize | None = None) -> Tracking:
    tracking = Tracking(voxel_size)
    for position in positions:
        tracking.add_position(position)
    return tracking
