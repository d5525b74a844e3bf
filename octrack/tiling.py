"""Running a fully convolutional network on volumes larger than memory allows: overlapping tiles.

Each tile is padded to the multiple the network's pooling needs; of each tile's output only the inner part
is kept (the outer `overlap` voxels lack context), except at the borders of the volume.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# A tile's memory grows with its voxels times the channels of the network's first level (the widest arrays are
# there): 1 M voxels at 16 filters predicted a 512 × 512 × 32 time point in 1.47 GB (docs/benchmarks.md,
# scripts/benchmark.py), so a network of 8 filters gets tiles of 2 M voxels in about the same memory (1.54 GB).
MAX_TILE_ACTIVATIONS = 16 << 20


def tile_budget(first_level_filters: int) -> int:
    """The most voxels per tile for a U-Net with this many filters at its first level."""
    return MAX_TILE_ACTIVATIONS // max(1, first_level_filters)


@dataclass(frozen=True)
class TilePlan:
    tile_zyx: tuple[int, int, int]
    overlap_zyx: tuple[int, int, int]

    def starts(self, shape_zyx: tuple[int, ...]) -> Iterator[tuple[int, int, int]]:
        axes = [_axis_starts(size, tile, overlap)
                for size, tile, overlap in zip(shape_zyx, self.tile_zyx, self.overlap_zyx)]
        for z in axes[0]:
            for y in axes[1]:
                for x in axes[2]:
                    yield z, y, x


def _axis_starts(size: int, tile: int, overlap: int) -> list[int]:
    if tile >= size:
        return [0]
    step = tile - 2 * overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


MAX_AXIS_CHOICES = 64  # tile sizes tried per axis (all of them where there are fewer)


def plan_tiles(shape_zyx: tuple[int, int, int], multiple_zyx: tuple[int, int, int],
               overlap_zyx: tuple[int, int, int], max_voxels: int) -> TilePlan:
    """The tile shape within the memory budget that makes the network compute the fewest voxels in all (tiles
    × tile size, overlaps counted), in multiples the network needs; whole axes where they fit. Of equal costs,
    the one with the fewest tiles (fewer calls).

    Every shape is tried at once (numpy, a few thousand to a few hundred thousand of them): halving the largest
    axis until the budget is met, as before, gave 136-px tiles of which the 32-px overlaps on both sides
    waste two thirds."""
    sizes, counts = zip(*(_axis_choices(size, multiple, overlap)
                          for size, multiple, overlap in zip(shape_zyx, multiple_zyx, overlap_zyx)))
    voxels = sizes[0][:, None, None] * sizes[1][None, :, None] * sizes[2][None, None, :]
    tiles = counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
    fits = voxels <= max_voxels
    if not fits.any():  # even the smallest tiles exceed the budget: use them
        fits = voxels == voxels.min()
    cost = np.where(fits, voxels * tiles, np.iinfo(np.int64).max)
    best = np.flatnonzero(cost == cost.min())
    chosen = np.unravel_index(best[np.argmin(tiles.reshape(-1)[best])], cost.shape)
    tile = tuple(int(axis_sizes[index]) for axis_sizes, index in zip(sizes, chosen))
    return TilePlan(tile, _plan_overlap(shape_zyx, tile, overlap_zyx))  # type: ignore[arg-type]


def _axis_choices(size: int, multiple: int, overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """The tile sizes worth trying along an axis (multiples of `multiple`, from the smallest that keeps the whole
    overlap, four times it, up to the whole axis) and the number of tiles each needs."""
    whole = _round_up(size, multiple)
    smallest = min(_round_up(4 * overlap, multiple), whole)
    choices = np.arange(smallest, whole + 1, multiple, dtype=np.int64)
    if len(choices) > MAX_AXIS_CHOICES:  # a network without pooling (multiple 1): every size would make the
        # table of all shapes hundreds of MB; evenly spread sizes, the whole axis among them, lose little
        choices = np.unique(choices[np.linspace(0, len(choices) - 1, MAX_AXIS_CHOICES).round().astype(np.int64)])
    counts = np.array([len(_axis_starts(size, int(tile), _plan_overlap((size,), (int(tile),), (overlap,))[0]))
                       for tile in choices], dtype=np.int64)
    return choices, counts


def _plan_overlap(shape: tuple[int, ...], tile: tuple[int, ...], overlap: tuple[int, ...]) -> tuple[int, ...]:
    """No overlap along an axis that one tile covers; at most a quarter of the tile elsewhere."""
    return tuple(min(o, t // 4) if t < s else 0 for o, t, s in zip(overlap, tile, shape))


def _round_up(value: int, multiple: int) -> int:
    return max(multiple, -(-value // multiple) * multiple)


def predict_tiled(predict_batch, frames: list[np.ndarray], plan: TilePlan,
                  margin_zyx: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Runs `predict_batch` ((1, z, y, x, c) → (1, z, y, x, k)) over tiles of the frames stacked as channels.

    The tiles cover the volume plus `margin_zyx` voxels of zeros beyond each of its edges (plan the tiles for
    that larger shape). Tiles are cut (and, past the volume's edges, padded) one at a time, so memory holds
    the frames, one tile and the output, never a padded copy of the whole stack. Returns the stitched
    (z, y, x, k) output of the volume itself.
    """
    shape = np.array(frames[0].shape)
    margin = np.asarray(margin_zyx)
    covered = [max(size, tile) for size, tile in zip(shape + 2 * margin, plan.tile_zyx)]
    output = None
    for start in plan.starts(tuple(covered)):
        origin = np.asarray(start) - margin  # where the tile begins in the volume
        tile = np.stack([_cut_padded(frame, origin, plan.tile_zyx) for frame in frames], axis=-1)
        result = np.asarray(predict_batch(tile[np.newaxis]))[0]
        if output is None:
            output = np.zeros((*shape, result.shape[-1]), dtype=np.float32)
        keep = [(max(low, -begin), min(high, size - begin))
                for (low, high), size, begin in zip(_kept_region(start, plan, covered), shape, origin)]
        if all(high > low for low, high in keep):
            output[tuple(slice(origin[a] + keep[a][0], origin[a] + keep[a][1]) for a in range(3))] = \
                result[tuple(slice(*keep[a]) for a in range(3))]
    return output


def _cut_padded(frame: np.ndarray, origin: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """frame[origin:origin + size], padded with zeros where that reaches past the frame's edges.

    Zeros, as training patches that stick out of a crop are: a mirrored half nucleus at an image edge would
    look like a whole one.
    """
    box = tuple(slice(max(begin, 0), min(begin + extent, limit)) for begin, extent, limit in zip(origin, size, frame.shape))
    part = frame[box]
    before = [max(-begin, 0) for begin in origin]
    missing = [(first, extent - have - first) for first, extent, have in zip(before, size, part.shape)]
    return np.pad(part, missing) if any(a or b for a, b in missing) else part


def _kept_region(start: tuple[int, int, int], plan: TilePlan, shape: list[int]) -> list[tuple[int, int]]:
    """Within a tile: drop `overlap` voxels on sides that are not the volume's border."""
    kept = []
    for axis in range(3):
        low = 0 if start[axis] == 0 else plan.overlap_zyx[axis]
        end = start[axis] + plan.tile_zyx[axis]
        high = plan.tile_zyx[axis] - (0 if end >= shape[axis] else plan.overlap_zyx[axis])
        kept.append((low, high))
    return kept
