"""`octrack view`: pictures of a tracking to look at: a movie and PNGs of maximum projections with the tracks,
divisions and the links under review, and a plot of lineage trees (see `octrack.pictures`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from octrack.errors import UserError
from octrack.lineage import TrackTree, track_tree
from octrack.linking import REVIEW_BELOW
from octrack.pictures import Scene, write_frame_png, write_lineage_plot, write_movie
from octrack.stages.common import open_images_guessing_pattern
from octrack.tracking import Tracking, load_tracking

DEFAULT_LINEAGES = 6  # the lineages with most divisions (then most positions) that the plot shows by default
SHOWN_LINEAGES = 10  # rows of the lineage table printed
_MAX_FPS = 1000.0  # GIF frames last at least 1 ms


@dataclass(frozen=True)
class ViewRequest:
    tracking: Path
    output: Path | None = None
    images: Path | None = None
    pattern: str | None = None
    channels: tuple[int, ...] = (1,)
    movie_format: str = "gif"
    fps: float = 4.0
    lineages: tuple[int, ...] | None = None
    png_time_points: tuple[int, ...] | None = None
    review_below: float = REVIEW_BELOW


def view(request: ViewRequest) -> str:
    """Writes movie.gif (or .mp4), tTTT.png of some time points and lineages.png into the output folder (default
    `<tracking name>-view/` beside the tracking); returns a report with the table of the largest lineages."""
    if not (math.isfinite(request.fps) and 0 < request.fps <= _MAX_FPS):
        raise UserError(f"--fps {request.fps:g}: give the time points per second of the movie, above 0 and at most "
                        f"{_MAX_FPS:g} (default 4)")
    tracking = load_tracking(request.tracking)
    if not len(tracking):
        raise UserError(f"{request.tracking}: holds no positions; there is nothing to show")
    output = request.output or request.tracking.with_name(f"{request.tracking.stem or request.tracking.name}-view")
    output.mkdir(parents=True, exist_ok=True)
    tree = track_tree(tracking)
    lineages = _chosen_lineages(tree, tracking, request.lineages)
    projection, size_yx = _background(request, tracking)
    scene = Scene(tracking, tree, projection, size_yx, tuple(lineages), request.review_below)
    time_points = tracking.time_points()
    movie = output / f"movie.{request.movie_format}"
    write_movie(scene, list(range(time_points[0], time_points[-1] + 1)), movie, request.fps)
    pngs = request.png_time_points or tuple(dict.fromkeys(
        (time_points[0], time_points[len(time_points) // 2], time_points[-1])))
    for time_point in pngs:
        if time_point not in time_points:
            raise UserError(f"--png {time_point}: the tracking has no positions there; it has time points "
                            f"{time_points[0]}-{time_points[-1]}")
        write_frame_png(scene, time_point, output / f"t{time_point:03d}.png")
    write_lineage_plot(tracking, tree, lineages, output / "lineages.png", request.review_below)
    return (f"wrote {movie}, {', '.join(f't{t:03d}.png' for t in pngs)} and lineages.png (lineages "
            f"{', '.join(map(str, lineages))}) to {output}\n{lineage_table(tracking, tree)}")


def _chosen_lineages(tree: TrackTree, tracking: Tracking, chosen: tuple[int, ...] | None) -> list[int]:
    by_lineage = tree.lineages()
    if chosen:
        unknown = [lineage for lineage in chosen if lineage not in by_lineage]
        if unknown:
            raise UserError(f"--lineages: there is no lineage {unknown[0]}; the lineages are numbered 1 to "
                            f"{len(by_lineage)} (see the table that octrack view prints)")
        return list(chosen)
    return sorted(_ranked(tree)[:DEFAULT_LINEAGES])


def _ranked(tree: TrackTree) -> list[int]:
    """Lineages, most divisions first, then most positions."""
    sizes = {lineage: (sum(1 for s in segments if tree.children(s)),
                       sum(len(tree.segments[s]) for s in segments))
             for lineage, segments in tree.lineages().items()}
    return sorted(sizes, key=lambda lineage: (-sizes[lineage][0], -sizes[lineage][1], lineage))


def lineage_table(tracking: Tracking, tree: TrackTree) -> str:
    """The largest lineages: number, first time point and position (x, y, z), divisions, time points spanned."""
    by_lineage = tree.lineages()
    lines = [f"{len(by_lineage)} lineages; the largest (`octrack view --lineages N,...` plots chosen ones):",
             f"{'lineage':>8} {'first t':>8} {'at z, y, x':>20} {'divisions':>10} {'time points':>12}"]
    for lineage in _ranked(tree)[:SHOWN_LINEAGES]:
        segments = by_lineage[lineage]
        positions = [p for s in segments for p in tree.segments[s]]
        first = min(positions, key=lambda p: p.t)
        divisions = sum(1 for s in segments if tree.children(s))
        span = max(p.t for p in positions) - first.t + 1
        where = f"{first.z:.0f}, {first.y:.0f}, {first.x:.0f}"
        lines.append(f"{lineage:>8} {first.t:>8} {where:>20} {divisions:>10} {span:>12}")
    return "\n".join(lines)


def _background(request: ViewRequest, tracking: Tracking):
    """The images' maximum projection per time point and their size (y, x); without images, black of the size
    that holds every position."""
    if request.images is None:
        xy = np.array([(p.x, p.y) for p in tracking.positions()])
        return None, (int(np.ceil(xy[:, 1].max())) + 2, int(np.ceil(xy[:, 0].max())) + 2)
    images = open_images_guessing_pattern(request.images, request.pattern)

    def projection(time_point: int) -> np.ndarray:
        if time_point not in images.time_points:
            return np.zeros(images.shape_zyx[1:], dtype=np.float32)
        return images.read(time_point, request.channels).max(axis=0)

    return projection, images.shape_zyx[1:]
