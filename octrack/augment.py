"""Data augmentation for training patches, in numpy and scipy only (it runs in the data-pipeline workers).

Patches are `(z, y, x, channels)` float32 arrays; the channels are frames of one time window (or, for
the link network, two crops stacked). Geometry is changed only in the xy plane: flips in x and y,
rotation by any angle and an xy zoom. The z axis is never transformed, because z carries the depth
dimming and the anisotropic voxel size of the microscope.

Geometric augmentation works in two steps so that no voxel has to be invented at the border:
`Geometry.source_extent` says how big a region to cut from the image, centred on the centre of the
patch, and `Geometry.warp` resamples that region into the patch. With a patch at integer offset `o`
and shape `P` in the image, and a region of shape `R` from `source_extent` (`R - P` is always even),
the region starts at `o - (R - P) // 2`. `warp_points` and `warp_vectors` apply the same transform to
coordinates, so labels stay aligned with the pixels.

Every random choice comes from the `numpy.random.Generator` passed in. The parameters are drawn in a
fixed order whatever the settings, so that turning one part off leaves the random values of the other
parts unchanged; only the per-voxel noise, drawn last, is skipped when it is off. The noise values are
read from a fixed bank of normal values at a random place (see `_standard_normal`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

ShapeZYX = tuple[int, int, int]

# Rotation matrix entries this close to -1, 0 or 1 are snapped, so that 90° multiples map voxels exactly
# onto voxels (cos(π/2) is 6e-17 in floating point, which can push a border voxel outside the region).
_SNAP_TOLERANCE = 1e-9
_TINY = np.float32(1e-6)
_NOISE_BANK_SIZE = 1 << 22
_NOISE_BANK_SEED = 20261124


@dataclass(frozen=True)
class AugmentSettings:
    """Which augmentations to apply and how strongly. Each is on by default; False, (1, 1) or 0 turns it off."""

    flip: bool = True  # random flips in x and y (never z: that would reverse the depth dimming)
    rotate: bool = True  # rotation in xy by any angle
    scale: tuple[float, float] = (0.8, 1.2)  # xy zoom range; > 1 makes objects bigger
    brightness: float = 0.1  # additive shift drawn from ± this, on the normalised 0..1 scale
    contrast: tuple[float, float] = (0.75, 1.25)  # multiplicative factor range
    gamma: tuple[float, float] = (0.8, 1.25)  # exponent range, applied to the positive part
    gaussian_noise: float = 0.03  # maximum standard deviation of additive noise
    poisson_noise: float = 0.05  # maximum strength of signal-dependent noise: std = sqrt(max(value, 0)) * strength
    depth_dimming: float = 0.3  # maximum fraction of intensity lost from the first to the last z slice


@dataclass(frozen=True)
class Geometry:
    """An xy transform of a patch: flips, then rotation by `angle` (radians), then zoom by `scale`.

    As a map from region to patch coordinates, relative to their centres: `d_patch = A @ d_region` with
    `A = scale * rotation(angle) @ flips`, acting on (y, x). The default is the identity.
    """

    flip_y: bool = False
    flip_x: bool = False
    angle: float = 0.0
    scale: float = 1.0

    def source_extent(self, patch_shape_zyx: ShapeZYX) -> ShapeZYX:
        """Shape of the region to cut so that every patch voxel maps inside it.

        The region has the depth of the patch, and in y and x the same parity as the patch, so that the
        identity transform maps voxels onto voxels. At most `ceil(max(patch_y, patch_x) * sqrt(2) / scale) + 2`.
        """
        depth, height, width = patch_shape_zyx
        corners = np.array([[(height - 1) / 2, sign * (width - 1) / 2] for sign in (-1, 1)])
        half_extent = np.abs(corners @ self._region_from_patch().T).max(axis=0)
        region_y, region_x = (
            _with_parity(math.ceil(2 * half) + 1, size)
            for half, size in zip(half_extent, (height, width))
        )
        return depth, region_y, region_x

    def warp(self, region: np.ndarray, patch_shape_zyx: ShapeZYX, order: int = 1, cval: float = 0.0) -> np.ndarray:
        """Resamples `region` (z, Y, X, c), centred on the patch centre, into a float32 patch (z, y, x, c).

        Use order 1 (bilinear) for images and order 0 (nearest) for masks; patch voxels that map outside
        the region get `cval`, so a mask of ones warped with order 0 and cval 0 marks where the patch has
        real data.
        """
        return self.warp_columns(np.ascontiguousarray(region.transpose(1, 2, 0, 3)), patch_shape_zyx, order, cval)

    def warp_columns(self, region_yxzc: np.ndarray, patch_shape_zyx: ShapeZYX, order: int = 1,
                     cval: float = 0.0) -> np.ndarray:
        """`warp` for a region laid out (Y, X, z, c), which is how training keeps its crops in memory.

        The 2D map is computed once; each patch voxel column (all z and c of one xy position) is a weighted
        sum of whole region columns, gathered in one `take`: three times faster than gathering per slice
        and about ten times faster than one `ndimage.affine_transform` per slice, with the same values.
        Returns a (z, y, x, c) view of a (y, x, z, c) array.
        """
        rows, columns, depth, channels = region_yxzc.shape
        _check_depth((depth,), patch_shape_zyx)
        matrix, offset = self._affine((rows, columns), patch_shape_zyx[1:])
        height, width = patch_shape_zyx[1:]
        grid = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij")).reshape(2, -1)
        source = matrix @ grid + offset[:, None]
        indices, weights = [], []
        outside = np.zeros(height * width)
        for y, x, weight in _taps(source, order):
            valid = (y >= 0) & (y < rows) & (x >= 0) & (x < columns)
            indices.append(np.where(valid, y * columns + x, 0).astype(np.intp))
            weights.append((weight * valid).astype(np.float32))
            outside += weight * ~valid
        flat = region_yxzc.reshape(rows * columns, depth * channels)
        gathered = np.take(flat, np.concatenate(indices), axis=0).reshape(len(indices), height * width, -1)
        patch = np.einsum("kpv,kp->pv", gathered, np.stack(weights)).astype(np.float32, copy=False)
        if cval:
            patch += (cval * outside).astype(np.float32)[:, None]
        return patch.reshape(height, width, depth, channels).transpose(2, 0, 1, 3)

    def warp_points(
        self, points_zyx: np.ndarray, region_shape_zyx: ShapeZYX, patch_shape_zyx: ShapeZYX
    ) -> np.ndarray:
        """Maps points (n, 3) from region to patch coordinates, exactly as `warp` moves the voxels.

        Points that land outside the patch are returned as well; the caller filters them.
        """
        _check_depth(region_shape_zyx, patch_shape_zyx)
        points = np.asarray(points_zyx, dtype=np.float64).reshape(-1, 3)
        warped = points.copy()
        relative = points[:, 1:] - _centre(region_shape_zyx[1:])
        warped[:, 1:] = relative @ self._patch_from_region().T + _centre(patch_shape_zyx[1:])
        return warped

    def warp_vectors(self, vectors_zyx: np.ndarray) -> np.ndarray:
        """Maps displacement vectors (n, 3) as `warp_points` maps differences of points (no translation)."""
        vectors = np.asarray(vectors_zyx, dtype=np.float64).reshape(-1, 3)
        warped = vectors.copy()
        warped[:, 1:] = vectors[:, 1:] @ self._patch_from_region().T
        return warped

    def _rotation(self) -> np.ndarray:
        cos, sin = (_snap(value) for value in (math.cos(self.angle), math.sin(self.angle)))
        return np.array([[cos, -sin], [sin, cos]])

    def _flips(self) -> np.ndarray:
        return np.diag([-1.0 if self.flip_y else 1.0, -1.0 if self.flip_x else 1.0])

    def _patch_from_region(self) -> np.ndarray:
        return self.scale * self._rotation() @ self._flips()

    def _region_from_patch(self) -> np.ndarray:
        """The inverse of `_patch_from_region`, written out (flips are their own inverse, rotations
        invert by transposing) so that it stays exact for flips and 90° multiples."""
        return self._flips() @ self._rotation().T / self.scale

    def _affine(
        self, region_shape_yx: tuple[int, ...], patch_shape_yx: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Matrix and offset in (y, x) that map patch to region coordinates (as ndimage.affine_transform takes)."""
        matrix = self._region_from_patch()
        return matrix, _centre(region_shape_yx) - matrix @ _centre(patch_shape_yx)


def _taps(source: np.ndarray, order: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Source rows, columns and weights of the interpolation: the nearest voxel, or the four of bilinear."""
    if order == 0:
        return [(np.rint(source[0]), np.rint(source[1]), np.ones(source.shape[1]))]
    if order != 1:
        raise ValueError(f"order {order}: only 0 (nearest) and 1 (bilinear) are supported")
    top, left = np.floor(source[0]), np.floor(source[1])
    down, right = source[0] - top, source[1] - left
    return [(top + dy, left + dx, (down if dy else 1 - down) * (right if dx else 1 - right))
            for dy in (0, 1) for dx in (0, 1)]


def sample_geometry(rng: np.random.Generator, settings: AugmentSettings) -> Geometry:
    """A random geometry; always draws four numbers, so the settings do not shift later draws."""
    flip_y, flip_x = rng.random(2) < 0.5
    angle = rng.uniform(0.0, 2 * math.pi)
    scale = rng.uniform(*settings.scale)
    return Geometry(
        flip_y=bool(flip_y and settings.flip),
        flip_x=bool(flip_x and settings.flip),
        angle=angle if settings.rotate else 0.0,
        scale=float(scale),
    )


def augment_intensity(
    patch: np.ndarray, rng: np.random.Generator, settings: AugmentSettings, *, same_for_all_channels: bool = True
) -> np.ndarray:
    """Depth dimming, gamma, contrast, brightness and noise, in that order, on a (z, y, x, c) patch.

    The parameters are drawn once for all channels by default (they are frames of one movie) or per
    channel; the noise is drawn per voxel. Values are not clipped. Returns a new float32 array.
    """
    draws = 1 if same_for_all_channels else patch.shape[3]
    dimming = rng.uniform(0.0, settings.depth_dimming, draws)
    gamma = rng.uniform(*settings.gamma, draws)
    contrast = rng.uniform(*settings.contrast, draws)
    brightness = rng.uniform(-settings.brightness, settings.brightness, draws)
    gaussian_std = rng.uniform(0.0, settings.gaussian_noise, draws)
    poisson_strength = rng.uniform(0.0, settings.poisson_noise, draws)

    result = patch.astype(np.float32, copy=True)
    if settings.depth_dimming > 0 and result.shape[0] > 1:
        result *= _depth_factors(result.shape[0], dimming)
    if settings.gamma != (1, 1):
        result = _apply_gamma(result, gamma)
    if settings.contrast != (1, 1):
        result *= contrast.astype(np.float32)
    if settings.brightness > 0:
        result += brightness.astype(np.float32)
    if settings.gaussian_noise > 0 or settings.poisson_noise > 0:
        result += _noise(result, rng, gaussian_std, poisson_strength)
    return result


def _depth_factors(depth: int, dimming: np.ndarray) -> np.ndarray:
    """Per-slice factors (z, 1, 1, c): exponential decay from 1 at the first slice to 1 - dimming at the last."""
    fraction = np.linspace(0.0, 1.0, depth)[:, None, None, None]
    return ((1.0 - dimming) ** fraction).astype(np.float32)


def _apply_gamma(values: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Gamma on the positive part only: negative values (background below the 1st percentile) stay as they are.

    The power is taken of values floored at a tiny number rather than 0, because `power` takes a slow path
    for 0 (five times slower here); values of 0 and below are then put back as they were."""
    result = np.maximum(values, _TINY)
    np.power(result, gamma.astype(np.float32), out=result)
    np.copyto(result, values, where=values <= 0)
    return result


def _noise(
    values: np.ndarray, rng: np.random.Generator, gaussian_std: np.ndarray, poisson_strength: np.ndarray
) -> np.ndarray:
    """Gaussian plus signal-dependent noise, drawn as one normal field: the sum of two independent normals
    is normal with the variances added."""
    gaussian_variance = (gaussian_std**2).astype(np.float32)
    poisson_variance = (poisson_strength**2).astype(np.float32)
    std = np.sqrt(gaussian_variance + poisson_variance * np.maximum(values, 0.0))
    return _standard_normal(rng, values.shape) * std


def _standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal values: a window at a random place in a fixed bank of them.

    Drawing fresh normals cost 1.7 ms per 64×64×16×3 patch, a fifth of making the patch; a window into a
    bank of 4 M values costs nothing, and a network cannot learn where in the bank a patch's noise began."""
    size = math.prod(shape)
    bank = _normal_bank()
    if size > len(bank):
        return rng.standard_normal(shape, dtype=np.float32)
    start = int(rng.integers(len(bank) - size + 1))
    return bank[start:start + size].reshape(shape)


@functools.cache
def _normal_bank() -> np.ndarray:
    return np.random.default_rng(_NOISE_BANK_SEED).standard_normal(_NOISE_BANK_SIZE, dtype=np.float32)


def _centre(shape: tuple[int, ...]) -> np.ndarray:
    """Coordinates of the centre of an array of this shape (half-way between voxels for even sizes)."""
    return (np.asarray(shape, dtype=np.float64) - 1) / 2


def _snap(value: float) -> float:
    nearest = round(value)
    return float(nearest) if abs(value - nearest) < _SNAP_TOLERANCE else value


def _with_parity(size: int, like: int) -> int:
    """`size`, or `size + 1` where its parity differs from `like`."""
    return size + (size - like) % 2


def _check_depth(region_shape_zyx: tuple[int, ...], patch_shape_zyx: ShapeZYX) -> None:
    if region_shape_zyx[0] != patch_shape_zyx[0]:
        raise ValueError(
            f"region depth {region_shape_zyx[0]} != patch depth {patch_shape_zyx[0]}: z is not transformed"
        )
