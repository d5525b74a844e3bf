"""`octrack stats` and `octrack convert`: what a tracking file holds, and the same tracking in another format
(.aut and .geff keep everything; CSV and CTC say what they leave out)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from octrack.config import Config
from octrack.errors import UserError
from octrack.tracking import VoxelSize, load_tracking, save_tracking, tracking_stats
from octrack.tracking.io import data_left_out, format_stats

log = logging.getLogger(__name__)


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


def convert(source: Path, target: Path, *, voxel_size: VoxelSize | None, image_shape_zyx: tuple[int, ...] | None,
            radius_um: float | None, radius_px: float | None) -> str:
    """Writes the tracking of `source` to `target` (format by extension, or a CTC folder); returns a summary."""
    tracking = load_tracking(source, voxel_size)
    save_tracking(tracking, target, image_shape_zyx=image_shape_zyx, radius_um=radius_um, radius_px=radius_px)
    left_out = data_left_out(tracking, target)
    if left_out:
        log.warning(left_out)
    return (f"wrote {target}: {len(tracking)} positions, {tracking.link_count()} links, "
            f"{len(tracking.divisions())} divisions")
