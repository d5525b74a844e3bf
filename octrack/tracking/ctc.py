"""Cell Tracking Challenge (CTC) tracking folders: label TIFFs per time point plus a track file.

A folder holds `man_track.txt` with `man_trackT.tif` (ground truth, usually in a `TRA` subfolder) or
`res_track.txt` with `maskT.tif` (results); T has any zero padding. Each line of the track file is
`L B E P`: label, first and last time point, parent label (0 = none). Every label is one track segment.

Reading: positions are the label centroids of each frame (2D frames (Y, X) give z = 0, 3D frames are
(Z, Y, X)). A label is linked from each time point where it appears to the next one where it appears (it may
skip time points), and a parent's last position to each daughter's first. Without a track file the labels
give positions only, as label values of segmentation masks need not follow cells over time.

Writing (`save_ctc`; results by default, ground truth with `ground_truth=True`): one label per track segment
(`Tracking.tracks()`, cut where a link skips time points), painted as a ball (`marker_ball`) around each
position's nearest voxel, in images of the size of the movie (never guessed from the positions: the labels must
line up with the images voxel for voxel). Where balls overlap, a voxel goes to the nearest centre in µm (the
watershed of the distance to the centres, as OrganoidTracker splits its spheres), so no label covers two nuclei;
each ball is then trimmed to be point symmetric around its centre voxel, so that the centroid read back is
exactly that voxel: positions come back rounded to whole pixels, even where balls touch each other. Ground truth
is trimmed at the image border too (its small markers give back every position exactly); a result is not, as its
marker must cover the true marker of a nucleus at the border even where the predicted centre lies nearer to the
border (a result's positions within a radius of the border come back moved inward). CTC allows one parent per
track: of a cell merge only the link from the first parent is written.

Results can be read by the CTC's tools (py-ctcmetrics, traccuracy, napari-ctc-io: `res_track.txt` and
`maskTTT.tif`) and by OrganoidTracker, which opens a track file `<name>.txt` and reads `<name>TTT.tif` beside
it: `mask.txt` holds the same lines as `res_track.txt` for it (open `mask.txt` in OrganoidTracker). Ground
truth (`man_track.txt`, `man_trackTTT.tif` in `TRA/`) suits all of them as it is.

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

RESULT_RADIUS_UM = 7.0  # OrganoidTracker's radius of result markers
RESULT_RADIUS_PX = 10.0  # without a voxel size: covers the markers of typical ground truth (docs/benchmarks.md)
GROUND_TRUTH_RADIUS_PX = 2.0
RESULT_FOR_ORGANOIDTRACKER = "mask.txt"  # res_track.txt again: OrganoidTracker reads <name>TTT.tif beside <name>.txt
TRACK_FILES = {"man_track.txt": "man_track", "res_track.txt": "mask"}  # track file name -> label image prefix
_LABEL_IMAGE = re.compile(r"^(man_track|mask)(\d+)\.tiff?$")
MAX_FRAME_VOXELS = 2 ** 31  # a label image larger than this (8 GiB of uint32) is a mistake in the size given
_MAX_MARKER_VOXELS = 2 ** 24  # a marker ball larger than 256³ voxels is no nucleus

TrackRow = tuple[int, int, int, int]  # label, first time point, last time point, parent label


# Reading
def load_ctc(folder: str | Path) -> Tracking:
    """Reads a CTC folder: the folder itself, or its `TRA` subfolder, holding label TIFFs and a track file."""
    from octrack.images import tiff_voxel_size  # not at the top: octrack.images imports octrack.tracking

    folder, track_file, prefix = _find_ctc_folder(Path(folder))
    images = _label_images(folder, prefix)
    rows = _read_track_file(track_file) if track_file is not None else None
    _check_frames(images, rows, track_file, folder)
    tracking = Tracking()
    appearances: dict[int, list[Position]] = defaultdict(list)
    for time_point, path in sorted(images.items()):
        labels = _read_labels(path)
        for label, position in _centroids(labels, time_point):
            appearances[label].append(tracking.add_position(position))
    tracking.voxel_size = tiff_voxel_size(path, depth=labels.shape[0])  # of the last label image
    if track_file is not None:
        _check_rows_match_labels(rows, appearances, track_file, images)
        _link(tracking, appearances, rows, track_file)
    return tracking


def _check_frames(images: dict[int, Path], rows: list[TrackRow] | None, track_file: Path | None,
                  folder: Path) -> None:
    """Refuses a missing label image inside the frames in use (from the first image or track to the last): its
    positions would be lost and links would bridge the gap."""
    first = min([min(images), *(begin for _, begin, _, _ in rows or ())])
    last = max([max(images), *(end for _, _, end, _ in rows or ())])
    missing = [t for t in range(first, last + 1) if t not in images]
    if missing:
        example = next(iter(images.values()))
        digits = len(_LABEL_IMAGE.match(example.name)[2])
        name = f"{_LABEL_IMAGE.match(example.name)[1]}{missing[0]:0{digits}d}{example.suffix}"
        because = f"{track_file.name} has tracks from time point {first} to {last}" if track_file is not None \
            else f"the label images run from {first} to {last}"
        raise UserError(f"{folder / name}: missing ({len(missing)} label image(s) missing in all), while {because};"
                        f" restore the label images of every time point")


def _check_rows_match_labels(rows: list[TrackRow], appearances: dict[int, list[Position]], path: Path,
                             images: dict[int, Path]) -> None:
    """The track file must describe the labels of the images: each label once, each present from its first to
    its last time point as written, each parent a label of the file (0 = none)."""
    written: dict[int, TrackRow] = {}
    for row in rows:
        label, begin, end, parent = row
        if label in written:
            raise UserError(f"{path}: label {label} is listed twice; list each label once")
        if label < 1 or begin < 0 or end < begin or parent < 0 or parent == label:
            raise UserError(f"{path}: the line '{label} {begin} {end} {parent}' is not 'L B E P' with a label above "
                            f"0, 0 <= B <= E and a parent label (0 = none); fix that line")
        written[label] = row
    for label, begin, end, parent in rows:
        if parent and parent not in written:
            raise UserError(f"{path}: label {label} has parent {parent}, which the file does not list; fix the "
                            f"parent column")
        seen = appearances.get(label)
        if not seen or seen[0].t != begin or seen[-1].t != end:
            found = f"time points {seen[0].t}-{seen[-1].t}" if seen else "no label image"
            raise UserError(f"{path}: label {label} runs from time point {begin} to {end}, but the label images "
                            f"hold it in {found}; the track file does not belong to these label images (or one "
                            f"of them is damaged), fix or replace it")
    unlisted = sorted(set(appearances) - set(written))
    if unlisted:
        time_point = appearances[unlisted[0]][0].t
        raise UserError(f"{path}: label {unlisted[0]} of {images[time_point].name} (and {len(unlisted) - 1} more) is "
                        f"not in the track file; the track file does not belong to these label images, fix or "
                        f"replace it")


def is_ctc_folder(folder: Path) -> bool:
    """Whether a folder (or its TRA subfolder) holds CTC tracking files rather than, say, images."""
    return folder.is_dir() and any((candidate / name).is_file() for candidate in (folder, folder / "TRA")
                                   for name in TRACK_FILES)


def ctc_geometry(folder: str | Path) -> tuple[tuple[int, int, int], int, VoxelSize | None]:
    """The image size (z, y, x), the number of frames (last time point + 1) and the voxel size of the label
    images of a CTC folder: the geometry that results for the same movie must have."""
    from octrack.images import reading_tiff, tiff_voxel_size  # not at the top: octrack.images imports tracking

    folder, _, prefix = _find_ctc_folder(Path(folder))
    images = _label_images(folder, prefix)
    last = max(images)
    try:
        with reading_tiff(images[last]), tifffile.TiffFile(images[last]) as tif:
            shape = tuple(int(size) for size in tif.series[0].shape)
    except (tifffile.TiffFileError, ValueError, OSError, IndexError) as error:
        raise UserError(f"{images[last]}: cannot read this TIFF ({error}); give a label image") from error
    shape_zyx = _image_shape(tuple(size for size in shape if size != 1) if len(shape) > 3 else shape)
    return shape_zyx, last + 1, tiff_voxel_size(images[last], depth=shape_zyx[0])


def label_image_paths(folder: str | Path) -> dict[int, Path]:
    """The label image of each time point of a CTC folder (or its TRA subfolder)."""
    folder, _, prefix = _find_ctc_folder(Path(folder))
    return _label_images(folder, prefix)


def read_label_image(path: Path) -> np.ndarray:
    """A label image as (Z, Y, X); 2D images get Z = 1."""
    return _read_labels(path)


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
    from octrack.images import reading_tiff  # not at the top: octrack.images imports octrack.tracking

    try:
        with reading_tiff(path):  # a truncated label image is refused, not read in part
            labels = tifffile.imread(path)
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, RuntimeError) as error:
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
def save_ctc(tracking: Tracking, folder: str | Path, *, image_shape_zyx: tuple[int, ...] | None,
             frame_count: int | None = None, radius_um: float | None = None, radius_px: float | None = None,
             ground_truth: bool = False) -> Path:
    """Writes a CTC folder and returns it: results as `res_track.txt` with `maskTTT.tif` (and `mask.txt`, see
    RESULT_FOR_ORGANOIDTRACKER), or with `ground_truth` `man_track.txt` with `man_trackTTT.tif` in the `TRA`
    subfolder of `folder` (unless `folder` is named TRA), as the CTC's evaluation tools expect.

    The image shape (Z, Y, X) or (Y, X) is that of the images the positions belong to: the labels must line up
    with them voxel for voxel. Frames are written from 0 to the last time point with positions, or to
    `frame_count` - 1 if that is later (a result needs one mask per frame of the movie). The markers are
    described by `marker_ball`."""
    folder = Path(folder)
    target = folder / "TRA" if ground_truth and folder.name != "TRA" else folder
    _check_writable(tracking, target)
    if image_shape_zyx is None:
        raise UserError(f"{folder}: Cell Tracking Challenge labels need the size of the images; give the images "
                        f"(--images), or their size as --shape Z Y X")
    shape = _image_shape(image_shape_zyx)
    tracking = _one_position_per_voxel(tracking, shape, target)
    ball = marker_ball(tracking.voxel_size, radius_um, radius_px, is_3d=shape[0] > 1, ground_truth=ground_truth)
    labels, rows = _label_tracks(tracking)
    prefix, track_file = ("man_track", "man_track.txt") if ground_truth else ("mask", "res_track.txt")
    last = max(tracking.time_points()[-1] if len(tracking) else 0, (frame_count or 1) - 1)
    lines = "".join(f"{label} {begin} {end} {parent}\n" for label, begin, end, parent in rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        temporary.mkdir()
        _write_label_images(tracking, temporary, prefix, labels, len(rows), shape, ball, last)
        (temporary / track_file).write_text(lines, encoding="utf-8")
        if not ground_truth:
            (temporary / RESULT_FOR_ORGANOIDTRACKER).write_text(lines, encoding="utf-8")
    return target


def _write_label_images(tracking: Tracking, folder: Path, prefix: str, labels: dict[Position, int], label_count: int,
                        shape: tuple[int, int, int], ball: tuple[np.ndarray, np.ndarray], last: int) -> None:
    """One image per time point from 0 to `last`, also where there are no positions, as CTC expects."""
    dtype = np.uint16 if label_count <= np.iinfo(np.uint16).max else np.uint32
    digits = max(3, len(str(last)))
    options = _tiff_options(tracking.voxel_size, dtype, shape[0] > 1)
    for time_point in range(last + 1):
        image = _paint(tracking.positions_at(time_point), labels, shape, ball, dtype,
                       symmetric_at_border=prefix == "man_track")
        tifffile.imwrite(folder / f"{prefix}{time_point:0{digits}d}.tif", image if shape[0] > 1 else image[0],
                         **options)


def _check_writable(tracking: Tracking, folder: Path) -> None:
    """Saving replaces the folder, so refuse a folder that holds anything but CTC tracking files."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; give a folder name for the CTC output")
    if folder.is_dir():
        others = [path.name for path in folder.iterdir()
                  if path.name not in (*TRACK_FILES, RESULT_FOR_ORGANOIDTRACKER) and not _LABEL_IMAGE.match(path.name)]
        if others:
            raise UserError(f"{folder}: holds other files ({', '.join(sorted(others)[:3])}); save the CTC output"
                            f" to a new or empty folder")
    if len(tracking) and tracking.time_points()[0] < 0:
        raise UserError(f"{folder}: the tracking has negative time points, which CTC files cannot hold;"
                        f" shift the time points first")


def _image_shape(image_shape_zyx: tuple[int, ...]) -> tuple[int, int, int]:
    """(Z, Y, X) of a (Z, Y, X) or (Y, X) shape."""
    if len(image_shape_zyx) not in (2, 3) or min(image_shape_zyx) < 1:
        raise UserError(f"image size {tuple(image_shape_zyx)} (z, y, x): give two or three sizes of at least 1 pixel")
    if math.prod(image_shape_zyx) > MAX_FRAME_VOXELS:
        raise UserError(f"image size {tuple(image_shape_zyx)} (z, y, x): more than {MAX_FRAME_VOXELS:,} voxels per "
                        f"label image; check the size (--shape is z y x) or give the images")
    return tuple(int(size) for size in (1,) * (3 - len(image_shape_zyx)) + tuple(image_shape_zyx))


def _one_position_per_voxel(tracking: Tracking, shape: tuple[int, int, int], folder: Path) -> Tracking:
    """The tracking without the positions that no label can hold: those whose nearest voxel lies outside the
    image, and all but the first of those that share a voxel. The lineage is kept: the position before a left-out
    one is linked to those after it (a link that skips a time point, written as a parent link)."""
    seen: set[tuple[int, int, int, int]] = set()
    left_out = {"outside the image": 0, "sharing a voxel with another position": 0}
    kept = Tracking(tracking.voxel_size, tracking.image_offsets)
    for position in tracking.positions():
        voxel = _centre_voxel(position)
        if not all(0 <= index < size for index, size in zip(voxel, shape)):
            left_out["outside the image"] += 1
        elif (*voxel, position.t) in seen:
            left_out["sharing a voxel with another position"] += 1
        else:
            seen.add((*voxel, position.t))
            kept.add_position(position)
    if len(kept) == len(tracking):
        return tracking
    for position in kept.positions():  # links, bridging left-out positions
        for later in _kept_future(tracking, kept, position):
            kept.add_link(position, later)
    warnings.warn(f"{folder}: " + " and ".join(f"{count} positions {why}" for why, count in left_out.items() if count)
                  + " are left out of the CTC labels (image size z, y, x = " + ", ".join(map(str, shape)) + ")",
                  stacklevel=4)
    return kept


def _kept_future(tracking: Tracking, kept: Tracking, position: Position) -> list[Position]:
    """The nearest kept positions after `position` along its links."""
    found, todo = [], list(tracking.future(position))
    while todo:
        later = todo.pop()
        if later in kept:
            found.append(later)
        else:
            todo.extend(tracking.future(later))
    return found


def marker_ball(voxel_size: VoxelSize | None, radius_um: float | None, radius_px: float | None, *,
                is_3d: bool, ground_truth: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The voxels painted around a position: offsets (n, 3) of a ball and their squared distances, ordered so
    that offset i = -offset n-1-i.

    The radius is `radius_um` (needs the voxel size) or `radius_px`. Without either: a result gets
    RESULT_RADIUS_UM where the voxel size is known (OrganoidTracker's), else RESULT_RADIUS_PX, with a warning;
    ground truth gets GROUND_TRUTH_RADIUS_PX in the xy plane of the position only (small markers inside the
    nucleus, which any result that finds the nucleus covers, like OrganoidTracker's 5 × 5 px squares)."""
    if radius_um is not None and radius_px is not None:
        raise UserError("give the radius of the CTC markers in µm or in pixels, not both")
    if radius_um is not None and voxel_size is None:
        raise UserError(f"a marker radius of {radius_um:g} µm needs the voxel size, which is unknown; give the "
                        f"voxel size (--voxel-size Z Y X, or images with a calibration) or the radius in pixels")
    if radius_um is None and radius_px is None:
        if ground_truth:
            return _ball(np.ones(3), GROUND_TRUTH_RADIUS_PX, is_3d=False)
        if voxel_size is not None:
            radius_um = RESULT_RADIUS_UM
        else:
            radius_px = RESULT_RADIUS_PX
            warnings.warn(f"the voxel size is unknown, so the CTC markers are balls of {RESULT_RADIUS_PX:g} pixels "
                          f"radius; give the voxel size or a radius (--radius-px, --radius-um) if that does not fit",
                          stacklevel=3)
    if radius_um is not None:
        return _ball(np.array(voxel_size.zyx_um(), dtype=float), radius_um, is_3d=is_3d)
    return _ball(np.ones(3), radius_px, is_3d=is_3d)


def _ball(scale: np.ndarray, radius: float, *, is_3d: bool) -> tuple[np.ndarray, np.ndarray]:
    """Offsets within `radius` (in the units of `scale`, the voxel size (z, y, x)) and their squared distances."""
    if not radius >= 0 or not np.all(scale[0 if is_3d else 1:] > 0):
        raise UserError(f"cannot paint CTC markers of radius {radius:g} with voxel size (z, y, x) "
                        f"{', '.join(f'{size:g}' for size in scale)}; give a radius ≥ 0 and a positive voxel size")
    half = [math.floor(radius / s + 1e-9) if radius / s < MAX_FRAME_VOXELS else MAX_FRAME_VOXELS for s in scale]
    if not is_3d:
        half[0] = 0
    if math.prod(2 * h + 1 for h in half) > _MAX_MARKER_VOXELS:
        raise UserError(f"CTC markers of radius {radius:g} (voxel size z, y, x = "
                        f"{', '.join(f'{size:g}' for size in scale)}) would each cover more than "
                        f"{_MAX_MARKER_VOXELS:,} voxels; give a radius of a nucleus (--radius-px, --radius-um)")
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
           ball: tuple[np.ndarray, np.ndarray], dtype: type, *, symmetric_at_border: bool) -> np.ndarray:
    """Label image of one time point: each position a ball, trimmed to be point symmetric (see module doc);
    without `symmetric_at_border` the part of a ball that the image border cuts off is not mirrored."""
    offsets, distances = ball
    centres = {_centre_voxel(position): position for position in positions}  # one each: _one_position_per_voxel
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
        symmetric = owned & (owned if symmetric_at_border else owned | ~inside)[::-1]
        image[tuple((np.array(centre) + offsets[symmetric]).T)] = labels[position]
    return image


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
