"""`octrack stats` and `octrack convert`: what a tracking file holds, and the same tracking in another format
(.aut and .geff keep everything; CSV and CTC say what they leave out)."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np

from octrack.config import Config
from octrack.errors import UserError
from octrack.stages.common import ImageGeometry
from octrack.tracking import Tracking, VoxelSize, load_tracking, save_tracking, tracking_stats
from octrack.tracking.io import data_left_out, format_stats, is_ctc_path

log = logging.getLogger(__name__)
_MAX_CTC_FRAMES = 1_000_000  # one file per frame: more would exhaust the file system's entries, not a movie


def stats(path: Path | None, config_path: Path, *, as_json: bool) -> str:
    """The stats of one tracking file, or (without `path`) of the tracking files of the [prepare] datasets."""
    if path is not None:
        sources = {str(path): path}
    else:
        config = Config(config_path)
        sources = {f"{dataset.where('tracking_file')}": dataset.tracking_file
                   for dataset in config.datasets("prepare") if dataset.tracking_file is not None}
        if not sources:
            raise UserError(f"{config.path} [prepare]: no tracking_file_N to report on; give a PATH instead")
    values = {name: tracking_stats(load_tracking(source)) for name, source in sources.items()}
    if as_json:
        return json.dumps(next(iter(values.values())) if len(values) == 1 else values, indent=2)
    return "\n".join(f"{name}\n{format_stats(one)}" for name, one in values.items())


def convert(source: Path, target: Path, *, voxel_size: VoxelSize | None = None,
            geometry: ImageGeometry | None = None, radius_um: float | None = None, radius_px: float | None = None,
            ground_truth: bool = False) -> str:
    """Writes the tracking of `source` to `target` (format by extension, or a CTC folder: a result, or with
    `ground_truth` a ground-truth folder, its size from `geometry`); returns a summary."""
    tracking = load_tracking(source, voxel_size)
    written = save_ctc_or_file(tracking, target, geometry, radius_um=radius_um, radius_px=radius_px,
                               ground_truth=ground_truth)
    return (f"wrote {written}: {len(tracking)} positions, {tracking.link_count()} links, "
            f"{len(tracking.divisions())} divisions")


def save_ctc_or_file(tracking: Tracking, target: Path, geometry: ImageGeometry | None, *,
                     radius_um: float | None = None, radius_px: float | None = None,
                     ground_truth: bool = False) -> Path:
    """`save_tracking`, where a CTC folder takes its size, frames and (if the tracking has none) voxel size from
    the images' `geometry`; the CTC options stop a command whose output is no CTC folder."""
    if not is_ctc_path(target):
        used = [flag for flag, value in (("--radius-um", radius_um), ("--radius-px", radius_px),
                                         ("--ground-truth", ground_truth or None)) if value is not None]
        if used:
            raise UserError(f"{used[0]} applies to Cell Tracking Challenge folders only, and {target} is a "
                            f"{target.suffix} file; give a folder name (no suffix) or leave {used[0]} out")
    if geometry is not None and tracking.voxel_size is None:
        tracking.voxel_size = geometry.voxel_size
    if is_ctc_path(target) and geometry is not None:
        _check_room_for_ctc(tracking, target, geometry)
    written = save_tracking(tracking, target, image_shape_zyx=geometry.shape_zyx if geometry else None,
                            frame_count=geometry.frame_count if geometry else None, radius_um=radius_um,
                            radius_px=radius_px, ground_truth=ground_truth)
    left_out = data_left_out(tracking, target)
    if left_out:
        log.warning(left_out)
    return written


def _check_room_for_ctc(tracking: Tracking, target: Path, geometry: ImageGeometry) -> None:
    """A CTC folder holds one uncompressed label image per frame, from 0 to the last time point: refuse what the
    disk cannot hold (a time point of 1e9 would fill it) before writing anything."""
    frames = max(tracking.time_points()[-1] + 1 if len(tracking) else 1, geometry.frame_count or 1)
    needed = frames * math.prod(geometry.shape_zyx) * np.dtype(np.uint16).itemsize
    existing = next(folder for folder in (target, *target.absolute().parents) if folder.exists())
    free = shutil.disk_usage(existing).free
    if needed > free or frames > _MAX_CTC_FRAMES:
        raise UserError(f"{target}: {frames:,} label images (time points 0 to {frames - 1}) of z, y, x = "
                        f"{', '.join(map(str, geometry.shape_zyx))} need {needed / 2 ** 30:,.1f} GiB, and "
                        f"{existing} has {free / 2 ** 30:,.1f} GiB free (and octrack writes at most {_MAX_CTC_FRAMES:,} "
                        f"frames); check the time points of the input and the image size (--shape is z y x)")
