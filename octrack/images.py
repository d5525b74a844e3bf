"""Image sources: a time lapse read one time point at a time, so that movies larger than memory work.

Three layouts: a folder with one TIFF file per time point (and channel) named by a pattern (see
`octrack.patterns`); one multi-dimensional TIFF (ImageJ hyperstack, OME-TIFF, any tifffile series); or, through
bioio and its plugins (the extra `octrack[formats]`), an OME-Zarr folder or a microscope file (Nikon .nd2, Leica
.lif, Zeiss .czi), whose scene (series) the pattern names: a number from 1 or its name, as in OrganoidTracker.
Every read returns float32 (z, y, x); several channels are summed in floating point. In a pattern folder a
time point that lacks its file (or the file of one of its channels) is a gap: it is not in `time_points`.

Axes are tifffile's (or bioio's) letters for the data, with tifffile's length-1 dimensions left out. Inside a
file, 'S' (samples, e.g. RGB) counts as channels; one unknown dimension ('Q', 'I') is taken as the only axis
it can be (in a pattern folder: Z, else C), and anything else needs `axes` from the user, which also overrides
the letters of the metadata where they are wrong.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import xml.etree.ElementTree as ElementTree
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import tifffile

from octrack.errors import UserError
from octrack.image_filters import ImageFilters
from octrack.patterns import TIFF_SUFFIXES, FilePattern
from octrack.tracking.model import VoxelSize

log = logging.getLogger(__name__)

AXIS_LETTERS = "TZCYX"
_UNKNOWN_AXES = "QI"  # tifffile: 'other' (e.g. shaped files without axes) and 'image sequence'

# Inches are no unit of a calibration: 72 or 96 pixels per inch is what programs (MATLAB, PIL) write when they
# know no pixel size. So ImageJ's unit 'inch' and the TIFF ResolutionUnit inch (2) count as unknown, like
# ResolutionUnit NONE (1); centimetre (3) and tifffile's own millimetre (4) and micrometre (5) are trusted.
_LENGTH_UM = {"um": 1.0, "µm": 1.0, "μm": 1.0, "\\u00b5m": 1.0, "micron": 1.0, "microns": 1.0,
              "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}
_RESOLUTION_UNIT_UM = {3: 1e4, 4: 1e3, 5: 1.0}
_MAX_PIXEL_UM = 50.0  # x/y pixels larger than this are no microscope's: such metadata are wrong
_TIME_MINUTES = {"ms": 1 / 60000, "millisecond": 1 / 60000, "s": 1 / 60, "sec": 1 / 60, "second": 1 / 60,
                 "seconds": 1 / 60, "min": 1.0, "minute": 1.0, "minutes": 1.0, "h": 60.0, "hr": 60.0, "hour": 60.0,
                 "hours": 60.0}
FORMATS = ("octrack reads TIFF (folders of TIFF files, ImageJ hyperstacks, OME-TIFF) and, with the extra "
           "octrack[formats] (pip install 'octrack[formats]'), OME-Zarr (.zarr), Nikon .nd2, Leica .lif and Zeiss "
           ".czi files")


class ImageSource(ABC):
    """A time lapse of one or more channels, read lazily one time point at a time."""

    shape_zyx: tuple[int, int, int]  # Z = 1 for 2D+time
    time_points: list[int]  # sorted; those whose files exist, so a pattern folder may have gaps
    channel_count: int
    dtype: np.dtype  # as stored; reads are always float32
    voxel_size: VoxelSize | None
    _warned_of_non_finite = False  # NaN/inf pixels are reported once per source

    def read(self, time_point: int, channels: Sequence[int] | None = None,
             filters: ImageFilters | None = None) -> np.ndarray:
        """float32 (z, y, x) of one time point: channel 1, or the sum of `channels` (numbered from 1); each
        channel first passes through its OrganoidTracker image `filters`, in the number type it is stored in."""
        if time_point not in self.time_points:
            raise UserError(f"time point {time_point} requested but {self._absence(time_point)} ({self.describe()})")
        channels = [1] if channels is None else list(channels)
        if not channels:
            raise UserError(f"no channel requested; give one or more channels from 1 ({self.describe()})")
        for channel in channels:
            if not 1 <= channel <= self.channel_count:
                raise UserError(f"channel {channel} requested but the images have "
                                f"{_plural(self.channel_count, 'channel')} ({self.describe()})")
        indices = [channel - 1 for channel in channels]
        arrays = self._read_channels(time_point, indices)
        if filters:
            arrays = (filters.apply(array, time_point, index) for array, index in zip(arrays, indices))
        with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32: inf, handled below
            total = np.array(next(arrays), dtype=np.float32, order="C")
            for array in arrays:
                total += array
        return self._finite(total, time_point)

    def _finite(self, frame: np.ndarray, time_point: int) -> np.ndarray:
        """The frame with NaN as its lowest and ±inf as its lowest/highest finite value, with a warning once per
        source; a frame without any finite value cannot be read into anything meaningful and is refused."""
        finite = np.isfinite(frame)
        if finite.all():
            return frame
        where = f"{', '.join(map(str, self.source_files([time_point])))} (time point {time_point})"
        if not finite.any():
            raise UserError(f"{where}: no pixel has a finite value (all NaN or inf, or beyond float32's range); "
                            f"write the images again with finite values")
        low, high = frame[finite].min(), frame[finite].max()
        if not self._warned_of_non_finite:
            self._warned_of_non_finite = True
            log.warning(f"{where}: {frame.size - int(finite.sum()):,} pixel(s) are NaN or inf (first seen here); "
                        f"read as the frame's lowest finite value (NaN, -inf) or highest (inf)")
        return np.nan_to_num(frame, nan=low, posinf=high, neginf=low)

    def describe(self) -> str:
        """One line: what was found, e.g. for `octrack init` and error messages."""
        first, last = self.time_points[0], self.time_points[-1]
        times = (f"{len(self.time_points)} time points ({first}-{last})" if len(self.time_points) > 1
                 else f"1 time point ({first})")
        z, y, x = self.shape_zyx
        channels = _plural(self.channel_count, "channel")
        return f"{self._label()}: {times}, {channels}, z, y, x = {z}, {y}, {x}, {self.dtype.name}"

    def check_shapes(self, time_points: Iterable[int] | None = None) -> None:
        """Checks that the files of these time points (default: all) exist and hold images of the same shape.

        Reads headers only, no pixels. Files of other time points are not opened, so that a damaged or missing
        file outside the time points in use stops nothing."""

    def _absence(self, time_point: int) -> str:
        """Why a time point cannot be read, for `read`."""
        return "it is not in the images"

    @abstractmethod
    def source_files(self, time_points: Iterable[int]) -> list[Path]:
        """The existing files that hold these time points, each once: what a cache of them depends on."""

    @abstractmethod
    def _label(self) -> str:
        """Where the images are, for `describe`."""

    @abstractmethod
    def _read_channels(self, time_point: int, indices: list[int]) -> Iterator[np.ndarray]:
        """The (z, y, x) arrays of the channels with these 0-based indices, in any dtype."""


def tiff_voxel_size(path: Path, depth: int) -> VoxelSize | None:
    """The voxel size that the metadata of a TIFF file give for images of `depth` z slices, or None.

    The one reading of TIFF calibrations: image sources and label images (`octrack.tracking.ctc`) use it."""
    return _voxel_size(_inspect(path).calibration, depth)


def open_images(container: str | os.PathLike, pattern: str | None = None, axes: str | None = None) -> ImageSource:
    """The images in a folder of files named by `pattern`, in one TIFF file, or in a file or OME-Zarr folder
    that bioio reads.

    `container` is a folder with `pattern` a file name with {time} (and {channel}) fields, or with `pattern`
    the name of one file in it; or `container` is the file itself; or a file or OME-Zarr folder that bioio
    reads, with `pattern` its scene (empty: the first). `axes` (e.g. "TZYX") overrides the axes that the
    metadata declare, for files whose metadata are wrong.
    """
    container = Path(container)
    if not container.exists():
        raise UserError(f"image path {container} does not exist; give the folder of the images or a TIFF file")
    if is_container(container) or (container.is_file() and not container.name.lower().endswith(TIFF_SUFFIXES)):
        return BioioSource(container, pattern, axes)
    if not container.is_dir():
        if pattern:
            raise UserError(f"{container} is a file, so it needs no file name pattern (got '{pattern}'); "
                            f"leave the pattern empty, or give the folder of the files as container")
        return TiffFileSource(container, axes)
    if not pattern:
        raise UserError(f"{container} is a folder: give the file name pattern of its images, e.g. "
                        f"t{{time:03}}.tif (`octrack init` guesses it), or the name of one TIFF file in it")
    file_pattern = FilePattern(Path(pattern).name)
    folder = container / Path(pattern).parent
    if file_pattern.fields:
        return PatternSource(folder, file_pattern, axes)
    path = container / pattern
    if not path.is_file():
        raise UserError(f"image file {path} does not exist; a pattern without {{time}} names one TIFF file")
    return TiffFileSource(path, axes)


def is_container(path: Path) -> bool:
    """Whether a folder is one image (OME-Zarr) rather than a folder of image files."""
    return path.is_dir() and (path.suffix.lower() == ".zarr" or any(
        (path / name).exists() for name in ("zarr.json", ".zattrs", ".zgroup")))


class BioioSource(ImageSource):
    """A file or OME-Zarr folder read through bioio: one scene, each read decoding only the chunks (planes) of
    the time point and channels asked for."""

    def __init__(self, path: Path, scene: str | None = None, axes: str | None = None):
        self.path = path
        image = _open_bioimage(path)
        self.scene = _choose_scene(image, path, scene)
        self._data, order = _samples_as_channels(image.reader.dask_data, image.reader.dims.order)
        dtype = np.dtype(self._data.dtype)
        series = _Series(axes=order, shape=tuple(self._data.shape), dtype=dtype, stored_dtype=dtype,
                         data_offset=None, page_ndim=2, calibration=None)
        self.axes = _resolve_axes(path, series, axes, one_time_point=False)
        sizes = dict(zip(self.axes, self._data.shape))
        self.shape_zyx = (sizes.get("Z", 1), sizes["Y"], sizes["X"])
        self.time_points = list(range(sizes.get("T", 1)))
        self.channel_count = sizes.get("C", 1)
        self.dtype = np.dtype(self._data.dtype)
        self.voxel_size = _voxel_size(_bioio_calibration(image, path), self.shape_zyx[0])

    def _label(self) -> str:
        scene = f", scene {self.scene}" if self.scene else ""
        return f"{self.path.name} through bioio ({self.path}{scene}, axes {self.axes})"

    def source_files(self, time_points: Iterable[int]) -> list[Path]:
        return [self.path]

    def _read_channels(self, time_point: int, indices: list[int]) -> Iterator[np.ndarray]:
        view = _to_czyx(_select_time(self._data, self.axes, time_point), self.axes.replace("T", ""))
        for index in indices:
            try:
                yield np.asarray(view[index].compute())
            except Exception as error:  # the plugins raise what their decoders raise
                raise UserError(f"cannot read time point {time_point} of {self.path}: {error}; the file is "
                                f"damaged or incomplete") from None


def _samples_as_channels(data: Any, order: str) -> tuple[Any, str]:
    """bioio's 'S' (samples, e.g. RGB) as channels, where the data have no channels beside them."""
    if "S" not in order or ("C" in order and data.shape[order.index("C")] > 1):
        return data, order
    if "C" in order:
        data = data[(slice(None),) * order.index("C") + (0,)]
        order = order.replace("C", "")
    return data, order.replace("S", "C")


def _open_bioimage(path: Path) -> Any:
    try:
        from bioio import BioImage
        from bioio_base.exceptions import UnsupportedFileFormatError
    except ImportError:
        raise UserError(f"cannot read {path}: not a TIFF file, and bioio is not installed; {FORMATS}") from None
    try:
        return BioImage(path)
    except UnsupportedFileFormatError:
        kind = "folder" if path.is_dir() else f"{path.suffix or 'extension-less'} file"
        raise UserError(f"cannot read {path}: no installed reader takes this {kind}; {FORMATS}") from None
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise UserError(f"cannot read {path}: {error}; the file is damaged or incomplete, or not what its name "
                        f"says") from None


def _choose_scene(image: Any, path: Path, scene: str | None) -> str | None:
    """Selects the scene (series, position) named by a number from 1 or by its name; None: the first."""
    scenes = list(image.scenes)
    if scene is None or not str(scene).strip():
        return scenes[0] if len(scenes) > 1 else None
    text = str(scene).strip()
    index = int(text) - 1 if text.isdigit() else scenes.index(text) if text in scenes else None
    if index is None or not 0 <= index < len(scenes):
        names = ", ".join(f"{number} ({name})" for number, name in enumerate(scenes[:10], 1))
        raise UserError(f"{path} has no scene '{text}'; give a number from 1 to {len(scenes)} or a name: {names}")
    image.set_scene(index)
    return scenes[index]


def _bioio_calibration(image: Any, path: Path) -> _Calibration | None:
    """Voxel size (bioio gives µm) and time interval (a timedelta, or a number in the time axis' unit)."""
    try:
        sizes = image.physical_pixel_sizes
        interval = image.time_interval
    except Exception as error:  # metadata a plugin cannot parse must not stop the pixels from being read
        log.warning(f"{path}: cannot read the voxel size from the metadata ({error}); set it in the ini")
        return None
    if not sizes.X or not sizes.Y:
        return None
    minutes = None
    if hasattr(interval, "total_seconds"):
        minutes = interval.total_seconds() / 60
    elif interval:
        unit = getattr(getattr(getattr(image, "dimension_properties", None), "T", None), "unit", None)
        per_unit = _TIME_MINUTES.get(str(unit).lower()) if unit is not None else None
        minutes = float(interval) * per_unit if per_unit else None
    return _Calibration(float(sizes.X), float(sizes.Y), float(sizes.Z) if sizes.Z else None, minutes)


class TiffFileSource(ImageSource):
    """One TIFF file with all time points: an ImageJ hyperstack, an OME-TIFF, or any tifffile series."""

    def __init__(self, path: Path, axes: str | None = None):
        self.path = path
        self._series = _inspect(path)
        self.axes = _resolve_axes(path, self._series, axes, one_time_point=False)
        sizes = dict(zip(self.axes, self._series.shape))
        self.shape_zyx = (sizes.get("Z", 1), sizes["Y"], sizes["X"])
        self.time_points = list(range(sizes.get("T", 1)))
        self.channel_count = sizes.get("C", 1)
        self.dtype = self._series.dtype
        self.voxel_size = _voxel_size(self._series.calibration, self.shape_zyx[0])

    def _label(self) -> str:
        return f"TIFF file {self.path} (axes {self.axes})"

    def source_files(self, time_points: Iterable[int]) -> list[Path]:
        return [self.path]

    def _read_channels(self, time_point: int, indices: list[int]) -> Iterator[np.ndarray]:
        data = self._read_time_point(time_point)
        yield from (data[index] for index in indices)

    def _read_time_point(self, time_point: int) -> np.ndarray:
        """(c, z, y, x) in the stored dtype; only this time point's data are read from the file."""
        series = self._series
        with _reading(self.path):
            if series.data_offset is not None:  # uncompressed and contiguous: map, read only what is used
                mapped = np.memmap(self.path, dtype=series.stored_dtype, mode="r", offset=series.data_offset,
                                   shape=series.shape)
                return _to_czyx(_select_time(mapped, self.axes, time_point), self.axes.replace("T", ""))
            with tifffile.TiffFile(self.path) as tif:
                data, axes = _read_pages(tif.series[0], self.axes, series, time_point)
        return _to_czyx(data, axes)


class PatternSource(ImageSource):
    """A folder of TIFF files, one per time point (and per channel if the pattern has {channel})."""

    def __init__(self, folder: Path, pattern: FilePattern, axes: str | None = None):
        self.folder = folder
        self.pattern = pattern
        self._file_per_channel = "channel" in pattern.fields
        self._files = self._scan()
        self._channels = sorted({channel for _, channel in self._files})  # as numbered in the file names
        self.time_points = self._complete_time_points()
        self._first_path = self._path(*min(self._files))
        self._series = _inspect(self._first_path)
        self.axes = _resolve_axes(self._first_path, self._series, axes, one_time_point=True)
        sizes = dict(zip(self.axes, self._series.shape))
        if self._file_per_channel and sizes.get("C", 1) > 1:
            raise UserError(f"{self._first_path} has {sizes['C']} channels but the pattern {pattern.text} has "
                            f"a {{channel}} field; remove {{channel}} from the pattern or store one channel "
                            f"per file")
        self.shape_zyx = (sizes.get("Z", 1), sizes["Y"], sizes["X"])
        self.channel_count = (self._channels[-1] - self._channels[0] + 1 if self._file_per_channel
                              else sizes.get("C", 1))
        self.dtype = self._series.dtype
        self.voxel_size = _voxel_size(self._series.calibration, self.shape_zyx[0])

    def _label(self) -> str:
        return f"pattern folder {self.folder / self.pattern.text}"

    def source_files(self, time_points: Iterable[int]) -> list[Path]:
        keys = dict.fromkeys((time_point, channel) for time_point in time_points for channel in self._channels)
        return [self._path(*key) for key in keys if key in self._files]

    def _scan(self) -> set[tuple[int, int]]:
        """(time, channel) of every file that the pattern names; a field that the pattern lacks is 0."""
        try:
            with os.scandir(self.folder) as entries:
                matches = [self.pattern.match(entry.name) for entry in entries]
        except OSError as error:
            raise UserError(f"cannot list image folder {self.folder}: {error.strerror}") from None
        files = {(found.get("time", 0), found.get("channel", 0)) for found in matches if found is not None}
        if not files:
            raise UserError(f"no file in {self.folder} matches the pattern {self.pattern.text}; check the "
                            f"pattern against the file names (`octrack init` guesses it)")
        return files

    def _complete_time_points(self) -> list[int]:
        """The time points with a file for every channel that the folder has: a time point that lacks a file
        is a gap in the movie, not a time point whose reads fail."""
        times = sorted({time for time, _ in self._files})
        complete = [time for time in times if all((time, channel) in self._files for channel in self._channels)]
        if not complete:
            raise UserError(f"no time point in {self.folder} has a file for every channel "
                            f"{', '.join(map(str, self._channels))} of the pattern {self.pattern.text}; "
                            f"add the missing files, or check the pattern against the file names")
        return complete

    def _path(self, time_point: int, channel: int) -> Path:
        return self.folder / self.pattern.format(time=time_point, channel=channel)

    def _existing_path(self, time_point: int, channel: int) -> Path:
        """The file of a time point and channel (as numbered in the file names; 0 without {channel})."""
        path = self._path(time_point, channel)
        if (time_point, channel) not in self._files:
            raise UserError(f"image file {path} is missing: the pattern {self.pattern.text} expects it for "
                            f"time point {time_point} (files exist for time points "
                            f"{self.time_points[0]}-{self.time_points[-1]})")
        return path

    def _absence(self, time_point: int) -> str:
        """A gap (inside the movie, or with the files of some channels only) names a missing file."""
        missing = [self._path(time_point, channel) for channel in self._channels
                   if (time_point, channel) not in self._files]
        if self.time_points[0] < time_point < self.time_points[-1] or len(missing) < len(self._channels):
            return f"image file {missing[0]} is missing"
        return super()._absence(time_point)

    def _read_channels(self, time_point: int, indices: list[int]) -> Iterator[np.ndarray]:
        if self._file_per_channel:
            paths = (self._existing_path(time_point, self._channels[0] + index) for index in indices)
            yield from (self._read_file(path)[0] for path in paths)
        else:
            data = self._read_file(self._existing_path(time_point, 0))
            yield from (data[index] for index in indices)

    def _read_file(self, path: Path) -> np.ndarray:
        """(c, z, y, x) in the stored dtype."""
        with _reading(path), tifffile.TiffFile(path) as tif:
            series = _first_series(tif)
            self._check_shape(path, tuple(series.shape))
            _real_dtype(path, series)
            data = series.asarray()
        return _to_czyx(data, self.axes)

    def _check_shape(self, path: Path, shape: tuple[int, ...]) -> None:
        """All files of the movie have the shape of the first; where one differs, a third file says which of
        the two is the odd one, so that the message blames the damaged file, not its healthy neighbour."""
        if shape == self._series.shape:
            return
        odd, odd_shape, usual, usual_shape = path, shape, self._first_path, self._series.shape
        third = next((self._path(*key) for key in sorted(self._files)
                      if self._path(*key) not in (path, self._first_path)), None)
        if third is not None and _inspect(third).shape == shape:
            odd, odd_shape, usual, usual_shape = self._first_path, self._series.shape, path, shape
        raise UserError(f"image file {odd} has shape {odd_shape} but {usual} has shape {usual_shape}; all files "
                        f"of a time lapse must have the same shape")

    def check_shapes(self, time_points: Iterable[int] | None = None) -> None:
        for time_point in self.time_points if time_points is None else time_points:
            for channel in self._channels:
                path = self._existing_path(time_point, channel)
                with _reading(path), tifffile.TiffFile(path) as tif:
                    series = _first_series(tif)
                    _check_complete(path, series)
                    _real_dtype(path, series)
                    self._check_shape(path, tuple(series.shape))


class _Calibration(NamedTuple):
    x_um: float
    y_um: float
    z_um: float | None
    t_minutes: float | None


@dataclass(frozen=True)
class _Series:
    """What the header of a TIFF file says about its first series."""

    axes: str  # tifffile's letters
    shape: tuple[int, ...]
    dtype: np.dtype  # native byte order
    stored_dtype: np.dtype  # with the file's byte order
    data_offset: int | None  # where the data start, if uncompressed and contiguous
    page_ndim: int  # the last page_ndim dimensions are stored in one TIFF page
    calibration: _Calibration | None


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turns the errors of a missing, damaged or non-TIFF file into a UserError that names it."""
    try:
        with reading_tiff(path):
            yield
    # TiffFileError is a ValueError; damaged compressed data raise zlib.error or imagecodecs' RuntimeErrors
    except (OSError, ValueError, EOFError, RuntimeError, zlib.error) as error:
        fix = ("install it: pip install imagecodecs" if "imagecodecs" in str(error)
               else "the file is damaged, incomplete or not a TIFF")
        raise UserError(f"cannot read TIFF file {path}: {error}; {fix}") from None


_TIFFFILE_OBJECT = re.compile(r"<tifffile\.[^>]*> ?")  # the object tifffile names in its log lines


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def reading_tiff(path: Path) -> Iterator[None]:
    """Keeps tifffile's own log lines off the user's screen and makes its errors ours: tifffile logs an error
    and carries on where a file is truncated or its metadata contradict its data (an ImageJ hyperstack cut short
    reads as one 2D frame), so such a file is refused here, by name, instead of read wrong. Its warnings (odd but
    readable files) are shown with -v only."""
    logger = logging.getLogger("tifffile")
    collected, propagate = _Collected(), logger.propagate
    logger.addHandler(collected)
    logger.propagate = False
    try:
        yield
    finally:  # tifffile's error explains any other that followed from it (e.g. a shape that seems wrong)
        logger.removeHandler(collected)
        logger.propagate = propagate
        for record in collected.records:
            log.debug(f"{path}: tifffile: {record.getMessage()}")
        errors = [_TIFFFILE_OBJECT.sub("", record.getMessage()) for record in collected.records
                  if record.levelno >= logging.ERROR]
        if errors:
            raise UserError(f"cannot read TIFF file {path}: it is truncated or damaged, or its metadata contradict "
                            f"its data (tifffile: {errors[-1]}); write the file again") from None


def _first_series(tif: tifffile.TiffFile) -> tifffile.TiffPageSeries:
    if not tif.series:
        raise UserError(f"cannot read TIFF file {tif.filehandle.path}: it contains no images; the file is "
                        f"damaged or holds no image data")
    return tif.series[0]


def _inspect(path: Path) -> _Series:
    with _reading(path), tifffile.TiffFile(path) as tif:
        series = _first_series(tif)
        dtype = _real_dtype(path, series)
        _check_complete(path, series)
        return _Series(axes=series.axes, shape=tuple(series.shape), dtype=dtype.newbyteorder("="),
                       stored_dtype=dtype.newbyteorder(tif.byteorder), data_offset=series.dataoffset,
                       page_ndim=len(series.keyframe.shape), calibration=_calibration(tif, path))


def _real_dtype(path: Path, series: tifffile.TiffPageSeries) -> np.dtype:
    """The series' number type; complex numbers are no intensities (their imaginary part would be dropped)."""
    dtype = np.dtype(series.dtype)
    if dtype.kind not in "biuf":
        raise UserError(f"cannot read TIFF file {path}: it holds {dtype.name} values, not intensities; write the "
                        f"images as whole or real numbers")
    return dtype


def _check_complete(path: Path, series: tifffile.TiffPageSeries) -> None:
    """Refuses a file too short for the data its header declares (uncompressed data stored in one piece, which
    would otherwise be read from beyond the file's end)."""
    if series.dataoffset is None:
        return
    needed = series.dataoffset + math.prod(series.shape) * np.dtype(series.dtype).itemsize
    size = path.stat().st_size
    if needed > size:
        raise UserError(f"cannot read TIFF file {path}: it is truncated ({size:,} bytes, its header declares "
                        f"{needed:,}); copy or write the file again")


def _resolve_axes(path: Path, series: _Series, override: str | None, *, one_time_point: bool) -> str:
    """The axes of the data as letters from TZCYX: the user's, else interpreted from tifffile's."""
    axes = _check_override(path, series, override) if override else _interpret(path, series, one_time_point)
    if one_time_point and "T" in axes:
        raise UserError(f"{path} has a time axis (axes {axes}, shape {series.shape}) but the file name pattern "
                        f"already gives one file per time point; open the file itself, without a pattern, "
                        f"or give axes without T")
    return axes


def _check_override(path: Path, series: _Series, override: str) -> str:
    axes = override.strip().upper()
    if (len(axes) != len(series.shape) or set(axes) - set(AXIS_LETTERS) or len(set(axes)) != len(axes)
            or not {"Y", "X"} <= set(axes)):
        raise UserError(f"axes '{override}' do not fit {path}: its data have shape {series.shape} (metadata "
                        f"axes {series.axes}); give {len(series.shape)} letters from T, Z, C, Y, X, one per "
                        f"dimension, each at most once, including Y and X")
    return axes


def _interpret(path: Path, series: _Series, one_time_point: bool) -> str:
    axes = series.axes.replace("S", "C") if "C" not in series.axes else series.axes
    unknown = [letter for letter in axes if letter not in AXIS_LETTERS]
    if len(unknown) == 1 and unknown[0] in _UNKNOWN_AXES and (meaning := _unknown_axis(axes, one_time_point)):
        axes = axes.replace(unknown[0], meaning)
    if set(axes) - set(AXIS_LETTERS) or len(set(axes)) != len(axes) or not {"Y", "X"} <= set(axes):
        raise UserError(f"cannot tell what the dimensions of {path} are: its data have shape {series.shape} "
                        f"and tifffile reads the axes as {series.axes}; set the image axes to "
                        f"{len(series.shape)} letters from T, Z, C, Y, X, one per dimension (e.g. TZYX)")
    return axes


def _unknown_axis(axes: str, one_time_point: bool) -> str | None:
    """What one unknown dimension must be; None when it could be T or Z, or nothing is left."""
    free = [letter for letter in ("ZC" if one_time_point else "TZ") if letter not in axes]
    if one_time_point:  # the file of one time point: a z stack, else channels
        return free[0] if free else None
    return free[0] if len(free) == 1 else None


def _select_time(data: np.ndarray, axes: str, time_point: int) -> np.ndarray:
    """The view of one time point (`data` itself when the axes have no T)."""
    if "T" not in axes:
        return data
    return data[(slice(None),) * axes.index("T") + (time_point,)]


def _read_pages(series: tifffile.TiffPageSeries, axes: str, info: _Series, time_point: int
                ) -> tuple[np.ndarray, str]:
    """The data of one time point and their axes, decoding only the TIFF pages that hold it."""
    lead = len(info.shape) - info.page_ndim
    page_numbers = np.arange(math.prod(info.shape[:lead])).reshape(info.shape[:lead])
    pages = _select_time(page_numbers, axes[:lead], time_point)
    data = series.asarray(key=pages.ravel().tolist()).reshape(pages.shape + info.shape[lead:])
    rest = axes[:lead].replace("T", "") + axes[lead:]
    return _select_time(data, rest, time_point), rest.replace("T", "")


def _to_czyx(data: np.ndarray, axes: str) -> np.ndarray:
    """A view with axes (c, z, y, x) of data whose axes are some of Z, C, Y, X."""
    for letter in "CZ":
        if letter not in axes:
            data, axes = data[np.newaxis], letter + axes
    return data.transpose([axes.index(letter) for letter in "CZYX"])


def _calibration(tif: tifffile.TiffFile, path: Path) -> _Calibration | None:
    """Voxel size from OME metadata, else from the resolution tags (with ImageJ's unit and z spacing); None
    where they give no length unit or pixels too large to be meant (then with a warning)."""
    calibration = _ome_calibration(tif.ome_metadata) or _tiff_calibration(tif.pages[0], tif.imagej_metadata or {})
    if calibration is not None and max(calibration.x_um, calibration.y_um) > _MAX_PIXEL_UM:
        log.warning(f"{path}: the TIFF metadata give pixels of y, x = {calibration.y_um:g}, {calibration.x_um:g} µm, "
                    f"larger than any microscope's, so the pixel size is taken as unknown; set it in the ini "
                    f"(pixel_size_x_um and the others) if it is needed")
        return None
    return calibration


def _ome_calibration(xml: str | None) -> _Calibration | None:
    if not xml:
        return None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((element for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None

    def size_um(axis: str) -> float | None:
        value = pixels.get(f"PhysicalSize{axis}")
        unit = _LENGTH_UM.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        return float(value) * unit if value and unit else None

    x, y = size_um("X"), size_um("Y")
    increment, minutes = pixels.get("TimeIncrement"), _TIME_MINUTES.get(pixels.get("TimeIncrementUnit", "s"))
    if x is None or y is None:
        return None
    return _Calibration(x, y, size_um("Z"), float(increment) * minutes if increment and minutes else None)


def _tiff_calibration(page: tifffile.TiffPage, imagej: dict) -> _Calibration | None:
    """From XResolution/YResolution (pixels per unit); ImageJ's 'unit' replaces the ResolutionUnit tag. Only
    a length unit counts (see _LENGTH_UM and _RESOLUTION_UNIT_UM)."""
    if "unit" in imagej:
        unit_um = _LENGTH_UM.get(str(imagej["unit"]).lower())
    else:
        unit_um = _RESOLUTION_UNIT_UM.get(int(page.resolutionunit))
    x_resolution, y_resolution = page.resolution
    if unit_um is None or not x_resolution or not y_resolution:
        return None
    spacing = imagej.get("spacing")
    interval, minutes = imagej.get("finterval"), _TIME_MINUTES.get(str(imagej.get("tunit", "sec")).lower())
    return _Calibration(unit_um / x_resolution, unit_um / y_resolution, spacing * unit_um if spacing else None,
                        interval * minutes if interval and minutes else None)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _voxel_size(calibration: _Calibration | None, depth: int) -> VoxelSize | None:
    """None unless x, y and (for 3D) z are known; 2D images without z spacing get z = x."""
    if calibration is None:
        return None
    z_um = calibration.z_um if calibration.z_um is not None else (calibration.x_um if depth == 1 else None)
    if z_um is None:
        return None
    return VoxelSize(calibration.x_um, calibration.y_um, z_um, calibration.t_minutes)
