"""A tracking as a forest of lineages: track segments (cell cycles, numbered from 1), the segments they come from,
and the lineage (tree) each belongs to, numbered from 1 in the order of their first position. The one numbering
that `octrack view` prints and draws and that the napari tracks layer uses as track ids."""

from __future__ import annotations

from dataclasses import dataclass

from octrack.tracking.model import Position, Tracking


@dataclass(frozen=True)
class TrackTree:
    segments: dict[int, list[Position]]  # segment id -> its positions in time order
    parents: dict[int, list[int]]  # segment id -> the segments it comes from (two at a cell merge; none: a root)
    lineage_of: dict[int, int]  # segment id -> lineage number
    children_of: dict[int, list[int]]  # segment id -> the segments whose first parent it is (daughters)

    def children(self, segment: int) -> list[int]:
        return self.children_of.get(segment, [])

    def lineages(self) -> dict[int, list[int]]:
        """Lineage number -> its segments, roots first."""
        found: dict[int, list[int]] = {}
        for segment, lineage in self.lineage_of.items():
            found.setdefault(lineage, []).append(segment)
        return found

    def segment_of(self) -> dict[Position, int]:
        return {position: segment for segment, positions in self.segments.items() for position in positions}


def track_tree(tracking: Tracking) -> TrackTree:
    segments = {number: track for number, track in enumerate(tracking.tracks(), 1)}
    segment_of = {position: number for number, track in segments.items() for position in track}
    parents = {number: sorted({segment_of[past] for past in tracking.past(track[0])})
               for number, track in segments.items()}
    children: dict[int, list[int]] = {}
    for number, its_parents in parents.items():
        if its_parents:
            children.setdefault(its_parents[0], []).append(number)
    lineage_of: dict[int, int] = {}
    roots = [number for number in segments if not parents[number]]
    for lineage, root in enumerate(roots, 1):
        todo = [root]
        while todo:
            segment = todo.pop()
            lineage_of[segment] = lineage
            todo.extend(children.get(segment, ()))
    return TrackTree(segments, parents, lineage_of, children)
