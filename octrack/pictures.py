"""Pictures of a tracking: frames (maximum projections with tracks, divisions and the links under review), a
movie of them (GIF through imageio and pillow; MP4 where imageio-ffmpeg is installed), and lineage trees.

Colours: each lineage (`octrack.lineage`) has its colour; a track's last few links trail behind its position;
a division is a white star on the mother; a link whose `marginal_probability` is below the review threshold (the
tracker's REVIEW_BELOW) is drawn red and thick in the frame it arrives in, and red in the lineage tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octrack.errors import UserError
from octrack.files import atomic_path
from octrack.lineage import TrackTree
from octrack.tracking.model import Position, Tracking

TRAIL = 5  # links drawn behind each position
MAX_WIDTH_PX = 900  # frames of the movie are at most this wide
MARGINAL_PROBABILITY = "marginal_probability"  # the tracker's, see octrack/linking/marginals.py


@dataclass(frozen=True)
class Scene:
    """What the frames show: the tracking, its lineages, the images' maximum projection per time point (None:
    positions on black), the size of the view (y, x) in pixels, and the lineages to label by number."""

    tracking: Tracking
    tree: TrackTree
    projection: Callable[[int], np.ndarray] | None
    size_yx: tuple[int, int]
    labelled: tuple[int, ...] = ()
    review_below: float = 0.99

    def colours(self) -> dict[int, tuple[float, float, float, float]]:
        """A colour per lineage number, from a colour cycle of 20."""
        from matplotlib import colormaps

        cycle = colormaps["tab20"]
        return {lineage: cycle(index % 20) for index, lineage in enumerate(sorted(self.tree.lineages()))}

    def under_review(self, a: Position, b: Position) -> bool:
        return self.tracking.link_data(a, b).get(MARGINAL_PROBABILITY, 1.0) < self.review_below


def frames(scene: Scene, time_points: list[int]) -> Iterator[np.ndarray]:
    """RGB frames (uint8, all the same size) of the given time points."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = scene.size_yx
    scale = min(1.0, MAX_WIDTH_PX / max(width, 1)) if width >= 300 else min(3.0, 600 / max(width, 1))
    figure = Figure(figsize=(width * scale / 100, height * scale / 100 + 0.3), dpi=100)
    canvas = FigureCanvasAgg(figure)
    colours, segment_of = scene.colours(), scene.tree.segment_of()
    for time_point in time_points:
        figure.clear()
        axes = figure.add_axes((0, 0, 1, height / (height + 30 / scale)))
        draw_time_point(axes, scene, time_point, colours, segment_of)
        canvas.draw()
        yield np.asarray(canvas.buffer_rgba())[..., :3].copy()


def draw_time_point(axes: Any, scene: Scene, time_point: int, colours: dict, segment_of: dict) -> None:
    from matplotlib.collections import LineCollection

    tracking, tree = scene.tracking, scene.tree
    height, width = scene.size_yx
    if scene.projection is not None:
        image = scene.projection(time_point)
        low, high = np.percentile(image, [1, 99.8])
        axes.imshow(image, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), interpolation="nearest")
    else:
        axes.set_facecolor("black")
    positions = tracking.positions_at(time_point)
    lineage_of = [tree.lineage_of[segment_of[p]] if p in segment_of else 0 for p in positions]
    trails, trail_colours, review = [], [], []
    for position, lineage in zip(positions, lineage_of):
        current = position
        for step in range(TRAIL):
            past = tracking.past(current)
            if not past:
                break
            segment = ((past[0].x, past[0].y), (current.x, current.y))
            if step == 0 and scene.under_review(past[0], current):
                review.append(segment)
            else:
                trails.append(segment)
                trail_colours.append(colours.get(lineage, "white"))
            current = past[0]
    axes.add_collection(LineCollection(trails, colors=trail_colours or None, linewidths=1.0, alpha=0.9))
    axes.add_collection(LineCollection(review, colors="red", linewidths=2.5))
    axes.scatter([p.x for p in positions], [p.y for p in positions], s=10,
                 c=[colours.get(lineage, "white") for lineage in lineage_of], linewidths=0)
    mothers = [p for p in positions if tracking.is_division(p)]
    axes.scatter([p.x for p in mothers], [p.y for p in mothers], marker="*", s=120, facecolors="none",
                 edgecolors="white", linewidths=1.2)
    for position, lineage in zip(positions, lineage_of):
        if lineage in scene.labelled:
            axes.annotate(str(lineage), (position.x, position.y), xytext=(4, 4), textcoords="offset points",
                          color="white", fontsize=8, fontweight="bold")
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(height - 0.5, -0.5)
    axes.set_axis_off()
    reviewed = sum(1 for p in positions for past in tracking.past(p) if scene.under_review(past, p))
    axes.text(0.01, 1.0, f"t = {time_point}: {len(positions)} positions, {len(mothers)} dividing, {reviewed} "
                         f"links under review (red)", transform=axes.transAxes, va="bottom", fontsize=8,
              color="black")


def write_movie(scene: Scene, time_points: list[int], target: Path, fps: float) -> None:
    """The frames as a GIF, or an MP4 (by `target`'s suffix; MP4 needs imageio-ffmpeg)."""
    import imageio.v3 as imageio

    suffix = target.suffix.lower()
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise UserError(f"{target}: MP4 movies need imageio-ffmpeg; install it (pip install 'octrack[mp4]') "
                            f"or write a GIF") from None
    elif suffix != ".gif":
        raise UserError(f"{target}: movies are written as .gif or .mp4; give one of those")
    rendered = list(frames(scene, time_points))
    with atomic_path(target) as temporary:
        if suffix == ".gif":
            imageio.imwrite(temporary, np.stack(rendered), extension=".gif", duration=1000 / fps, loop=0)
        else:
            imageio.imwrite(temporary, _even(np.stack(rendered)), extension=".mp4", fps=fps, codec="libx264")


def _even(movie: np.ndarray) -> np.ndarray:
    """H.264 needs even sizes."""
    return movie[:, :movie.shape[1] // 2 * 2, :movie.shape[2] // 2 * 2]


def write_frame_png(scene: Scene, time_point: int, target: Path) -> None:
    import imageio.v3 as imageio

    (frame,) = frames(scene, [time_point])
    with atomic_path(target) as temporary:
        imageio.imwrite(temporary, frame, extension=".png")


def write_lineage_plot(tracking: Tracking, tree: TrackTree, lineages: list[int], target: Path,
                       review_below: float = 0.99) -> None:
    """The lineage trees side by side: time down, a vertical line per track segment, joined at divisions;
    links under review in red; a cross where a track ends before the movie does."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not lineages:
        raise UserError("there are no lineages to plot: the tracking has no positions")
    last_time_point = tracking.time_points()[-1]
    by_lineage = tree.lineages()
    leaves = [max(1, _leaf_count(tree, _root(tree, by_lineage[lineage]))) for lineage in lineages]
    figure = Figure(figsize=(min(2 + 0.45 * sum(leaves) + 0.6 * len(lineages), 40), 6))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    start = 0.0
    ticks = []
    for lineage, width in zip(lineages, leaves):
        slots = _layout(tree, _root(tree, by_lineage[lineage]), start)
        _draw_tree(axes, tracking, tree, slots, last_time_point, review_below)
        ticks.append((start + (width - 1) / 2, str(lineage)))
        start += width + 0.8
    axes.set_xticks([x for x, _ in ticks], [label for _, label in ticks])
    axes.set_xlabel("lineage")
    axes.set_ylabel("time point")
    axes.invert_yaxis()
    axes.set_xlim(-0.8, start - 0.5)
    minutes = tracking.voxel_size.t_minutes if tracking.voxel_size else None
    axes.set_title(f"lineage trees{f' ({minutes:g} min per time point)' if minutes else ''}; red: links with "
                   f"marginal probability below {review_below:g}; ×: track ends", fontsize=9)
    with atomic_path(target) as temporary:
        figure.savefig(temporary, format=target.suffix.lstrip(".").lower() or "png", dpi=110, bbox_inches="tight")


def _root(tree: TrackTree, segments: list[int]) -> int:
    return next(segment for segment in segments if not tree.parents[segment])


def _leaf_count(tree: TrackTree, segment: int) -> int:
    children = tree.children(segment)
    return 1 if not children else sum(_leaf_count(tree, child) for child in children)


def _layout(tree: TrackTree, segment: int, start: float) -> dict[int, float]:
    """x of every segment of the tree below `segment`: leaves one apart from `start`, parents between their
    children."""
    children = tree.children(segment)
    if not children:
        return {segment: start}
    slots: dict[int, float] = {}
    for child in children:
        slots.update(_layout(tree, child, start))
        start += _leaf_count(tree, child)
    slots[segment] = float(np.mean([slots[child] for child in children]))
    return slots


def _draw_tree(axes: Any, tracking: Tracking, tree: TrackTree, slots: dict[int, float], last_time_point: int,
               review_below: float) -> None:
    for segment, x in slots.items():
        positions = tree.segments[segment]
        parents = tree.parents[segment]
        top = positions[0].t
        if parents and parents[0] in slots:
            parent_end = tree.segments[parents[0]][-1]
            axes.plot([slots[parents[0]], x], [parent_end.t, parent_end.t], color="black", linewidth=1)
            steps = [(parent_end, positions[0])] + list(zip(positions, positions[1:]))
        else:
            steps = list(zip(positions, positions[1:]))
        for a, b in steps:
            flagged = tracking.link_data(a, b).get(MARGINAL_PROBABILITY, 1.0) < review_below
            axes.plot([x, x], [a.t, b.t], color="red" if flagged else "black", linewidth=2.2 if flagged else 1)
        if len(positions) == 1 and not parents:
            axes.plot([x], [top], marker="o", color="black", markersize=2)
        if not tree.children(segment) and positions[-1].t < last_time_point:
            axes.plot([x], [positions[-1].t], marker="x", color="black", markersize=5)
