"""Image sources: pattern folders and multi-dimensional TIFFs, read lazily as float32; file name patterns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.errors import UserError
from octrack.images import open_images
from octrack.patterns import FilePattern, guess_pattern
from octrack.tracking.model import VoxelSize
from tests.helpers import real_data

RNG = np.random.default_rng(7)


def random_image(shape: tuple[int, ...], dtype: str = "uint16") -> np.ndarray:
    return RNG.integers(0, 1000, size=shape).astype(dtype)


def write_folder(folder: Path, pattern: str, times: range, channels: range | None, shape: tuple[int, ...],
                 **kwargs) -> dict[tuple[int, int], np.ndarray]:
    """One file per time point (and channel); returns the data by (time, channel)."""
    folder.mkdir(exist_ok=True)
    written = {}
    for time in times:
        for channel in channels or [0]:
            written[time, channel] = random_image(shape)
            tifffile.imwrite(folder / FilePattern(pattern).format(time=time, channel=channel),
                             written[time, channel], **kwargs)
    return written


# Pattern folders

def test_pattern_folder_one_based_time_and_channel(tmp_path):
    data = write_folder(tmp_path, "nd799xy08t{time:03}c{channel}.tif", range(1, 4), range(1, 3), (5, 6, 7),
                        metadata={"axes": "ZYX"})
    images = open_images(tmp_path, "nd799xy08t{time:03}c{channel}.tif")
    assert images.time_points == [1, 2, 3]
    assert images.channel_count == 2
    assert images.shape_zyx == (5, 6, 7)
    assert images.dtype == np.uint16
    assert images.voxel_size is None
    frame = images.read(2, [2])
    assert frame.dtype == np.float32 and frame.shape == (5, 6, 7)
    np.testing.assert_array_equal(frame, data[2, 2])
    np.testing.assert_array_equal(images.read(3), data[3, 1])
    assert images.describe() == (f"pattern folder {tmp_path}/nd799xy08t{{time:03}}c{{channel}}.tif: "
                                 f"3 time points (1-3), 2 channels, z, y, x = 5, 6, 7, uint16")


def test_pattern_folder_zero_based_time_and_channel(tmp_path):
    data = write_folder(tmp_path, "t{time}_ch{channel:02}.tif", range(0, 12), range(0, 2), (4, 5))
    images = open_images(tmp_path, "t{time}_ch{channel:02}.tif")
    assert images.time_points == list(range(12))
    assert images.channel_count == 2
    assert images.shape_zyx == (1, 4, 5)
    np.testing.assert_array_equal(images.read(0, [1])[0], data[0, 0])  # channel 1 = the file's channel 0
    np.testing.assert_array_equal(images.read(11, [2])[0], data[11, 1])


def test_width_without_zero_means_zero_padding(tmp_path):
    write_folder(tmp_path, "t{time:04}.tif", range(3), None, (4, 5))
    images = open_images(tmp_path, "t{time:4}.tif")
    assert images.time_points == [0, 1, 2]


def test_pattern_folder_of_stacks_without_axes_metadata(tmp_path):
    """tifffile calls the first axis of a plain 3D array 'Q' (unknown): in a file per time point it is z."""
    data = write_folder(tmp_path, "img_{time:03}.tif", range(2), None, (6, 4, 5))
    images = open_images(tmp_path, "img_{time:03}.tif")
    assert images.shape_zyx == (6, 4, 5)
    assert images.channel_count == 1
    np.testing.assert_array_equal(images.read(1), data[1, 0])


def test_pattern_folder_files_with_channel_axis(tmp_path):
    data = write_folder(tmp_path, "t{time}.tif", range(2), None, (5, 2, 4, 3), metadata={"axes": "ZCYX"})
    images = open_images(tmp_path, "t{time}.tif")
    assert images.channel_count == 2
    assert images.shape_zyx == (5, 4, 3)
    np.testing.assert_array_equal(images.read(1, [1, 2]), data[1, 0].sum(axis=1))


def test_channel_sum_is_computed_in_float(tmp_path):
    for channel in (1, 2):
        tifffile.imwrite(tmp_path / f"t0c{channel}.tif", np.full((3, 4), 200, np.uint8))
    images = open_images(tmp_path, "t{time}c{channel}.tif")
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(images.read(0, [1, 2]), np.full((1, 3, 4), 400.0, np.float32))


@pytest.mark.parametrize("values", [np.array([[-32768, -5], [0, 32767]], np.int16),
                                    np.array([[0, 1], [65535, 40000]], np.uint16),
                                    np.array([[-1.5, 0.25], [3e-8, 1e30]], np.float32)])
def test_dtypes_convert_to_float32_exactly(tmp_path, values):
    tifffile.imwrite(tmp_path / "t0.tif", values)
    frame = open_images(tmp_path, "t{time}.tif").read(0)
    assert frame.dtype == np.float32
    np.testing.assert_array_equal(frame[0], values.astype(np.float32))


def test_big_endian_file_reads_the_right_values(tmp_path):
    values = np.arange(-6, 6, dtype=np.int16).reshape(3, 2, 2)
    tifffile.imwrite(tmp_path / "movie.tif", values, byteorder=">", photometric="minisblack",
                     metadata={"axes": "TYX"})
    np.testing.assert_array_equal(open_images(tmp_path / "movie.tif").read(2)[0], values[2])


def test_missing_time_point_file_is_a_gap(tmp_path):
    write_folder(tmp_path, "t{time:03}.tif", range(4), None, (4, 5))
    (tmp_path / "t002.tif").unlink()
    images = open_images(tmp_path, "t{time:03}.tif")
    assert images.time_points == [0, 1, 3]
    assert images.describe().endswith("3 time points (0-3), 1 channel, z, y, x = 1, 4, 5, uint16")
    with pytest.raises(UserError, match=f"time point 2 requested but image file {tmp_path / 't002.tif'} is missing"):
        images.read(2)
    with pytest.raises(UserError, match="time point 4 requested but it is not in the images"):
        images.read(4)
    images.check_shapes()
    with pytest.raises(UserError, match="t002.tif is missing"):
        images.check_shapes([1, 2])


def test_check_shapes_opens_only_the_files_of_the_given_time_points(tmp_path):
    write_folder(tmp_path, "t{time}c{channel}.tif", range(4), range(1, 3), (4, 5))
    (tmp_path / "t3c2.tif").write_bytes(b"damaged")
    images = open_images(tmp_path, "t{time}c{channel}.tif")
    images.check_shapes([0, 1, 2])
    with pytest.raises(UserError, match="cannot read TIFF file .*t3c2.tif"):
        images.check_shapes()


def test_source_files_are_the_existing_files_of_the_time_points(tmp_path):
    write_folder(tmp_path, "t{time}c{channel}.tif", range(3), range(1, 3), (4, 5))
    (tmp_path / "t1c2.tif").unlink()
    images = open_images(tmp_path, "t{time}c{channel}.tif")
    assert images.source_files([0, 1, 1]) == [tmp_path / name for name in ("t0c1.tif", "t0c2.tif", "t1c1.tif")]
    write_hyperstack(tmp_path / "movie.tif")
    assert open_images(tmp_path / "movie.tif").source_files([0, 1]) == [tmp_path / "movie.tif"]


def test_missing_channel_file_names_the_path(tmp_path):
    """A time point counts only where the files of all channels exist."""
    write_folder(tmp_path, "t{time}c{channel}.tif", range(3), range(1, 3), (4, 5))
    (tmp_path / "t1c2.tif").unlink()
    (tmp_path / "t2c1.tif").unlink()
    images = open_images(tmp_path, "t{time}c{channel}.tif")
    assert images.time_points == [0]
    with pytest.raises(UserError, match="t1c2.tif is missing"):
        images.read(1, [1])
    with pytest.raises(UserError, match="t2c1.tif is missing"):
        images.read(2, [2])
    (tmp_path / "t0c2.tif").unlink()
    with pytest.raises(UserError, match="no time point in .* has a file for every channel 1, 2"):
        open_images(tmp_path, "t{time}c{channel}.tif")


def test_file_of_another_shape_is_reported_with_both_shapes(tmp_path):
    write_folder(tmp_path, "t{time}.tif", range(3), None, (4, 5))
    tifffile.imwrite(tmp_path / "t2.tif", np.zeros((4, 6), np.uint16))
    images = open_images(tmp_path, "t{time}.tif")
    message = r"t2.tif has shape \(4, 6\) but .*t0.tif has shape \(4, 5\)"
    with pytest.raises(UserError, match=message):
        images.check_shapes()
    with pytest.raises(UserError, match=message):
        images.read(2)
    images.read(1)


def test_channel_and_time_point_out_of_range(tmp_path):
    write_folder(tmp_path, "t{time}c{channel}.tif", range(2), range(1, 3), (4, 5))
    images = open_images(tmp_path, "t{time}c{channel}.tif")
    with pytest.raises(UserError, match=r"channel 3 requested but the images have 2 channels \(pattern folder"):
        images.read(0, [1, 3])
    with pytest.raises(UserError, match=r"channel 0 requested"):
        images.read(0, [0])
    with pytest.raises(UserError, match=r"time point 5 requested but it is not in .*time points \(0-1\)"):
        images.read(5)


def test_pattern_that_matches_nothing(tmp_path):
    write_folder(tmp_path, "t{time:03}.tif", range(2), None, (4, 5))
    with pytest.raises(UserError, match="no file in .* matches the pattern t{time:04}.tif"):
        open_images(tmp_path, "t{time:04}.tif")
    with pytest.raises(UserError, match="cannot list image folder .*nothing"):
        open_images(tmp_path, "nothing/t{time:03}.tif")


def test_channel_field_with_multichannel_files(tmp_path):
    write_folder(tmp_path, "t{time}c{channel}.tif", range(2), range(2), (2, 4, 5), metadata={"axes": "CYX"})
    with pytest.raises(UserError, match=r"t0c0.tif has 2 channels but the pattern"):
        open_images(tmp_path, "t{time}c{channel}.tif")


def test_pattern_folder_files_with_time_axis(tmp_path):
    write_folder(tmp_path, "t{time}.tif", range(2), None, (3, 4, 5), metadata={"axes": "TYX"},
                 photometric="minisblack")
    with pytest.raises(UserError, match=r"t0.tif has a time axis"):
        open_images(tmp_path, "t{time}.tif")


@pytest.mark.parametrize("content", [b"this is no TIFF file", b""])
def test_corrupt_file_in_pattern_folder(tmp_path, content):
    write_folder(tmp_path, "t{time}.tif", range(2), None, (4, 5))
    (tmp_path / "t1.tif").write_bytes(content)
    images = open_images(tmp_path, "t{time}.tif")
    with pytest.raises(UserError, match=f"cannot read TIFF file {tmp_path / 't1.tif'}"):
        images.read(1)
    (tmp_path / "t0.tif").write_bytes(content)
    with pytest.raises(UserError, match="cannot read TIFF file .*t0.tif"):
        open_images(tmp_path, "t{time}.tif")


# One multi-dimensional TIFF

def write_hyperstack(path: Path, shape: tuple[int, ...] = (3, 4, 2, 5, 6), **kwargs) -> np.ndarray:
    data = random_image(shape)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX", "spacing": 2.0, "unit": "um"},
                     resolution=(1 / 0.32, 1 / 0.32), **kwargs)
    return data


def test_imagej_hyperstack(tmp_path):
    data = write_hyperstack(tmp_path / "movie.tif")
    images = open_images(tmp_path / "movie.tif")
    assert images.time_points == [0, 1, 2]
    assert images.channel_count == 2
    assert images.shape_zyx == (4, 5, 6)
    assert images.voxel_size.zyx_um() == pytest.approx((2.0, 0.32, 0.32))
    np.testing.assert_array_equal(images.read(1, [2]), data[1, :, 1])
    np.testing.assert_array_equal(images.read(2, [1, 2]), data[2].sum(axis=1, dtype=np.float32))
    assert images.describe() == (f"TIFF file {tmp_path / 'movie.tif'} (axes TZCYX): 3 time points (0-2), "
                                 f"2 channels, z, y, x = 4, 5, 6, uint16")


def test_folder_and_file_name_without_time_is_one_file(tmp_path):
    write_hyperstack(tmp_path / "movie.tif")
    assert open_images(tmp_path, "movie.tif").shape_zyx == (4, 5, 6)


def test_axes_override_reinterprets_channels_as_z(tmp_path):
    """A Cell Tracking Challenge stack whose ImageJ metadata call the z slices channels."""
    data = random_image((3, 7, 5, 6))
    tifffile.imwrite(tmp_path / "stack.tif", data, imagej=True, metadata={"axes": "TCYX"})
    assert open_images(tmp_path / "stack.tif").channel_count == 7
    images = open_images(tmp_path / "stack.tif", axes="tzyx")
    assert (images.channel_count, images.shape_zyx, images.time_points) == (1, (7, 5, 6), [0, 1, 2])
    np.testing.assert_array_equal(images.read(2), data[2])


@pytest.mark.parametrize("axes", ["TZYX", "TZCYXX", "TZCYQ", "TZCZY"])
def test_axes_override_that_does_not_fit(tmp_path, axes):
    write_hyperstack(tmp_path / "movie.tif")
    with pytest.raises(UserError, match=rf"axes '{axes}' do not fit .*movie.tif: its data have shape "
                                        rf"\(3, 4, 2, 5, 6\) .*give 5 letters from T, Z, C, Y, X"):
        open_images(tmp_path / "movie.tif", axes=axes)


def test_ome_tiff(tmp_path):
    data = random_image((2, 3, 4, 5, 6))
    tifffile.imwrite(tmp_path / "movie.ome.tif", data, ome=True,
                     metadata={"axes": "TCZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.6, "PhysicalSizeZ": 1500,
                               "PhysicalSizeZUnit": "nm", "TimeIncrement": 90, "TimeIncrementUnit": "s"})
    images = open_images(tmp_path / "movie.ome.tif")
    assert (images.channel_count, images.shape_zyx, images.time_points) == (3, (4, 5, 6), [0, 1])
    assert images.voxel_size.zyx_um() == pytest.approx((1.5, 0.6, 0.5))
    assert images.voxel_size.t_minutes == pytest.approx(1.5)
    np.testing.assert_array_equal(images.read(1, [3]), data[1, 2])


@pytest.mark.parametrize("options", [{}, {"truncate": True}, {"compression": "zlib"}])
def test_reads_only_the_requested_time_point(tmp_path, monkeypatch, options):
    """Uncompressed files (also ImageJ's with one IFD) are memory-mapped; compressed ones decode only the
    pages of that time point."""
    data = write_hyperstack(tmp_path / "movie.tif", (20, 3, 2, 8, 9), **options)
    images = open_images(tmp_path / "movie.tif")
    decoded = []
    original = tifffile.TiffFile.asarray
    monkeypatch.setattr(tifffile.TiffFile, "asarray",
                        lambda tif, key=None, **kwargs: decoded.append(key) or original(tif, key, **kwargs))
    np.testing.assert_array_equal(images.read(13, [2]), data[13, :, 1])
    assert decoded == ([list(range(13 * 6, 14 * 6))] if options.get("compression") else [])


def test_file_without_time_axis_has_time_point_zero(tmp_path):
    data = random_image((4, 5, 6))
    tifffile.imwrite(tmp_path / "stack.tif", data, imagej=True, metadata={"axes": "ZYX"})
    images = open_images(tmp_path / "stack.tif")
    assert images.time_points == [0]
    np.testing.assert_array_equal(images.read(0), data)
    with pytest.raises(UserError, match="time point 1 requested"):
        images.read(1)


def test_unknown_axis_in_one_file_needs_axes(tmp_path):
    data = random_image((6, 4, 5))
    tifffile.imwrite(tmp_path / "movie.tif", data)  # tifffile: axes QYX
    with pytest.raises(UserError, match=r"cannot tell what the dimensions of .*movie.tif are: .*shape \(6, 4, 5\) "
                                        r"and tifffile reads the axes as QYX; set the image axes"):
        open_images(tmp_path / "movie.tif")
    images = open_images(tmp_path / "movie.tif", axes="TYX")
    assert images.time_points == list(range(6))
    np.testing.assert_array_equal(images.read(4)[0], data[4])


def test_samples_are_channels(tmp_path):
    data = random_image((4, 5, 3), "uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb")
    images = open_images(tmp_path / "rgb.tif")
    assert images.channel_count == 3
    np.testing.assert_array_equal(images.read(0, [3])[0], data[..., 2])


def test_axes_override_with_time_inside_tiff_pages(tmp_path):
    """tifffile stores a plain (3, y, x) array as one page of 3 samples; axes = TYX makes them time points."""
    data = random_image((3, 4, 5))
    tifffile.imwrite(tmp_path / "movie.tif", data, photometric="rgb", planarconfig="separate", compression="zlib")
    images = open_images(tmp_path / "movie.tif", axes="TYX")
    assert (images.time_points, images.channel_count) == ([0, 1, 2], 1)
    np.testing.assert_array_equal(images.read(2)[0], data[2])


@pytest.mark.parametrize("unit, expected", [("CENTIMETER", VoxelSize(0.5, 0.5, 0.5)), ("NONE", None)])
def test_voxel_size_from_resolution_tags(tmp_path, unit, expected):
    """2D images get z = x; without a unit the resolution says nothing."""
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((4, 5), np.uint8), resolution=(2e4, 2e4),
                     resolutionunit=unit)
    assert open_images(tmp_path / "image.tif").voxel_size == expected


@pytest.mark.parametrize("options", [{"resolution": (72, 72), "resolutionunit": "INCH"},  # MATLAB's, PIL's
                                     {"resolution": (96, 96), "resolutionunit": "INCH"},
                                     {"resolution": (72, 72), "imagej": True, "metadata": {"unit": "inch"}},
                                     {"resolution": (72, 72), "imagej": True, "metadata": {"unit": "pixel"}}])
def test_default_dots_per_inch_are_no_voxel_size(tmp_path, options):
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((4, 5), np.uint8), **options)
    assert open_images(tmp_path / "image.tif").voxel_size is None


@pytest.mark.parametrize("options", [{"resolution": (100, 100), "resolutionunit": "CENTIMETER"},
                                     {"resolution": (0.01, 0.01), "imagej": True, "metadata": {"unit": "um"}}])
def test_implausible_pixel_size_is_unknown_with_a_warning(tmp_path, caplog, options):
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((4, 5), np.uint8), **options)
    assert open_images(tmp_path / "image.tif").voxel_size is None
    assert "pixels of y, x = 100, 100 µm" in caplog.text and "image.tif" in caplog.text


def test_ome_physical_size_of_2d_image(tmp_path):
    tifffile.imwrite(tmp_path / "image.ome.tif", np.zeros((4, 5), np.uint8), ome=True,
                     metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})
    assert open_images(tmp_path / "image.ome.tif").voxel_size == VoxelSize(0.25, 0.25, 0.25)


def test_3d_without_z_spacing_has_no_voxel_size(tmp_path):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 4, 5), np.uint8), imagej=True,
                     metadata={"axes": "ZYX", "unit": "um"}, resolution=(2, 2))
    assert open_images(tmp_path / "stack.tif").voxel_size is None


def test_corrupt_single_file(tmp_path):
    path = tmp_path / "movie.tif"
    path.write_bytes(b"II*\x00garbage")
    with pytest.raises(UserError, match=f"cannot read TIFF file {path}: .*damaged"):
        open_images(path)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_damaged_pixel_data(tmp_path, compression):
    path = tmp_path / "movie.tif"
    write_hyperstack(path, compression=compression)
    images = open_images(path)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[len(tif.pages) - 1]
        start, end = page.dataoffsets[0], page.dataoffsets[0] + page.databytecounts[0]
    content = path.read_bytes()
    path.write_bytes(content[:start] + b"\xff" * (end - start) if compression else content[:start])
    with pytest.raises(UserError, match=f"cannot read TIFF file {path}"):
        images.read(2, [2])


def test_container_and_pattern_mistakes(tmp_path):
    write_hyperstack(tmp_path / "movie.tif")
    with pytest.raises(UserError, match="does not exist"):
        open_images(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="is a folder: give the file name pattern"):
        open_images(tmp_path)
    with pytest.raises(UserError, match="is a file, so it needs no file name pattern"):
        open_images(tmp_path / "movie.tif", "t{time}.tif")
    with pytest.raises(UserError, match=f"image file {tmp_path / 'film.tif'} does not exist"):
        open_images(tmp_path, "film.tif")
    with pytest.raises(UserError, match=r"unsupported field \{position\}"):
        open_images(tmp_path, "t{time}_{position}.tif")


# File name patterns

@pytest.mark.parametrize("names, pattern, channels", [
    ([f"nd799xy08t{t:03}c{c}.tif" for t in range(1, 4) for c in (1, 2)],
     "nd799xy08t{time:03}c{channel}.tif", [1, 2]),
    ([f"t{t:04}.tif" for t in range(3)] + ["notes.txt"], "t{time:04}.tif", []),
    ([f"img_{t:03}.tif" for t in range(12)] + ["other.tif"], "img_{time:03}.tif", []),
    ([f"pos{p}_frame{t}.TIFF" for p in (1, 2) for t in range(2, 12)], "pos1_frame{time}.TIFF", []),
    ([f"{t:03}_ch{c}.tif" for t in range(3) for c in (0, 1)], "{time:03}_ch{channel}.tif", [0, 1]),
    (["movie.tif"], "movie.tif", []),
])
def test_guess_pattern(tmp_path, names, pattern, channels):
    for name in names:
        (tmp_path / name).touch()
    assert guess_pattern(tmp_path) == (pattern, channels)
    assert FilePattern(pattern).match(names[0]) is not None


def test_guess_pattern_without_tiffs(tmp_path):
    (tmp_path / "readme.txt").touch()
    with pytest.raises(UserError, match="no TIFF files"):
        guess_pattern(tmp_path)
    with pytest.raises(UserError, match="cannot list image folder"):
        guess_pattern(tmp_path / "missing")


def test_file_pattern_formats_what_it_matches():
    pattern = FilePattern("t{time:03}c{channel}.tif")
    assert pattern.format(time=7, channel=2) == "t007c2.tif"
    assert pattern.match("t1000c12.tif") == {"time": 1000, "channel": 12}
    assert pattern.match("t0001c1.tif") is None  # not what formatting writes: one name per time point


# Real data (../shared/data), skipped where absent

def test_real_mouse_embryo_stack():
    images = open_images(real_data("mouse-embryo-3d/images/8_cell_stage.tif"))
    assert images.shape_zyx == (51, 120, 122)
    assert images.time_points == [0]
    assert images.read(0).shape == (51, 120, 122)


def test_real_breast_cancer_folder():
    folder = real_data("breast-cancer-2d/01")
    assert guess_pattern(folder) == ("t{time:04}.tif", [])
    images = open_images(folder, "t{time:04}.tif")
    assert images.time_points == list(range(12))
    assert images.shape_zyx == (1, 724, 1024)
    assert images.voxel_size is None  # resolution tags without a unit
    images.check_shapes()
    assert images.read(11).shape == (1, 724, 1024)
