"""What every tracking read from a file must satisfy, whatever its format: checked once, where `load_tracking`
reads it, so that a damaged or inconsistent file stops with one line naming it instead of giving wrong results.
Where a tracking must be cell lineages (annotations, tracks to score), `check_lineage` also refuses a cell with
more than two daughters.

- Coordinates are finite (NaN or inf would poison distances, matching and tracking).
- Time points are 0 or later (images, CTC frames and OrganoidTracker's time points count from 0).
- The voxel size, where the file gives one, is finite and above 0 (z may be 0: 2D, as OrganoidTracker writes it).
"""

from __future__ import annotations

import math
from pathlib import Path

from octrack.errors import UserError
from octrack.tracking.model import Position, Tracking, VoxelSize

MAX_CHILDREN = 2


def check_tracking(tracking: Tracking, path: Path) -> None:
    """Raises a UserError naming `path` and the first position that breaks a rule of the module's docstring."""
    check_voxel_size(tracking.voxel_size, str(path))
    for position in tracking.positions():
        if not all(math.isfinite(value) for value in (position.x, position.y, position.z)):
            raise UserError(f"{path}: the position at time point {position.t} has coordinates "
                            f"{_zyx(position)}, not finite numbers; fix or remove it")
        if position.t < 0:
            raise UserError(f"{path}: a position at time point {position.t} ({_zyx(position)}); time points count "
                            f"from 0, fix its time point")


def check_lineage(tracking: Tracking, where: str) -> None:
    """For a tracking that must be cell lineages (annotations to train on, tracks to score): no position links to
    more than two later ones. Files of candidate links (e.g. OrganoidTracker's link predictions, input of `octrack
    track`) may have more, so `load_tracking` does not check this."""
    for position in tracking.positions():
        children = tracking.future(position)
        if len(children) > MAX_CHILDREN:
            raise UserError(f"{where}: the position {_zyx(position)} at time point {position.t} has "
                            f"{len(children)} links to later positions; a cell divides into two at most, so "
                            f"remove the wrong link(s)")


def check_voxel_size(voxel_size: VoxelSize | None, where: str) -> None:
    """A voxel size from a file or the command line: every size finite and above 0 (a time step, where given,
    too)."""
    if voxel_size is None:
        return
    for axis, size in {"x": voxel_size.x_um, "y": voxel_size.y_um, "z": voxel_size.z_um}.items():
        lowest_allowed = 0.0 if axis == "z" else math.ulp(0.0)  # z 0: 2D, as OrganoidTracker writes it
        if not (math.isfinite(size) and size >= lowest_allowed):
            raise UserError(f"{where}: the voxel size in {axis} is {size:g} µm; give finite sizes above 0")
    if voxel_size.t_minutes is not None and not (math.isfinite(voxel_size.t_minutes) and voxel_size.t_minutes > 0):
        raise UserError(f"{where}: the time between time points is {voxel_size.t_minutes:g} minutes; give a finite "
                        f"time above 0")


def _zyx(position: Position) -> str:
    return f"z, y, x = {position.z:g}, {position.y:g}, {position.x:g}"
