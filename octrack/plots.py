"""Pictures of a scoring: the true and predicted positions of one time point and how they matched, and the links
leaving that time point and the divisions at it that were wrong or missed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from octrack.errors import UserError
from octrack.files import atomic_path
from octrack.matching import UNIT_UM, TimePointMatching
from octrack.scoring import DetectionScores, TrackingErrors
from octrack.tracking.model import Position, coordinates_um


def plot_time_point(scores: DetectionScores, target: Path, *, time_point: int | None = None,
                    images: str | os.PathLike | None = None, pattern: str | None = None,
                    errors: TrackingErrors | None = None) -> int:
    """Draws the matching of `time_point` (default: the first scored) to a PNG (or any format matplotlib
    writes, by the file's extension), over the maximum projection of that time point's image when `images`
    is given, with the `errors` of the links from that time point and of its divisions; returns the time point
    drawn."""
    time_point = _plotted_time_point(scores, time_point)
    background = None if images is None else _max_projection(Path(images), pattern, time_point)
    _draw(scores.per_time_point[time_point], background, target, errors)
    return time_point


def _plotted_time_point(scores: DetectionScores, time_point: int | None) -> int:
    scored = list(scores.per_time_point)
    if not scored:
        raise UserError("no time points were scored, so there is nothing to plot")
    if time_point is None:
        return scored[0]
    if time_point not in scores.per_time_point:
        raise UserError(f"--plot-time-point {time_point} was not scored; scored time points: "
                        f"{scored[0]}-{scored[-1]}")
    return time_point


def _max_projection(images: Path, pattern: str | None, time_point: int) -> np.ndarray:
    """(y, x) maximum over z of one time point; a folder without `pattern` gets its pattern guessed."""
    from octrack.images import open_images
    from octrack.patterns import guess_pattern
    if pattern is None and images.is_dir():
        pattern = guess_pattern(images)[0]
    return open_images(images, pattern).read(time_point).max(axis=0)


def _draw(scores: DetectionScores, background: np.ndarray | None, target: Path,
          errors: TrackingErrors | None) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    image_format = target.suffix.lstrip(".").lower() or "png"
    (one,) = scores.matching.time_points.values()
    low, high = _extent(one, background)
    aspect = min(max((high[1] - low[1]) / max(high[0] - low[0], 1e-9), 0.25), 4.0)
    figure = Figure(figsize=(8, 8 * aspect))
    canvas = FigureCanvasAgg(figure)
    if image_format not in canvas.get_supported_filetypes():
        raise UserError(f"--plot {target}: cannot write .{image_format} files; use .png")
    axes = figure.add_subplot()
    if background is not None:
        axes.imshow(background, cmap="gray")
    pairs = [[(one.true[i].x, one.true[i].y), (one.predicted[j].x, one.predicted[j].y)] for i, j in one.pairs]
    axes.add_collection(LineCollection(pairs, colors="yellow", linewidths=0.8))
    matched_true = [one.true[i] for i, _ in one.pairs]
    matched_predicted = [one.predicted[j] for _, j in one.pairs]
    _scatter(axes, matched_true, "o", "limegreen", f"true, matched ({len(matched_true)})", hollow=True)
    _scatter(axes, one.unmatched_true(), "o", "orange", f"true, missed ({scores.false_negatives})", hollow=True)
    _scatter(axes, matched_predicted, "+", "deepskyblue", f"predicted, matched ({len(matched_predicted)})")
    _scatter(axes, one.unmatched_predicted(), "x", "red", f"predicted, false positive ({scores.false_positives})")
    if errors is not None:
        _draw_errors(axes, errors, one.time_point)
    axes.set_xlim(low[0], high[0])
    axes.set_ylim(high[1], low[1])  # image orientation: y down
    axes.set_aspect("equal")
    axes.set_title(f"t = {one.time_point}: precision {scores.precision:.3f}, recall {scores.recall:.3f}, "
                   f"F1 {scores.f1:.3f} (max distance {scores.max_distance:g} "
                   f"{'µm' if scores.distance_unit == UNIT_UM else 'px'})", fontsize=9)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.05), ncols=2, fontsize=8)  # off the positions
    with atomic_path(target) as temporary:
        figure.savefig(temporary, format=image_format, dpi=120, bbox_inches="tight")


def _draw_errors(axes: Any, errors: TrackingErrors, time_point: int) -> None:
    """The links from `time_point` that were wrong (predicted) or missed (true), as arrows to the next position,
    and the divisions at it: found, wrong and missed."""
    from matplotlib.collections import LineCollection

    for links, colour, style, label in ((errors.false_links, "red", "-", "false link"),
                                        (errors.missed_links, "orange", "--", "missed link")):
        leaving = [((a.x, a.y), (b.x, b.y)) for a, b in links if a.t == time_point]
        axes.add_collection(LineCollection(leaving, colors=colour, linestyles=style, linewidths=1.6,
                                           label=f"{label} to the next time point ({len(leaving)})"))
    for mothers, colour, label in ((errors.found_divisions, "limegreen", "division, found"),
                                   (errors.false_divisions, "red", "division, false"),
                                   (errors.missed_divisions, "orange", "division, missed")):
        here = [m for m in mothers if m.t == time_point]
        axes.scatter([m.x for m in here], [m.y for m in here], marker="*", s=140, facecolors="none",
                     edgecolors=colour, linewidths=1.3, label=f"{label} ({len(here)})")


def _extent(one: TimePointMatching, background: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) corners of the view: the image, or the positions with a margin."""
    if background is not None:
        return np.array([-0.5, -0.5]), np.array([background.shape[1] - 0.5, background.shape[0] - 0.5])
    xy = coordinates_um(one.true + one.predicted, None)[:, :2]
    if len(xy) == 0:
        return np.zeros(2), np.ones(2)
    margin = max(float(np.ptp(xy, axis=0).max()) * 0.05, 5.0)
    return xy.min(axis=0) - margin, xy.max(axis=0) + margin


def _scatter(axes: Any, positions: list[Position], marker: str, colour: str, label: str, *,
             hollow: bool = False) -> None:
    xs, ys = [p.x for p in positions], [p.y for p in positions]
    if hollow:
        axes.scatter(xs, ys, marker=marker, s=60, facecolors="none", edgecolors=colour, linewidths=1.2,
                     label=label)
    else:
        axes.scatter(xs, ys, marker=marker, s=60, c=colour, linewidths=1.2, label=label)
