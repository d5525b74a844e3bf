"""Where `octrack predict` and `octrack merge` write a dataset's results, and how.

A dataset's predictions folder holds positions.csv and positions.aut (positions with their metadata; with the
links step also the candidate links with theirs), links.csv, and with the tracks step tracks.aut, tracks.csv
and ctc/ (Cell Tracking Challenge); and `open_in_organoid_tracker.autlist`, which names the tracks (else the
positions) and the images, so that OrganoidTracker opens both together. A shard (`octrack predict --time-points
A:B`) writes the same into `shard_A-B/` of that folder.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from octrack.autlist import autlist_entry, write_autlist
from octrack.dataset import Dataset
from octrack.files import write_text_atomic
from octrack.linking import MARGINAL_PROBABILITY, ReviewItem
from octrack.tracking import Position, Tracking, VoxelSize, save_tracking
from octrack.tracking.csv_io import save_links_csv

SHARD_PREFIX = "shard_"
OPEN_LIST = "open_in_organoid_tracker.autlist"
REVIEW_FILE = "review.csv"


@dataclass(frozen=True)
class CtcOutput:
    """What a Cell Tracking Challenge result of a movie needs: the images' size (z, y, x) and number of frames,
    and the radius of the markers (None: `octrack.tracking.ctc.marker_ball`'s defaults)."""

    image_shape_zyx: tuple[int, int, int]
    frame_count: int
    radius_um: float | None = None
    radius_px: float | None = None


def predictions_folder(predict_output_folder: Path, dataset_folder: Path | None, number: int) -> Path:
    """`predictions_folder_N`, by default <output_folder>/predictions/N."""
    return dataset_folder or predict_output_folder / "predictions" / str(number)


def shard_folder(predictions: Path, time_points: list[int]) -> Path:
    """`shard_A-B` in the dataset's predictions folder: A and B are the first and last time point predicted."""
    return predictions / f"{SHARD_PREFIX}{time_points[0]}-{time_points[-1]}"


def positions_only(tracking: Tracking, time_points: list[int], voxel_size: VoxelSize | None) -> Tracking:
    """The positions of a tracking at `time_points`, with their metadata, image offsets and file data, without
    links (and so without lineage data)."""
    result = tracking.empty_copy()
    result.voxel_size = voxel_size or tracking.voxel_size
    for time_point in time_points:
        for position in tracking.positions_at(time_point):
            result.add_position(position, **tracking.position_data(position))
    return result


def write_predictions(tracking: Tracking, folder: Path, *, with_links: bool) -> None:
    """positions.csv, positions.aut and, `with_links`, links.csv."""
    save_tracking(positions_only(tracking, tracking.time_points(), tracking.voxel_size), folder / "positions.csv")
    save_tracking(tracking, folder / "positions.aut")
    if with_links:
        save_links_csv(tracking, folder / "links.csv", ["link_probability"])


def write_tracks(tracking: Tracking, folder: Path, ctc: CtcOutput | None, min_marginal_probability: float) -> str:
    """Writes tracks.aut, tracks.csv, tracks_filtered.aut and .csv (see `filtered`) and, given `ctc`, ctc/
    (Cell Tracking Challenge); returns what."""
    save_tracking(tracking, folder / "tracks.aut")
    save_tracking(tracking, folder / "tracks.csv")
    trusted = filtered(tracking, min_marginal_probability)
    save_tracking(trusted, folder / "tracks_filtered.aut")
    save_tracking(trusted, folder / "tracks_filtered.csv")
    written = f"{folder / 'tracks.aut'}, tracks.csv, tracks_filtered.aut, tracks_filtered.csv"
    if ctc is None:
        return written
    save_tracking(tracking, folder / "ctc", image_shape_zyx=ctc.image_shape_zyx, frame_count=ctc.frame_count,
                  radius_um=ctc.radius_um, radius_px=ctc.radius_px)
    return f"{written}, ctc/"


def filtered(tracking: Tracking, min_marginal_probability: float) -> Tracking:
    """The tracking without the links whose `marginal_probability` is below `min_marginal_probability` (links
    without one are kept): the lineages one can trust without review."""
    result = tracking.empty_copy()
    result.lineage_data = dict(tracking.lineage_data)
    for position in tracking.positions():
        result.add_position(position, **tracking.position_data(position))
    for a, b in tracking.links():
        data = tracking.link_data(a, b)
        if data.get(MARGINAL_PROBABILITY, 1.0) >= min_marginal_probability:
            result.add_link(a, b, **data)
    return result


REVIEW_COLUMNS = ("kind", "marginal_probability", "error_probability", "t", "z", "y", "x", "z_um", "y_um", "x_um",
                  "to_t", "to_z", "to_y", "to_x", "to_z_um", "to_y_um", "to_x_um",
                  "second_z", "second_y", "second_x", "second_z_um", "second_y_um", "second_x_um", "alternatives")


def write_review(review: Sequence[ReviewItem], voxel_size: VoxelSize | None, path: Path) -> None:
    """review.csv: one row per link or division to check, least certain first: where it is (the link's earlier
    end or the mother; the later end or the daughters) in pixels and in µm (empty where the voxel size is
    unknown), and the alternatives with their probabilities."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    for item in review:
        first, *second = item.targets
        writer.writerow([item.kind, f"{item.marginal_probability:.6f}", f"{1 - item.marginal_probability:.6f}",
                         item.source.t, *_zyx_cells(item.source, voxel_size), first.t, *_zyx_cells(first, voxel_size),
                         *(_zyx_cells(second[0], voxel_size) if second else [""] * 6),
                         "; ".join(f"{what}: {p:.3f}" for what, p in item.alternatives)])
    write_text_atomic(path, text.getvalue())


def _zyx_cells(position: Position, voxel_size: VoxelSize | None) -> list[str]:
    pixels = [f"{value:g}" for value in (position.z, position.y, position.x)]
    if voxel_size is None:
        return [*pixels, "", "", ""]
    return [*pixels, *(f"{value * size:.4g}" for value, size in zip((position.z, position.y, position.x),
                                                                    voxel_size.zyx_um()))]


def write_open_list(folder: Path, dataset: Dataset, tracking_file: str) -> Path:
    """`open_in_organoid_tracker.autlist` in the folder: an OrganoidTracker list of one experiment, the folder's
    `tracking_file` with the dataset's images (the channels it used, its time points), paths relative to it."""
    config = dataset.config
    path = folder / OPEN_LIST
    write_autlist(path, [autlist_entry(
        path, experiment_file=folder / tracking_file, images_container=config.images_container,
        images_pattern=config.images_pattern, channels=config.image_channels,
        time_points=(dataset.time_points[0], dataset.time_points[-1]))])
    return path
