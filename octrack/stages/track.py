"""`octrack track`: links the positions of a tracking file into tracks with divisions and writes them."""

from __future__ import annotations

from pathlib import Path

from octrack.errors import UserError
from octrack.linking import DEFAULT_TEMPERATURE, has_link_probabilities, link_tracks
from octrack.stages.common import ImageGeometry
from octrack.stages.tracking_files import save_ctc_or_file
from octrack.tracking import VoxelSize, load_tracking


def track_file(positions_path: Path, output: Path | None = None, *, voxel_size: VoxelSize | None = None,
               geometry: ImageGeometry | None = None, radius_um: float | None = None,
               radius_px: float | None = None, temperature: float = DEFAULT_TEMPERATURE) -> str:
    """Links the positions of a tracking file and writes the tracks (format by extension; default
    `<name>-tracks.aut` next to it; a CTC folder gets the size of the images' `geometry`); returns a summary.
    The images' size also makes tracks start and end more readily at their border; `temperature` is that of the
    links' marginal probabilities (`octrack calibrate` fits it)."""
    tracking = load_tracking(positions_path, voxel_size or (geometry.voxel_size if geometry else None))
    if not len(tracking):
        raise UserError(f"{positions_path}: holds no positions; give a file with positions to link")
    if tracking.voxel_size is None and not has_link_probabilities(tracking) and \
            len({p.z for p in tracking.positions()}) > 1:
        raise UserError(f"{positions_path}: the voxel size is unknown, and distances in 3D need it; give "
                        f"--voxel-size Z Y X (µm), or the images (--images) if their metadata hold it")
    output = output or positions_path.with_name(f"{positions_path.stem}-tracks.aut")
    if not temperature > 0:
        raise UserError(f"--temperature {temperature}: must be above 0 (default {DEFAULT_TEMPERATURE:g})")
    result = link_tracks(tracking, image_shape_zyx=geometry.shape_zyx if geometry else None, temperature=temperature)
    written = save_ctc_or_file(result.tracking, output, geometry, radius_um=radius_um, radius_px=radius_px)
    return f"wrote {written}: {result.describe()}"
