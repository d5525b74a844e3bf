"""OrganoidTracker's positions (nucleus centre) model, run as OrganoidTracker runs it.

Per time point, the frames of the model's time window (normalised over the window, frames.py) are cut into
tiles of the model's depth in z and 320 + 2 × 32 pixels in y and x (OrganoidTracker's defaults: patch 320,
buffers 1, 32, 32), starting one buffer before the image and stepping by tile − 2 × buffer while the start
lies before the image's end minus a buffer; outside the image the tiles hold zeros. The network's output for
a tile (a ReLU map, not a probability) is decoded on its own:

1. `reconstruct_volume`: five layers are interpolated linearly between each pair of z layers (and five empty
   layers added on each side), so that z is about as finely sampled as y and x;
2. `skimage.feature.peak_local_max(min_distance=peak_min_distance_px, threshold_abs=threshold,
   exclude_border=False)`, scikit-image being the library OrganoidTracker uses, so that its semantics (plateaus,
   ties, the spacing rule) are OrganoidTracker's by construction;
3. back to tile pixels (z = row / 6 − 1), peaks in a buffer dropped, then to image pixels by truncation, and
   peaks at or past the image's end dropped.

The positions are whole pixels, as OrganoidTracker's; a position found by two tiles counts once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octrack.cache import file_fingerprint, fingerprint
from octrack.config import PredictSection
from octrack.dataset import Dataset
from octrack.errors import UserError
from octrack.frames import ModelFrames, NormalizedFrame
from octrack.model_folder import MODEL_FILE, load_keras_model, load_settings
from octrack.networks.detect_model import add_detections
from octrack.networks.organoidtracker.frames import cut_patch, ot_frames
from octrack.networks.organoidtracker.settings import OTPositionsSettings
from octrack.tracking import Tracking

log = logging.getLogger(__name__)
TILE_YX = (320, 320)  # OrganoidTracker's patch_shape_y, patch_shape_x: a tile without its buffers
BUFFER_ZYX = (1, 32, 32)  # OrganoidTracker's buffer_z, buffer_y, buffer_x
MID_LAYERS = 5  # layers interpolated between two z layers before peak calling
DEFAULT_THRESHOLD = 0.1  # OrganoidTracker's `threshold`
DEFAULT_MIN_DISTANCE_PX = 6  # OrganoidTracker's `peak_min_distance_px`


def model_depth(model: Any) -> int:
    """The z size the model takes (fixed by its input layer)."""
    depth = model.inputs[0].shape[1]
    if depth is None:
        raise UserError(f"the model {model.name} takes any number of z slices; OrganoidTracker's positions models "
                        f"take a fixed number (their input's first size), so this is not one")
    return int(depth)


def tile_corners(shape_zyx: tuple[int, ...], tile_zyx: tuple[int, int, int], buffer_zyx: tuple[int, int, int]
                 ) -> list[tuple[int, int, int]]:
    """The (z, y, x) corners of the tiles over an image, as OrganoidTracker places them."""
    axes = [range(-buffer, size - buffer, tile - 2 * buffer)
            for size, tile, buffer in zip(shape_zyx, tile_zyx, buffer_zyx)]
    return [(z, y, x) for z in axes[0] for y in axes[1] for x in axes[2]]


@dataclass(frozen=True)
class TileOutput:
    corner_zyx: tuple[int, int, int]
    output: np.ndarray  # (z, y, x) float32


def tile_outputs(model: Any, frames: list[NormalizedFrame], tile_yx: tuple[int, int] = TILE_YX
                 ) -> Iterator[TileOutput]:
    """The network's output for each tile of a time point's window of frames (OrganoidTracker's tiling with
    tiles of `tile_yx` plus the buffers)."""
    import keras

    tile = (model_depth(model), tile_yx[0] + 2 * BUFFER_ZYX[1], tile_yx[1] + 2 * BUFFER_ZYX[2])
    for corner in tile_corners(frames[0].data.shape, tile, BUFFER_ZYX):
        patch = cut_patch(frames, corner, tile)
        output = keras.ops.convert_to_numpy(model(patch[np.newaxis], training=False))
        yield TileOutput(corner, np.asarray(output, dtype=np.float32)[0, ..., 0])


def reconstruct_volume(output: np.ndarray, mid_layers: int = MID_LAYERS) -> np.ndarray:
    """The output with `mid_layers` layers interpolated linearly (in float64, stored in the output's type)
    between each pair of z layers: layer (mid_layers + 1) · (i + 1) + k holds (1 − k / (mid_layers + 1)) ·
    output[i] + k / (mid_layers + 1) · output[i + 1]; the first mid_layers + 1 and the last mid_layers layers
    stay zero, and the last z layer enters only through the interpolation."""
    depth = len(output)
    steps = mid_layers + 1
    volume = np.zeros((depth + mid_layers * (depth - 1) + 2 * mid_layers, *output.shape[1:]), dtype=output.dtype)
    for i in range(depth - 1):
        for k in range(steps):
            t = float(k) / steps
            volume[steps * (i + 1) + k] = (1 - t) * output[i].astype(float) + t * output[i + 1].astype(float)
    return volume


def tile_peaks(tile: TileOutput, threshold: float, min_distance_px: int, image_shape_zyx: tuple[int, ...]
               ) -> list[tuple[int, int, int, float]]:
    """The positions (z, y, x in image pixels, peak value) that OrganoidTracker finds in one tile's output."""
    from skimage.feature import peak_local_max

    volume = reconstruct_volume(tile.output)
    found = []
    for row_z, y, x in peak_local_max(volume, min_distance=min_distance_px, threshold_abs=threshold,
                                      exclude_border=False):
        z = row_z / (MID_LAYERS + 1) - 1
        if not (BUFFER_ZYX[0] <= z < volume.shape[0] - BUFFER_ZYX[0]  # (sic: the reconstructed depth)
                and BUFFER_ZYX[1] <= y < volume.shape[1] - BUFFER_ZYX[1]
                and BUFFER_ZYX[2] <= x < volume.shape[2] - BUFFER_ZYX[2]):
            continue
        image = [int(float(value) + corner) for value, corner in zip((z, y, x), tile.corner_zyx)]  # truncated
        if all(value < size for value, size in zip(image, image_shape_zyx)):
            found.append((*image, float(volume[row_z, y, x])))
    return found


def place_tile(raw: np.ndarray, tile: TileOutput) -> None:
    """Writes a tile's output into the stitched output of a time point as OrganoidTracker's debug output does:
    without its low-side buffer, at its corner plus the buffer, cut to the image (later tiles overwrite)."""
    target = [corner + buffer for corner, buffer in zip(tile.corner_zyx, BUFFER_ZYX)]
    part = tile.output[tuple(slice(buffer, None) for buffer in BUFFER_ZYX)]
    sizes = [min(size - start, length) for size, start, length in zip(raw.shape, target, part.shape)]
    raw[tuple(slice(start, start + size) for start, size in zip(target, sizes))] = \
        part[tuple(slice(0, size) for size in sizes)]


def positions_of_tiles(tiles: Iterable[TileOutput], threshold: float, min_distance_px: int,
                       image_shape_zyx: tuple[int, ...]) -> np.ndarray:
    """(n, 4) z, y, x, peak value: the positions found in the tiles of a time point, each once, in the order
    found (OrganoidTracker keeps a set of positions)."""
    rows: dict[tuple[int, int, int], float] = {}
    for tile in tiles:
        for z, y, x, value in tile_peaks(tile, threshold, min_distance_px, image_shape_zyx):
            rows.setdefault((z, y, x), value)
    return np.array([(*zyx, value) for zyx, value in rows.items()], dtype=np.float64).reshape(-1, 4)


def find_positions(model: Any, frames: list[NormalizedFrame], threshold: float, min_distance_px: int,
                   raw: np.ndarray | None = None) -> np.ndarray:
    """The positions of one time point (see `positions_of_tiles`), given the normalised frames of its window.
    With `raw` (zeros of a frame's shape), the stitched network output is written there too, as OrganoidTracker
    writes it to its `predictions_output_folder`."""
    tiles = tile_outputs(model, frames)
    if raw is not None:
        tiles = _placed(tiles, raw)
    return positions_of_tiles(tiles, threshold, min_distance_px, frames[0].data.shape)


def _placed(tiles: Iterable[TileOutput], raw: np.ndarray) -> Iterator[TileOutput]:
    for tile in tiles:
        place_tile(raw, tile)
        yield tile


@dataclass(frozen=True)
class OTPositions:
    """An OrganoidTracker positions model folder, as the predict stage runs it (a `Predictor`).

    `min_distance_um`, where [predict] sets it, replaces OrganoidTracker's peak_min_distance_px (6) by that
    distance in x pixels of each dataset."""

    model: Any
    settings: OTPositionsSettings
    threshold: float
    min_distance_um: float | None
    model_file: Path
    tentative_threshold: float | None = None  # peaks from here up to `threshold` are tentative detections

    def fingerprint(self) -> str:
        return fingerprint(file_fingerprint([self.model_file]), self.settings.to_json(), self.threshold,
                           self.min_distance_um, TILE_YX, BUFFER_ZYX, MID_LAYERS, self.tentative_threshold)

    def frames(self, dataset: Dataset) -> ModelFrames:
        return ot_frames(dataset, self.settings.time_window)

    def time_points(self, tracking: Tracking, dataset: Dataset) -> list[int]:
        return dataset.time_points

    def predict(self, frames: ModelFrames, tracking: Tracking, time_point: int) -> np.ndarray:
        return find_positions(self.model, frames.reader.frames(time_point, frames.window),
                              self.tentative_threshold or self.threshold,
                              self.min_distance_px(frames.voxel_size.x_um))

    def min_distance_px(self, x_um: float) -> int:
        if self.min_distance_um is None:
            return DEFAULT_MIN_DISTANCE_PX
        return max(1, round(self.min_distance_um / x_um))

    def apply(self, tracking: Tracking, time_point: int, rows: list[list[float]]) -> None:
        add_detections(tracking, time_point, rows, tentative_below=self.threshold)


def load_positions(folder: Path, predict: PredictSection) -> OTPositions:
    """An OrganoidTracker positions folder with the decoding values in force: [predict]'s peak_threshold and
    min_distance_um where set, else the folder's peak threshold (one that octrack trained further) or
    OrganoidTracker's defaults; one line says which."""
    settings = load_settings(folder, OTPositionsSettings)
    model = load_keras_model(folder / MODEL_FILE, "OrganoidTracker's positions model (model.keras)")
    threshold = predict.peak_threshold or settings.peak_threshold or DEFAULT_THRESHOLD
    distance = (f"min_distance_um = {predict.min_distance_um:g} from [predict]" if predict.min_distance_um
                else f"peaks at least {DEFAULT_MIN_DISTANCE_PX} pixels apart (OrganoidTracker's default)")
    source = ("[predict]" if predict.peak_threshold else "the model folder" if settings.peak_threshold
              else "OrganoidTracker's default; the model names none")
    log.info(f"{folder}: an OrganoidTracker positions model, run at the images' own pixel size with peak threshold "
             f"{threshold:g} ({source}) and {distance}; set peak_threshold and min_distance_um in "
             f"{predict.config_file} [predict] to change them")
    return OTPositions(model, settings, float(threshold), predict.min_distance_um, folder / MODEL_FILE,
                       predict.tentative_threshold(float(threshold)))
