"""The detection network's model: a 3D U-Net from the frames of a time window to an image of small dots at the
nucleus centres; its training target and loss; its output over a whole volume; and its settings.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from octrack import tiling
from octrack.model_folder import ModelSettings, stored
from octrack.networks.blocks import conv_block, depths_per_level, pool_plan, tile_multiple
from octrack.tracking import Position, Tracking
from octrack.tracking.model import TENTATIVE

NAME = "detect"


@dataclass(frozen=True, kw_only=True)
class DetectSettings(ModelSettings):
    """settings.json of a detection model folder."""

    NETWORK = NAME
    unet_levels: int = stored()
    unet_filters: int = stored()
    tile_multiple_zyx: tuple[int, int, int] = stored(read=tuple)  # tiles given to the network are multiples
    target_sigma_um: float | None = stored(default=None)
    min_distance_um: float = stored()
    peak_threshold: float | None = stored(default=None)  # chosen on the validation data after training


def unet_tile_multiple(patch_depth: int, levels: int) -> tuple[int, int, int]:
    """The multiple (z, y, x) of every tile that a U-Net of `levels` poolings built for `patch_depth` takes."""
    return tile_multiple(pool_plan(patch_depth, levels))


def fitted_patch_shape(requested_zyx: tuple[int, int, int], image_depth: int, levels: int) -> tuple[int, int, int]:
    """The training patch for a requested one: no deeper than the images (2D data get 2D patches), then rounded up
    per axis to a multiple of the pooling of the U-Net built for it, so that every depth and size trains (5 slices:
    6). Patches stick out of the crops into zeros that the loss ignores, as prediction pads its tiles."""
    z, y, x = requested_zyx
    shape = (min(z, image_depth), y, x)
    while True:
        multiple = unet_tile_multiple(shape[0], levels)
        rounded = tuple(-(-size // factor) * factor for size, factor in zip(shape, multiple))
        if rounded == shape:
            return shape
        shape = rounded  # type: ignore[assignment]


def patch_fit_note(requested_zyx: tuple[int, int, int], fitted_zyx: tuple[int, int, int], image_depth: int) -> str:
    """Why the training patch differs from the requested one ('' where it does not), for one line of prepare."""
    if fitted_zyx == tuple(requested_zyx):
        return ""
    reasons = [f"the images have {image_depth} slice(s)"] if requested_zyx[0] > image_depth else []
    if fitted_zyx != (min(requested_zyx[0], image_depth), *requested_zyx[1:]):
        reasons.append("sizes rounded up to a multiple of the U-Net's pooling, the extra voxels zeros the loss "
                       "ignores")
    shown = ", ".join(map(str, fitted_zyx))
    return f"{'; '.join(reasons)}: training patches of z, y, x = {shown}"


def build_model(frames: int, patch_depth: int, levels: int, filters: int):
    """A 3D U-Net: (z, y, x, the frames of the time window) → (z, y, x, 1), a smooth peak at every nucleus centre."""
    import keras

    plan = pool_plan(patch_depth, levels)
    depths = depths_per_level(patch_depth, plan)
    inputs = keras.Input(shape=(None, None, None, frames), name="frames")
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


def uncertain_zone(points_zyx: np.ndarray, target: np.ndarray, sigma_zyx_px: tuple[float, float, float],
                   render: Callable[..., np.ndarray] = render_target) -> np.ndarray:
    """Where the loss ignores the output around uncertain annotations: as far as their own peak (by `render`,
    the target's renderer) would reach, but not where a certain nucleus' peak in `target` is higher."""
    if len(points_zyx) == 0:
        return np.zeros(target.shape, dtype=bool)
    peaks = render(points_zyx, target.shape, sigma_zyx_px)
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


def predict_centres(model, frames: list[np.ndarray], multiple_zyx: tuple[int, int, int],
                    patch_zyx: tuple[int, int, int], first_level_filters: int) -> np.ndarray:
    """The network's output (z, y, x) for a whole volume, in overlapping tiles that fit memory (fewer filters,
    larger tiles: `tiling.tile_budget`).

    Tiles overlap by four times the network's pooling factor per axis (32 px for three levels), about the
    reach of its receptive field, and only each tile's inner part is kept. Zeros are added beyond the
    volume's edges as far as training patches (`patch_zyx`) taught the network to see them (`edge_margin`).
    """
    shape = frames[0].shape
    margin_zyx = edge_margin(patch_zyx, shape)
    overlap = tuple(4 * multiple if multiple > 1 else 2 * (size > 1) for multiple, size in zip(multiple_zyx, shape))
    covered = tuple(size + 2 * margin for size, margin in zip(shape, margin_zyx))
    plan = tiling.plan_tiles(covered, multiple_zyx, overlap_zyx=overlap,
                             max_voxels=tiling.tile_budget(first_level_filters))
    return tiling.predict_tiled(model.predict_on_batch, frames, plan, margin_zyx)[..., 0]


def edge_margin(patch_zyx: tuple[int, int, int], shape_zyx: tuple[int, ...]) -> tuple[int, int, int]:
    """Zeros added beyond the image's edges for prediction: a quarter of a training patch per axis with depth.

    Training patches of nuclei at the image's edge stick out of the image into zeros (about half a patch,
    give or take a quarter), so that is how the network learned to see an edge; without a margin the edge
    would coincide with the end of the network's input instead."""
    return tuple(patch // 4 if size > 1 else 0 for patch, size in zip(patch_zyx, shape_zyx))  # type: ignore[return-value]


def add_detections(tracking: Tracking, time_point: int, rows: list[list[float]], tentative_below: float = 0.0
                   ) -> None:
    """Adds a time point's detected positions, rows of (z, y, x, peak value), with their `detection_peak`; those
    below `tentative_below` as tentative detections (see octrack.tracking.model)."""
    for z, y, x, value in rows:
        data = {TENTATIVE: True} if value < tentative_below else {}
        tracking.add_position(Position(x, y, z, time_point), detection_peak=round(float(value), 4), **data)
