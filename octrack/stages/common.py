"""What several stages share: the time range and the z, y, x values of a command line, and the geometry of the
images that results must match."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from octrack.errors import UserError
from octrack.images import ImageSource, is_container, open_images
from octrack.patterns import guess_pattern
from octrack.tracking.ctc import ctc_geometry, is_ctc_folder
from octrack.tracking.model import Tracking, VoxelSize

TimeRange = tuple[int | None, int | None]  # first and last time point, both included; None leaves an end open


def parse_time_range(text: str) -> TimeRange:
    """"A:B" (both included), "A:", ":B" or one time point "T" as (first, last); None leaves an end open."""
    first, colon, last = text.strip().partition(":")
    try:
        bounds = (int(first) if first.strip() else None,
                  (int(last) if last.strip() else None) if colon else int(first))
    except ValueError:
        bounds = None
    if bounds is None or (bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]):
        raise UserError(f"--time-points {text!r}: expected A:B (A <= B, both included), A:, :B or one time "
                        f"point T")
    return bounds


def ground_truth_time_points(ground_truth: Tracking, path: Path, time_range: str | None, purpose: str) -> list[int]:
    """The time points of the ground truth with positions, within `--time-points` where given (`purpose`: what
    the command needs them for, for the message when there are none)."""
    available = ground_truth.time_points()
    if not available:
        raise UserError(f"ground truth {path} has no positions; there is nothing to {purpose}")
    if time_range is None:
        return available
    first, last = parse_time_range(time_range)
    selected = [t for t in available if (first is None or t >= first) and (last is None or t <= last)]
    if not selected:
        raise UserError(f"--time-points {time_range}: the ground truth {path} has no positions there; it has "
                        f"time points {available[0]}-{available[-1]}")
    return selected


def format_time_range(time_range: TimeRange) -> str:
    first, last = time_range
    return f"{'' if first is None else first}:{'' if last is None else last}"


# The axis order of the command line: z, y, x, as napari, OME-NGFF, GEFF and the CTC write it (the ini keeps
# OrganoidTracker's x, y, z). Three values are read in that order, or labelled in any order (x=0.32 y=0.32 z=2).
AXES = ("z", "y", "x")


def parse_zyx(values: list[str], option: str, *, whole: bool = False) -> tuple[float, float, float]:
    """(z, y, x) of an option's three values: numbers in the order z y x, or `z=… y=… x=…` in any order."""
    example = "2 0.32 0.32" if not whole else "16 128 128"
    usage = (f"{option} {' '.join(values)}: give three {'whole numbers' if whole else 'numbers'} in the order "
             f"z y x (e.g. {option} {example}), or label them: {option} "
             f"{' '.join(f'{axis}={value}' for axis, value in zip(AXES, example.split()))}")
    labelled = dict(value.partition("=")[::2] for value in values if "=" in value)
    if labelled and (len(labelled) != 3 or set(labelled) != set(AXES)):
        raise UserError(usage)
    texts = [labelled[axis] for axis in AXES] if labelled else values
    try:
        numbers = tuple(int(text) if whole else float(text) for text in texts)
    except ValueError:
        raise UserError(usage) from None
    if len(numbers) != 3 or not all(0 < number < float("inf") for number in numbers):
        raise UserError(f"{usage}; each above 0")
    return numbers if labelled else _unambiguous(numbers, option, whole=whole)


def _unambiguous(zyx: tuple, option: str, *, whole: bool) -> tuple:
    """Three unlabelled values that read as x, y, z far better than as z, y, x stop with the fix in the message:
    a size of 1 in x or y under a depth above 1 (a 2D image written x y z), or a voxel size whose y and x differ
    where z equals y (square pixels written x y z)."""
    z, y, x = zyx
    looks_reversed = (min(y, x) == 1 < z) if whole else (z == y != x)
    if not looks_reversed:
        return zyx
    shown = " ".join(f"{value:g}" for value in zyx)
    flipped = " ".join(f"{value:g}" for value in zyx[::-1])
    raise UserError(f"{option} {shown} is read as z, y, x = {', '.join(f'{v:g}' for v in zyx)}, which looks like x, "
                    f"y, z; octrack's command line takes z y x (as napari and the CTC): write {option} {flipped}, "
                    f"or label the values to keep them: {option} z={z:g} y={y:g} x={x:g}")


@dataclass(frozen=True)
class ImageGeometry:
    """What CTC labels must match: the images' size (z, y, x), their number of frames and their voxel size."""

    shape_zyx: tuple[int, int, int]
    frame_count: int | None
    voxel_size: VoxelSize | None


def image_geometry(images: Path | None, shape_zyx: tuple[int, int, int] | None) -> ImageGeometry | None:
    """The geometry of `images` (a time lapse that octrack reads, or a CTC folder of the same movie), or of a
    size given as `shape_zyx` (frames and voxel size then unknown); None without either."""
    if images is not None and shape_zyx is not None:
        raise UserError("give the images (--images) or their size (--shape), not both")
    if shape_zyx is not None:
        return ImageGeometry(shape_zyx, None, None)
    if images is None:
        return None
    if is_ctc_folder(images):
        return ImageGeometry(*ctc_geometry(images))
    source = open_images_guessing_pattern(images)
    return ImageGeometry(source.shape_zyx, source.time_points[-1] + 1, source.voxel_size)


def open_images_guessing_pattern(images: Path, pattern: str | None = None) -> ImageSource:
    """The images of a file or folder; a folder of TIFFs without `pattern` gets its pattern guessed."""
    if pattern is None and images.is_dir() and not is_container(images):
        pattern = guess_pattern(images)[0]
    return open_images(images, pattern)
