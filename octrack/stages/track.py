"""`octrack track`: links the positions of a tracking file into tracks with divisions and writes them."""

from __future__ import annotations

import logging
from pathlib import Path

from octrack.errors import UserError
from octrack.linking import has_link_probabilities, link_tracks
from octrack.tracking import VoxelSize, load_tracking, save_tracking
from octrack.tracking.io import data_left_out

log = logging.getLogger(__name__)


def track_file(positions_path: Path, output: Path | None = None, *, voxel_size: VoxelSize | None = None,
               image_shape_zyx: tuple[int, int, int] | None = None) -> str:
    """Links the positions of a tracking file and writes the tracks (format by extension; default
    `<name>-tracks.aut` next to it); returns a summary."""
    if voxel_size is not None and not all(0 < size < float("inf") for size in voxel_size.zyx_um()):
        raise UserError(f"--voxel-size {voxel_size.x_um:g} {voxel_size.y_um:g} {voxel_size.z_um:g}: every size must "
                        f"be a positive number of µm")
    tracking = load_tracking(positions_path, voxel_size)
    if not len(tracking):
        raise UserError(f"{positions_path}: holds no positions; give a file with positions to link")
    if tracking.voxel_size is None and not has_link_probabilities(tracking) and \
            len({p.z for p in tracking.positions()}) > 1:
        raise UserError(f"{positions_path}: the voxel size is unknown, and distances in 3D need it; give "
                        f"--voxel-size X Y Z (µm)")
    output = output or positions_path.with_name(f"{positions_path.stem}-tracks.aut")
    result = link_tracks(tracking, image_shape_zyx=image_shape_zyx)
    save_tracking(result.tracking, output, image_shape_zyx=image_shape_zyx)
    left_out = data_left_out(result.tracking, output)
    if left_out:
        log.warning(left_out)
    return f"wrote {output}: {result.describe()}"
