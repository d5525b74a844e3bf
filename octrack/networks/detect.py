"""Nucleus-centre detection: what is special about this network.

Training samples: per annotated time point, the frames of the time window cropped to the cuboid that
encloses the annotated positions plus a margin (users annotate part of an image; everything inside that
box counts as annotated), with the positions in crop coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from octrack.cache import CacheEntry, file_fingerprint, fingerprint, write_array
from octrack.dataset import Dataset
from octrack.frames import FrameReader
from octrack.tracking import Position

NAME = "detect"
FLOAT16_LIMIT = 6e4  # crops are cached as float16; normalised data stay far below this
SECTION = "train_detect"


@dataclass(frozen=True)
class CropSettings:
    """The config values that shape a detection crop."""

    patch_shape_xyz: tuple[int, int, int]
    time_window_before: int
    time_window_after: int

    @property
    def margin_zyx(self) -> tuple[int, int, int]:
        """Half a patch on every side, so that patches centred on edge nuclei still fit."""
        x, y, z = self.patch_shape_xyz
        return z // 2, y // 2, x // 2


def crop_box(positions: list[Position], shape_zyx: tuple[int, int, int],
             margin_zyx: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The cuboid enclosing the positions plus the margin, never past the image."""
    coordinates = np.array([(p.z, p.y, p.x) for p in positions])
    low = np.floor(coordinates.min(axis=0)).astype(int) - margin_zyx
    high = np.ceil(coordinates.max(axis=0)).astype(int) + margin_zyx + 1
    low = np.clip(low, 0, shape_zyx)
    high = np.clip(high, low + 1, shape_zyx)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]


def cache_entries(dataset: Dataset, split: dict[int, str], settings: CropSettings,
                  reader: FrameReader) -> list[CacheEntry]:
    """One entry per annotated time point of the dataset."""
    entries = []
    voxel = dataset.voxel_size.zyx_um() if dataset.voxel_size else None
    for time_point in annotated_time_points(dataset):
        positions = dataset.annotated_positions(time_point)
        uncertain = dataset.uncertain_positions(time_point)
        window = dataset.window(time_point, settings.time_window_before, settings.time_window_after)
        sources = file_fingerprint(dataset.images.source_files(window))
        entries.append(CacheEntry(
            name=f"dataset_{dataset.config.number}/t{time_point:05d}",
            fingerprint=fingerprint(NAME, sources, window, dataset.config.image_channels,
                                    dataset.config.images_axes, voxel, sorted(positions), sorted(uncertain),
                                    settings),
            build=_builder(dataset, time_point, positions, uncertain, settings, reader),
            attributes={"split": split[time_point]}))
    return entries


def annotated_time_points(dataset: Dataset) -> list[int]:
    return [t for t in dataset.time_points if dataset.annotated_positions(t)]


def _builder(dataset: Dataset, time_point: int, positions: list[Position], uncertain: list[Position],
             settings: CropSettings, reader: FrameReader):
    def build(group: h5py.Group) -> None:
        box = crop_box(positions + uncertain, dataset.images.shape_zyx, settings.margin_zyx)
        crop, frames = reader.window(time_point, settings.time_window_before, settings.time_window_after, box)
        offset = np.array([part.start for part in box], dtype=np.float32)
        write_array(group, "image", np.clip(crop, -FLOAT16_LIMIT, FLOAT16_LIMIT).astype(np.float16),
                    chunks=_chunks(crop.shape))
        for name, points in (("positions_zyx", positions), ("uncertain_zyx", uncertain)):
            zyx = np.array([(p.z, p.y, p.x) for p in points], dtype=np.float32).reshape(-1, 3) - offset
            write_array(group, name, zyx, chunks=None)
        voxel = dataset.voxel_size
        group.attrs.update({
            "dataset": dataset.config.number, "time_point": time_point,
            "window_time_points": dataset.window(time_point, settings.time_window_before,
                                                 settings.time_window_after),
            "offset_zyx": offset.astype(int), "frame_shape_zyx": dataset.images.shape_zyx,
            "normalization_low": [frame.low for frame in frames],
            "normalization_high": [frame.high for frame in frames],
            "voxel_size_zyx_um": voxel.zyx_um() if voxel else [np.nan] * 3,
            "patch_shape_xyz": settings.patch_shape_xyz, "margin_zyx": settings.margin_zyx,
            "image_channels": dataset.config.image_channels})
    return build


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    z, y, x, channels = shape
    return min(z, 16), min(y, 128), min(x, 128), channels


# Model, target and loss
def build_model(window: int, patch_depth: int, levels: int, filters: int):
    """A 3D U-Net: (z, y, x, window frames) → (z, y, x, 1), a smooth peak at every nucleus centre."""
    import keras

    from octrack.networks.blocks import conv_block, depths_per_level, pool_plan

    plan = pool_plan(patch_depth, levels)
    depths = depths_per_level(patch_depth, plan)
    inputs = keras.Input(shape=(None, None, None, window), name="frames")
    x, skips = inputs, []
    for level, pool in enumerate(plan):
        x = conv_block(x, filters * 2 ** level, depths[level], f"down{level}")
        skips.append(x)
        x = keras.layers.MaxPooling3D(pool, name=f"pool{level}")(x)
    x = conv_block(x, filters * 2 ** levels, depths[levels], "bottom")
    for level in reversed(range(levels)):
        x = keras.layers.UpSampling3D(plan[level], name=f"up{level}")(x)
        x = keras.layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = conv_block(x, filters * 2 ** level, depths[level], f"up{level}")
    outputs = keras.layers.Conv3D(1, 1, activation="sigmoid", dtype="float32", name="centres")(x)
    return keras.Model(inputs, outputs, name="detect_unet")


FOREGROUND_LEVEL = 0.05


def render_target(points_zyx: np.ndarray, shape_zyx: tuple[int, int, int],
                  sigma_zyx_px: tuple[float, float, float]) -> np.ndarray:
    """A Gaussian peak of height 1 per centre, combined by maximum so that touching nuclei stay separable."""
    target = np.zeros(shape_zyx, dtype=np.float32)
    sigma = np.asarray(sigma_zyx_px, dtype=np.float32)
    reach = np.ceil(3 * sigma).astype(int)
    points = np.asarray(points_zyx, dtype=np.float32).reshape(-1, 3)
    corner = np.floor(points).astype(int)
    lows = np.maximum(corner - reach, 0)
    highs = np.minimum(corner + reach + 2, shape_zyx)
    reaches_patch = np.all(highs > lows, axis=1)
    for point, low, high in zip(points[reaches_patch], lows[reaches_patch], highs[reaches_patch]):
        axes = [(np.arange(lo, hi, dtype=np.float32) - p) / s for lo, hi, p, s in zip(low, high, point, sigma)]
        blob = np.exp(-0.5 * (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                              + axes[2][None, None, :] ** 2))
        region = target[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        np.maximum(region, blob, out=region)
    return target


def uncertain_zone(points_zyx: np.ndarray, target: np.ndarray, sigma_zyx_px: tuple[float, float, float]
                   ) -> np.ndarray:
    """Where the loss ignores the output around uncertain annotations: as far as their own peak would reach,
    but not where a certain nucleus' peak in `target` is higher."""
    if len(points_zyx) == 0:
        return np.zeros(target.shape, dtype=bool)
    peaks = render_target(points_zyx, target.shape, sigma_zyx_px)
    return (peaks > FOREGROUND_LEVEL) & (peaks > target)


def detection_loss(y_true, y_pred):
    """Squared error, foreground and background weighted equally, voxels outside the mask ignored.

    `y_true` holds the target (channel 0) and the mask (channel 1): 0 where the voxel is not annotated
    (outside the annotated box, rotated in from outside the crop, or in the band at the patch edges).
    The batch's loss is returned once per sample, so that Keras averages it over the batch, and over the
    replicas of a distributed step, as it does a built-in loss (Keras divides a loss among replicas only
    when it has a batch axis).
    """
    from keras import ops

    y_true = ops.convert_to_tensor(y_true, "float32")
    target, mask = y_true[..., 0:1], y_true[..., 1:2]
    squared_error = ops.square(ops.cast(y_pred, "float32") - target)
    foreground = ops.cast(target > FOREGROUND_LEVEL, "float32") * mask
    background = mask - foreground
    foreground_loss = ops.sum(squared_error * foreground) / (ops.sum(foreground) + 1.0)
    background_loss = ops.sum(squared_error * background) / (ops.sum(background) + 1.0)
    return 0.5 * (foreground_loss + background_loss) * ops.ones_like(target[:, 0, 0, 0, 0])


# Decoding
def predict_centres(model, frames: list[np.ndarray], multiple_zyx: tuple[int, int, int],
                    patch_zyx: tuple[int, int, int]) -> np.ndarray:
    """The network's output (z, y, x) for a whole volume, in overlapping tiles that fit memory.

    Tiles overlap by four times the network's pooling factor per axis (32 px for three levels), about the
    reach of its receptive field, and only each tile's inner part is kept. Zeros are added beyond the
    volume's edges as far as training patches (`patch_zyx`) taught the network to see them (`edge_margin`).
    """
    from octrack.tiling import plan_tiles, predict_tiled

    shape = frames[0].shape
    margin_zyx = edge_margin(patch_zyx, shape)
    overlap = tuple(4 * multiple if multiple > 1 else 2 * (size > 1) for multiple, size in zip(multiple_zyx, shape))
    covered = tuple(size + 2 * margin for size, margin in zip(shape, margin_zyx))
    plan = plan_tiles(covered, multiple_zyx, overlap_zyx=overlap)
    return predict_tiled(model.predict_on_batch, frames, plan, margin_zyx)[..., 0]


def edge_margin(patch_zyx: tuple[int, int, int], shape_zyx: tuple[int, ...]) -> tuple[int, int, int]:
    """Zeros added beyond the image's edges for prediction: a quarter of a training patch per axis with depth.

    Training patches of nuclei at the image's edge stick out of the image into zeros (about half a patch,
    give or take a quarter), so that is how the network learned to see an edge; without a margin the edge
    would coincide with the end of the network's input instead."""
    return tuple(patch // 4 if size > 1 else 0 for patch, size in zip(patch_zyx, shape_zyx))  # type: ignore[return-value]


def find_peaks(centres: np.ndarray, threshold: float, min_distance_zyx_px: tuple[float, float, float]
               ) -> np.ndarray:
    """Local maxima above `threshold`, at least `min_distance` apart (an ellipsoid in pixels), as (n, 4):
    z, y, x refined to sub-voxel precision (see `_refine`), and peak value.

    Every local maximum of its 3 × 3 × 3 neighbourhood is a candidate; candidates are then taken from the
    highest down, each one kept unless a kept one lies within the minimum distance. (A maximum filter as
    wide as the minimum distance would also drop a weaker nucleus that sits on the slope of a stronger one.)
    A maximum on the outermost column or row in x or y is left out: the output still rises towards the
    edge there, so the nucleus lies mostly outside the image.
    """
    from scipy.spatial import cKDTree

    candidates = _plateau_centres(_local_maxima(centres, threshold))
    if len(candidates) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    peaks = np.array([_refine(centres, candidate) for candidate in candidates], dtype=np.float32)
    peaks = peaks[np.argsort(-peaks[:, 3], kind="stable")]
    scaled = peaks[:, :3] / np.maximum(np.asarray(min_distance_zyx_px, dtype=np.float32), 1e-6)
    tree = cKDTree(scaled)
    kept = np.zeros(len(peaks), dtype=bool)
    for index in range(len(peaks)):
        neighbours = tree.query_ball_point(scaled[index], r=1.0)
        kept[index] = not kept[neighbours].any()
    return peaks[kept]


MAXIMA_SLAB_VOXELS = 1 << 24  # the maximum filter runs on slabs of z planes of about this size (64 MB float32)


def _local_maxima(centres: np.ndarray, threshold: float) -> np.ndarray:
    """(n, 3) voxels (z, y, x, in raster order) that are the maximum of their 3 × 3 × 3 neighbourhood and above
    `threshold`, except those on the outermost column or row in x or y.

    Found slab by slab in z, each slab with its neighbouring planes, so that memory holds the filter output
    of a slab rather than of the whole volume."""
    from scipy import ndimage

    depth, height, width = centres.shape
    slab = max(1, MAXIMA_SLAB_VOXELS // (height * width))
    found = []
    for first in range(0, depth, slab):
        last = min(first + slab, depth)
        low, high = max(first - 1, 0), min(last + 1, depth)
        part = centres[low:high]
        maxima = part == ndimage.maximum_filter(part, size=3, mode="constant", cval=-np.inf)
        maxima &= part > threshold
        maxima = maxima[first - low:last - low]
        for axis in (1, 2):
            if part.shape[axis] > 2:
                edges = [slice(None)] * 3
                for edge in (0, -1):
                    edges[axis] = edge
                    maxima[tuple(edges)] = False
        found.append(np.argwhere(maxima) + (first, 0, 0))
    return np.concatenate(found)


def _plateau_centres(maxima: np.ndarray) -> np.ndarray:
    """(m, 3) the centre of each group of face-adjacent maxima (a plateau of equal values is one candidate), in
    the raster order of each group's first voxel."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(maxima) == 0:
        return np.zeros((0, 3))
    pairs = cKDTree(maxima).query_pairs(r=1.0, output_type="ndarray")  # whole voxels: distance 1 = a shared face
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(maxima), len(maxima)))
    count, labels = connected_components(graph, directed=False)
    first = np.full(count, len(maxima))
    np.minimum.at(first, labels, np.arange(len(maxima)))
    rank = np.empty(count, dtype=int)
    rank[np.argsort(first)] = np.arange(count)
    sums = np.zeros((count, 3))
    np.add.at(sums, rank[labels], maxima)
    return sums / np.bincount(rank[labels], minlength=count)[:, None]


def _refine(centres: np.ndarray, peak: np.ndarray) -> tuple[float, float, float, float]:
    """Sub-voxel position: per axis, the vertex of the parabola through the log values of the maximum and its
    two neighbours (exact for a Gaussian peak); no shift along an axis where a neighbour is missing."""
    index = np.round(peak).astype(int)
    value = float(centres[tuple(index)])
    refined = []
    for axis in range(3):
        if not 0 < index[axis] < centres.shape[axis] - 1:
            refined.append(float(index[axis]))
            continue
        before, after = index.copy(), index.copy()
        before[axis] -= 1
        after[axis] += 1
        logs = np.log(np.maximum([centres[tuple(before)], value, centres[tuple(after)]], 1e-6))
        curvature = logs[0] - 2 * logs[1] + logs[2]
        shift = 0.5 * (logs[0] - logs[2]) / curvature if curvature < 0 else 0.0
        refined.append(index[axis] + float(np.clip(shift, -0.5, 0.5)))
    return (*refined, value)
