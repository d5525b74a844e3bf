"""Cell Tracking Challenge (CTC) tracking folders: label TIFFs per time point plus a track file.

A folder holds `man_track.txt` with `man_trackT.tif` (ground truth, usually in a `TRA` subfolder) or
`res_track.txt` with `maskT.tif` (results); T has any zero padding. Each line of the track file is
`L B E P`: label, first and last time point, parent label (0 = none). Every label is one track segment.

Reading: positions are the label centroids of each frame (2D frames (Y, X) give z = 0, 3D frames are
(Z, Y, X)). A label is linked from each time point where it appears to the next one where it appears (it may
skip time points), and a parent's last position to each daughter's first. Without a track file the labels
give positions only, as label values of segmentation masks need not follow cells over time.

Writing (`save_ctc`; results by default, ground truth with `ground_truth=True`): one label per track segment
(`Tracking.tracks()`, cut where a link skips time points), painted as a ball of the given radius around
each position's nearest voxel. A voxel goes to the nearest centre only, and each ball is trimmed to be point
symmetric around its centre voxel, so that the centroid read back is exactly that voxel: positions come back
rounded to whole pixels, even where balls touch each other or the image border. CTC allows one parent per
track: of a cell merge only the link from the first parent is written.

The voxel size goes into the TIFF resolution tags (ImageJ style, with the z spacing) and is read back from
the label images by the same rules as the voxel size of images (`octrack.images.tiff_voxel_size`: a
length unit is needed, and 2D images without z spacing get z = x); the time between time points is not kept.
CTC folders carry no image offsets (`Tracking.image_offsets`, from .aut files): positions are written as they
are and read back without offsets.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import tifffile

from octrack.errors import UserError
from octrack.files import atomic_path
from octrack.tracking.model import Position, Tracking, VoxelSize

DEFAULT_RADIUS_PX = 3.0
TRACK_FILES = {"man_track.txt": "man_track", "res_track.txt": "mask"}  # track file name -> label image prefix
_LABEL_IMAGE = re.compile(r"^(man_track|mask)(\d+)\.tiff?$")

TrackRow = tuple[int, int, int, int]  # label, first time point, last time point, parent label


# Reading
def load_ctc(folder: str | Path) -> Tracking:
    """Reads a CTC folder: the folder itself, or its `TRA` subfolder, holding label TIFFs and a track file."""
    from octrack.images import tiff_voxel_size  # not at the top: octrack.images imports octrack.tracking

    folder, track_file, prefix = _find_ctc_folder(Path(folder))
    images = _label_images(folder, prefix)
    tracking = Tracking()
    appearances: dict[int, list[Position]] = defaultdict(list)
    for time_point, path in sorted(images.items()):
        labels = _read_labels(path)
        for label, position in _centroids(labels, time_point):
            appearances[label].append(tracking.add_position(position))
    tracking.voxel_size = tiff_voxel_size(path, depth=labels.shape[0])  # of the last label image
    if track_file is not None:
        _link(tracking, appearances, _read_track_file(track_file), track_file)
    return tracking


def _find_ctc_folder(folder: Path) -> tuple[Path, Path | None, str | None]:
    """The folder with the data, its track file (None if absent) and the label image prefix that goes with it."""
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found; give a Cell Tracking Challenge folder")
    for candidate in (folder, folder / "TRA"):
        for name, prefix in TRACK_FILES.items():
            if (candidate / name).is_file():
                return candidate, candidate / name, prefix
    if _label_images(folder, None, required=False):
        return folder, None, None
    raise UserError(f"{folder}: no man_track.txt, res_track.txt, TRA subfolder or label TIFFs (maskT.tif,"
                    f" man_trackT.tif); give a Cell Tracking Challenge folder")


def _label_images(folder: Path, prefix: str | None, *, required: bool = True) -> dict[int, Path]:
    """Label image per time point; those of `prefix` if there are any, else of the other prefix."""
    found: dict[str, dict[int, Path]] = {"man_track": {}, "mask": {}}
    for path in sorted(folder.iterdir()):
        match = _LABEL_IMAGE.match(path.name)
        if match is None:
            continue
        time_point = int(match[2])
        if time_point in found[match[1]]:
            raise UserError(f"{path}: a second label image for time point {time_point}"
                            f" ({found[match[1]][time_point].name}); remove one of them")
        found[match[1]][time_point] = path
    images = (prefix is not None and found[prefix]) or found["man_track"] or found["mask"]
    if required and not images:
        raise UserError(f"{folder}: no label TIFFs (maskT.tif or man_trackT.tif) next to the track file;"
                        f" add them")
    return images


def _read_labels(path: Path) -> np.ndarray:
    """The label image as (Z, Y, X); 2D images get Z = 1."""
    try:
        labels = tifffile.imread(path)
    except (tifffile.TiffFileError, ValueError, OSError) as error:
        raise UserError(f"{path}: cannot read this TIFF ({error}); give a label image") from error
    labels = np.squeeze(labels) if labels.ndim > 3 else labels
    if labels.ndim not in (2, 3) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: expected a 2D or 3D integer label image, got shape {labels.shape} of"
                        f" {labels.dtype}; give a label image")
    if labels.ndim == 2:
        labels = labels[np.newaxis]
    if labels.size and labels.min() < 0:
        raise UserError(f"{path}: has negative labels; give a label image with labels 0 (background) and up")
    return labels


def _centroids(labels: np.ndarray, time_point: int) -> list[tuple[int, Position]]:
    """Centroid of every label, in one pass over the foreground voxels."""
    coords = np.nonzero(labels)
    present, index, counts = np.unique(labels[coords], return_inverse=True, return_counts=True)
    z, y, x = (np.bincount(index, weights=axis, minlength=len(present)) / counts for axis in coords)
    return [(int(label), Position(float(px), float(py), float(pz), time_point))
            for label, px, py, pz in zip(present, x, y, z)]


def _read_track_file(path: Path) -> list[TrackRow]:
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            label, begin, end, parent = (int(value) for value in line.split())
        except ValueError as error:
            raise UserError(f"{path}, line {line_number}: expected four whole numbers 'L B E P', got"
                            f" {line.strip()!r}; fix that line") from error
        rows.append((label, begin, end, parent))
    return rows


def _link(tracking: Tracking, appearances: dict[int, list[Position]], rows: list[TrackRow], path: Path) -> None:
    for positions in appearances.values():
        for earlier, later in zip(positions, positions[1:]):
            tracking.add_link(earlier, later)
    for label, _, _, parent in rows:
        if parent == 0 or label not in appearances or parent not in appearances:
            continue
        mother, daughter = appearances[parent][-1], appearances[label][0]
        if mother.t >= daughter.t:
            raise UserError(f"{path}: label {label} appears at time point {daughter.t}, not after its parent"
                            f" {parent} (last seen at {mother.t}); fix the parent column")
        tracking.add_link(mother, daughter)


# Writing
def save_ctc(tracking: Tracking, folder: str | Path, *, image_shape_zyx: tuple[int, ...] | None = None,
             radius_um: float | None = None, radius_px: float | None = None, ground_truth: bool = False) -> None:
    """Writes a CTC folder: `res_track.txt` and `maskT.tif`, or with `ground_truth` `man_track.txt` and
    `man_trackT.tif`. The radius is in µm (pixels where the voxel size is unknown) or in pixels; without
    either it is DEFAULT_RADIUS_PX. The image shape (Z, Y, X) or (Y, X) defaults to just fit all positions."""
    folder = Path(folder)
    _check_writable(tracking, folder)
    centres = np.array([_centre_voxel(position) for position in tracking.positions()], dtype=np.intp).reshape(-1, 3)
    shape = _image_shape(centres, image_shape_zyx, tracking.voxel_size, radius_um, radius_px)
    outside = np.any((centres < 0) | (centres >= np.array(shape)), axis=1)
    if outside.any():
        raise UserError(f"{folder}: {outside.sum()} positions lie outside the image of shape {shape} (z, y, x),"
                        f" for example {tuple(centres[outside][0])}; give a larger image shape")
    ball = _ball(tracking.voxel_size, radius_um, radius_px, is_3d=shape[0] > 1)
    labels, rows = _label_tracks(tracking)
    prefix, track_file = ("man_track", "man_track.txt") if ground_truth else ("mask", "res_track.txt")
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        _write_label_images(tracking, temporary, prefix, labels, len(rows), shape, ball)
        lines = "".join(f"{label} {begin} {end} {parent}\n" for label, begin, end, parent in rows)
        (temporary / track_file).write_text(lines, encoding="utf-8")


def _write_label_images(tracking: Tracking, folder: Path, prefix: str, labels: dict[Position, int], label_count: int,
                        shape: tuple[int, int, int], ball: tuple[np.ndarray, np.ndarray]) -> None:
    """One image per time point from 0 to the last, also where there are no positions, as CTC expects."""
    dtype = np.uint16 if label_count <= np.iinfo(np.uint16).max else np.uint32
    last = tracking.time_points()[-1] if len(tracking) else 0
    digits = max(3, len(str(last)))
    options = _tiff_options(tracking.voxel_size, dtype, shape[0] > 1)
    for time_point in range(last + 1):
        image = _paint(tracking.positions_at(time_point), labels, shape, ball, dtype)
        tifffile.imwrite(folder / f"{prefix}{time_point:0{digits}d}.tif", image if shape[0] > 1 else image[0],
                         **options)


def _check_writable(tracking: Tracking, folder: Path) -> None:
    """Saving replaces the folder, so refuse a folder that holds anything but CTC tracking files."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; give a folder name for the CTC output")
    if folder.is_dir():
        others = [path.name for path in folder.iterdir()
                  if path.name not in TRACK_FILES and not _LABEL_IMAGE.match(path.name)]
        if others:
            raise UserError(f"{folder}: holds other files ({', '.join(sorted(others)[:3])}); save the CTC output"
                            f" to a new or empty folder")
    if len(tracking) and tracking.time_points()[0] < 0:
        raise UserError(f"{folder}: the tracking has negative time points, which CTC files cannot hold;"
                        f" shift the time points first")


def _image_shape(centres: np.ndarray, image_shape_zyx: tuple[int, ...] | None, voxel_size: VoxelSize | None,
                 radius_um: float | None, radius_px: float | None) -> tuple[int, int, int]:
    """The given (Z, Y, X) or (Y, X) shape, else just large enough for the balls around the centre voxels."""
    if image_shape_zyx is not None:
        if len(image_shape_zyx) not in (2, 3):
            raise UserError(f"image shape {image_shape_zyx} must be (Z, Y, X) or (Y, X)")
        return tuple(int(size) for size in (1,) * (3 - len(image_shape_zyx)) + tuple(image_shape_zyx))
    is_3d = bool(np.any(centres[:, 0] != 0))
    offsets, _ = _ball(voxel_size, radius_um, radius_px, is_3d=is_3d)
    size = (centres.max(axis=0) if len(centres) else np.zeros(3, np.intp)) + offsets.max(axis=0) + 1
    return (int(size[0]) if is_3d else 1, int(size[1]), int(size[2]))


def _ball(voxel_size: VoxelSize | None, radius_um: float | None, radius_px: float | None, *,
          is_3d: bool) -> tuple[np.ndarray, np.ndarray]:
    """Voxel offsets (n, 3) of a ball and their squared distances, ordered so that offset i = -offset n-1-i."""
    if radius_um is not None and radius_px is not None:
        raise UserError("give the radius of the painted positions in µm or in pixels, not both")
    if radius_um is not None and voxel_size is not None:
        radius, scale = radius_um, np.array(voxel_size.zyx_um(), dtype=float)
    else:
        radius = next((r for r in (radius_um, radius_px) if r is not None), DEFAULT_RADIUS_PX)
        scale = np.ones(3)
    if radius < 0 or not np.all(scale[0 if is_3d else 1:] > 0):
        raise UserError(f"cannot paint positions with radius {radius} and voxel size {voxel_size};"
                        f" give a radius ≥ 0 and a positive voxel size")
    half = [math.floor(radius / s + 1e-9) for s in scale]
    if not is_3d:
        half[0] = 0
    grid = np.indices([2 * h + 1 for h in half]).reshape(3, -1).T - np.array(half)  # lexicographic: symmetric order
    distances = ((grid * scale) ** 2).sum(axis=1)
    inside = distances <= radius ** 2 * (1 + 1e-9)
    return grid[inside], distances[inside].astype(np.float32)


def _label_tracks(tracking: Tracking) -> tuple[dict[Position, int], list[TrackRow]]:
    """Label per position and the track file rows: one label per track, the parent being the track before.

    A track is cut where a link skips time points, as a CTC label covers consecutive time points only: the
    part after the gap gets a label of its own, with the part before as its parent."""
    tracks = [part for track in tracking.tracks() for part in _consecutive_parts(track)]
    labels = {position: label for label, track in enumerate(tracks, 1) for position in track}
    rows, merges = [], 0
    for label, track in enumerate(tracks, 1):
        past = tracking.past(track[0])
        merges += len(past) > 1
        rows.append((label, track[0].t, track[-1].t, labels[past[0]] if past else 0))
    if merges:
        warnings.warn(f"CTC files allow one parent per track: {merges} cell merges keep only their first parent",
                      stacklevel=3)
    return labels, rows


def _consecutive_parts(track: list[Position]) -> list[list[Position]]:
    cuts = [i for i in range(1, len(track)) if track[i].t != track[i - 1].t + 1]
    return [track[start:end] for start, end in zip([0, *cuts], [*cuts, len(track)])]


def _paint(positions: list[Position], labels: dict[Position, int], shape: tuple[int, int, int],
           ball: tuple[np.ndarray, np.ndarray], dtype: type) -> np.ndarray:
    """Label image of one time point: each position a ball, trimmed to be point symmetric (see module doc)."""
    offsets, distances = ball
    centres = _unique_centres(positions)
    owner = np.full(shape, -1, dtype=np.int32)
    best = np.full(shape, np.inf, dtype=np.float32)
    tied = np.zeros(shape, dtype=bool)
    for index, centre in enumerate(centres):  # voxel -> nearest centre; ties go to no one
        voxels, inside = _voxels(centre, offsets, shape)
        distance, current = distances[inside], best[voxels]
        closer, equal = distance < current, distance == current
        best[_select(voxels, closer)] = distance[closer]
        owner[_select(voxels, closer)] = index
        tied[_select(voxels, closer)] = False
        tied[_select(voxels, equal)] = True
    image = np.zeros(shape, dtype=dtype)
    for index, (centre, position) in enumerate(centres.items()):
        voxels, inside = _voxels(centre, offsets, shape)
        owned = np.zeros(len(offsets), dtype=bool)
        owned[inside] = (owner[voxels] == index) & ~tied[voxels]
        symmetric = owned & owned[::-1]
        image[tuple((np.array(centre) + offsets[symmetric]).T)] = labels[position]
    return image


def _unique_centres(positions: list[Position]) -> dict[tuple[int, int, int], Position]:
    centres: dict[tuple[int, int, int], Position] = {}
    for position in positions:
        centres.setdefault(_centre_voxel(position), position)
    if len(centres) < len(positions):
        warnings.warn(f"{len(positions) - len(centres)} positions at time point {positions[0].t} share a voxel with"
                      f" another position and are left out of the CTC labels", stacklevel=4)
    return centres


def _centre_voxel(position: Position) -> tuple[int, int, int]:
    return int(round(position.z)), int(round(position.y)), int(round(position.x))


def _voxels(centre: tuple[int, int, int], offsets: np.ndarray, shape: tuple[int, int, int]
            ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Index arrays of the ball's voxels inside the image, and which offsets those are."""
    coords = np.array(centre) + offsets
    inside = np.all((coords >= 0) & (coords < np.array(shape)), axis=1)
    return tuple(coords[inside].T), inside


def _select(voxels: tuple[np.ndarray, ...], mask: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(axis[mask] for axis in voxels)


def _tiff_options(voxel_size: VoxelSize | None, dtype: type, is_3d: bool) -> dict:
    """Resolution tags: ImageJ style (with z spacing) for uint16; ImageJ cannot hold uint32, so then x/y in cm."""
    if voxel_size is None:
        return {}
    if dtype == np.uint16:
        return {"imagej": True, "resolution": (1 / voxel_size.x_um, 1 / voxel_size.y_um),
                "metadata": {"spacing": voxel_size.z_um, "unit": "um", "axes": "ZYX" if is_3d else "YX"}}
    return {"resolution": (1e4 / voxel_size.x_um, 1e4 / voxel_size.y_um), "resolutionunit": "CENTIMETER"}
