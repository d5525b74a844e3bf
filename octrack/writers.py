"""Where `octrack predict` and `octrack merge` write a dataset's results, and how.

A dataset's predictions folder holds positions.csv and positions.aut (positions with their metadata; with the
links step also the candidate links with theirs), links.csv, and with the tracks step tracks.aut, tracks.csv
and ctc/ (Cell Tracking Challenge); and `open_in_organoid_tracker.autlist`, which names the tracks (else the
positions) and the images, so that OrganoidTracker opens both together. A shard (`octrack predict --time-points
A:B`) writes the same into `shard_A-B/` of that folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from octrack.autlist import autlist_entry, write_autlist
from octrack.dataset import Dataset
from octrack.tracking import Tracking, VoxelSize, save_tracking
from octrack.tracking.csv_io import save_links_csv

SHARD_PREFIX = "shard_"
OPEN_LIST = "open_in_organoid_tracker.autlist"


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


def write_tracks(tracking: Tracking, folder: Path, ctc: CtcOutput | None) -> str:
    """Writes tracks.aut, tracks.csv and, given `ctc`, ctc/ (Cell Tracking Challenge); returns what."""
    save_tracking(tracking, folder / "tracks.aut")
    save_tracking(tracking, folder / "tracks.csv")
    if ctc is None:
        return f"{folder / 'tracks.aut'}, tracks.csv"
    save_tracking(tracking, folder / "ctc", image_shape_zyx=ctc.image_shape_zyx, frame_count=ctc.frame_count,
                  radius_um=ctc.radius_um, radius_px=ctc.radius_px)
    return f"{folder / 'tracks.aut'}, tracks.csv, ctc/"


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
