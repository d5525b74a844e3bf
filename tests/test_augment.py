"""Augmentation: geometry stays consistent between voxels and points, intensity changes are controlled."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from octrack.augment import AugmentSettings, Geometry, augment_intensity, sample_geometry

PATCH_SHAPES = [(1, 32, 32), (1, 33, 48), (1, 41, 27), (5, 32, 32), (4, 40, 27), (3, 25, 36)]

ALL_OFF = AugmentSettings(
    flip=False, rotate=False, scale=(1.0, 1.0), brightness=0.0, contrast=(1.0, 1.0), gamma=(1.0, 1.0),
    gaussian_noise=0.0, poisson_noise=0.0, depth_dimming=0.0,
)

# One setting of each intensity part that turns it on, starting from ALL_OFF.
INTENSITY_PARTS = {
    "brightness": {"brightness": 0.1},
    "contrast": {"contrast": (0.75, 1.25)},
    "gamma": {"gamma": (0.8, 1.25)},
    "gaussian_noise": {"gaussian_noise": 0.03},
    "poisson_noise": {"poisson_noise": 0.05},
    "depth_dimming": {"depth_dimming": 0.3},
}


def blob(region_shape_zyx: tuple[int, int, int], point_zyx: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """A (z, y, x, 1) region holding a 2D Gaussian around the point's (y, x) in slice z (an integer)."""
    region = np.zeros((*region_shape_zyx, 1), dtype=np.float32)
    y, x = np.mgrid[0 : region_shape_zyx[1], 0 : region_shape_zyx[2]]
    squared = (y - point_zyx[1]) ** 2 + (x - point_zyx[2]) ** 2
    region[int(point_zyx[0]), :, :, 0] = np.exp(-squared / (2 * sigma**2))
    return region


@pytest.mark.parametrize("patch_shape", PATCH_SHAPES)
def test_points_move_with_the_voxels(patch_shape):
    rng = np.random.default_rng(sum(patch_shape))
    for _ in range(8):
        geometry = sample_geometry(rng, AugmentSettings())
        region_shape = geometry.source_extent(patch_shape)
        reach = 0.2 * min(patch_shape[1:])
        point = np.array([
            rng.integers(region_shape[0]),
            (region_shape[1] - 1) / 2 + rng.uniform(-reach, reach),
            (region_shape[2] - 1) / 2 + rng.uniform(-reach, reach),
        ])
        patch = geometry.warp(blob(region_shape, point), patch_shape)
        expected = geometry.warp_points(point[None], region_shape, patch_shape)[0]
        np.testing.assert_allclose(ndimage.center_of_mass(patch[..., 0]), expected, atol=0.5)


@pytest.mark.parametrize("patch_shape", PATCH_SHAPES)
def test_exact_transforms_move_voxels_onto_warped_points(patch_shape):
    """For flips (and 90° rotations of square patches) a single voxel lands exactly on its warped point."""
    square = patch_shape[1] == patch_shape[2]
    angles = [k * math.pi / 2 for k in range(4)] if square else [0.0, math.pi]
    for angle in angles:
        for flip_y in (False, True):
            geometry = Geometry(flip_y=flip_y, flip_x=True, angle=angle)
            region_shape = geometry.source_extent(patch_shape)
            assert region_shape == patch_shape
            point = np.array([patch_shape[0] - 1, 3, patch_shape[2] - 5])
            region = np.zeros((*region_shape, 1), dtype=np.float32)
            region[tuple(point)] = 1.0
            patch = geometry.warp(region, patch_shape)
            warped = geometry.warp_points(point[None], region_shape, patch_shape)[0]
            assert np.argwhere(patch[..., 0] == 1.0).tolist() == [np.round(warped).astype(int).tolist()]
            np.testing.assert_allclose(warped, np.round(warped), atol=1e-9)
            assert patch.sum() == 1.0


@pytest.mark.parametrize("patch_shape", [(1, 32, 32), (3, 25, 25), (2, 65, 65), (2, 30, 41)])
def test_identity_flips_and_right_angles_are_exact(patch_shape):
    """Exact, also for angles beyond 2π, where cos and sin are not exactly 0 or ±1."""
    rng = np.random.default_rng(1)
    margin = 3
    region = rng.random((patch_shape[0], patch_shape[1] + 2 * margin, patch_shape[2] + 2 * margin, 2),
                        dtype=np.float32)
    crop = region[:, margin:-margin, margin:-margin]
    np.testing.assert_array_equal(Geometry().warp(region, patch_shape), crop)
    np.testing.assert_array_equal(Geometry(flip_x=True).warp(region, patch_shape), crop[:, :, ::-1])
    np.testing.assert_array_equal(Geometry(flip_y=True).warp(region, patch_shape), crop[:, ::-1])
    if patch_shape[1] == patch_shape[2]:
        for k in range(1, 4):
            for turns in (0, 2):
                rotated = Geometry(angle=(k + 4 * turns) * math.pi / 2).warp(region, patch_shape)
                np.testing.assert_array_equal(rotated, np.rot90(crop, k, axes=(1, 2)))


@pytest.mark.parametrize("patch_shape", PATCH_SHAPES)
def test_source_extent_covers_the_patch_and_is_bounded(patch_shape):
    rng = np.random.default_rng(2)
    settings = AugmentSettings()
    for _ in range(10):
        geometry = sample_geometry(rng, settings)
        region_shape = geometry.source_extent(patch_shape)
        bound = math.ceil(max(patch_shape[1:]) * math.sqrt(2) / settings.scale[0]) + 2
        assert region_shape[0] == patch_shape[0]
        assert all(size <= bound for size in region_shape[1:])
        assert all((size - patch_size) % 2 == 0 for size, patch_size in zip(region_shape, patch_shape))
        mask = geometry.warp(np.ones((*region_shape, 1), dtype=np.float32), patch_shape, order=0)
        assert mask.min() == 1.0


def test_masks_stay_binary_and_mark_the_outside():
    rng = np.random.default_rng(3)
    patch_shape = (2, 40, 40)
    for _ in range(10):
        geometry = sample_geometry(rng, AugmentSettings())
        depth, height, width = geometry.source_extent(patch_shape)
        too_small = (depth, height - 12, width - 12)  # a region cut short, as at an image border
        mask = (rng.random((*too_small, 1)) < 0.5).astype(np.float32)
        warped = geometry.warp(mask, patch_shape, order=0, cval=0.0)
        assert set(np.unique(warped)) <= {0.0, 1.0}
        inside = geometry.warp(np.ones_like(mask), patch_shape, order=0, cval=0.0)
        assert 0 < inside.mean() < 1


def test_warp_vectors_match_differences_of_warped_points():
    rng = np.random.default_rng(4)
    region_shape, patch_shape = (3, 70, 61), (3, 40, 35)
    for _ in range(10):
        geometry = sample_geometry(rng, AugmentSettings())
        start, end = rng.uniform(0, 60, (2, 5, 3))
        warped_start = geometry.warp_points(start, region_shape, patch_shape)
        warped_end = geometry.warp_points(end, region_shape, patch_shape)
        np.testing.assert_allclose(geometry.warp_vectors(end - start), warped_end - warped_start, atol=1e-9)
        np.testing.assert_array_equal(geometry.warp_vectors(end - start)[:, 0], (end - start)[:, 0])


def test_geometry_is_deterministic_and_settings_turn_parts_off():
    first = [sample_geometry(np.random.default_rng(5), AugmentSettings()) for _ in range(2)]
    assert first[0] == first[1]
    rng = np.random.default_rng(6)
    geometries = [sample_geometry(rng, AugmentSettings()) for _ in range(50)]
    assert any(g.flip_x for g in geometries) and any(g.flip_y for g in geometries)
    assert len({g.angle for g in geometries}) == 50 and len({g.scale for g in geometries}) == 50
    assert all(sample_geometry(rng, ALL_OFF) == Geometry() for _ in range(20))
    no_flip = [sample_geometry(rng, replace(AugmentSettings(), flip=False)) for _ in range(20)]
    assert not any(g.flip_x or g.flip_y for g in no_flip)
    assert all(sample_geometry(rng, replace(AugmentSettings(), rotate=False)).angle == 0.0 for _ in range(20))
    assert all(sample_geometry(rng, replace(AugmentSettings(), scale=(1.0, 1.0))).scale == 1.0 for _ in range(20))


def test_warp_needs_the_patch_depth():
    with pytest.raises(ValueError, match="depth"):
        Geometry().warp(np.zeros((3, 10, 10, 1), dtype=np.float32), (2, 10, 10))


def sample_patch(
    rng: np.random.Generator, shape_zyx: tuple[int, int, int] = (4, 16, 16), channels: int = 3
) -> np.ndarray:
    """Normalised-looking data: mostly 0..1, some values a little below 0 and above 1."""
    return rng.uniform(-0.1, 1.2, (*shape_zyx, channels)).astype(np.float32)


def test_intensity_is_deterministic_finite_and_leaves_the_input():
    patch = sample_patch(np.random.default_rng(7))
    original = patch.copy()
    results = [augment_intensity(patch, np.random.default_rng(8), AugmentSettings()) for _ in range(2)]
    np.testing.assert_array_equal(results[0], results[1])
    assert results[0].dtype == np.float32 and results[0].shape == patch.shape
    assert np.isfinite(results[0]).all()
    assert not np.array_equal(results[0], augment_intensity(patch, np.random.default_rng(9), AugmentSettings()))
    np.testing.assert_array_equal(patch, original)


def test_intensity_stays_finite_on_extreme_values():
    patch = np.array([-5.0, -1e-30, 0.0, 1e-30, 1.0, 30.0], dtype=np.float32).reshape(1, 1, 6, 1)
    strong = AugmentSettings(gamma=(0.1, 3.0), gaussian_noise=0.5, poisson_noise=0.5)
    for seed in range(20):
        assert np.isfinite(augment_intensity(patch, np.random.default_rng(seed), strong)).all()


def test_intensity_all_off_changes_nothing():
    patch = sample_patch(np.random.default_rng(10))
    np.testing.assert_array_equal(augment_intensity(patch, np.random.default_rng(11), ALL_OFF), patch)


@pytest.mark.parametrize("part", INTENSITY_PARTS)
def test_each_intensity_part_changes_the_patch_alone(part):
    patch = sample_patch(np.random.default_rng(12))
    only_this = replace(ALL_OFF, **INTENSITY_PARTS[part])
    assert not np.array_equal(augment_intensity(patch, np.random.default_rng(13), only_this), patch)


def test_settings_do_not_shift_the_random_draws():
    """Parameters are drawn whatever the settings: on a zero patch, which dimming, gamma and contrast
    leave alone, the brightness shift is the same with or without them."""
    zeros = np.zeros((4, 8, 8, 2), dtype=np.float32)
    no_noise = replace(AugmentSettings(), gaussian_noise=0.0, poisson_noise=0.0)
    with_others = augment_intensity(zeros, np.random.default_rng(15), no_noise)
    alone = augment_intensity(zeros, np.random.default_rng(15), replace(ALL_OFF, brightness=no_noise.brightness))
    np.testing.assert_array_equal(with_others, alone)
    flipping = sample_geometry(np.random.default_rng(15), AugmentSettings())
    not_flipping = sample_geometry(np.random.default_rng(15), replace(AugmentSettings(), flip=False))
    assert (flipping.angle, flipping.scale) == (not_flipping.angle, not_flipping.scale)


def test_brightness_contrast_and_gamma_keep_their_meaning():
    patch = sample_patch(np.random.default_rng(16))
    shifted = augment_intensity(patch, np.random.default_rng(17), replace(ALL_OFF, brightness=0.1))
    shift = shifted - patch
    assert np.ptp(shift) < 1e-6 and 0 < abs(shift.flat[0]) <= 0.1
    scaled = augment_intensity(patch, np.random.default_rng(17), replace(ALL_OFF, contrast=(0.75, 1.25)))
    ratio = scaled[patch != 0] / patch[patch != 0]
    assert np.ptp(ratio) < 1e-5 and 0.75 <= ratio[0] <= 1.25
    gamma = augment_intensity(patch, np.random.default_rng(17), replace(ALL_OFF, gamma=(0.8, 1.25)))
    negative = patch < 0
    np.testing.assert_array_equal(gamma[negative], patch[negative])
    assert (gamma[~negative] >= 0).all()


def test_depth_dimming_darkens_deeper_slices_and_skips_2d():
    patch = np.ones((6, 4, 4, 2), dtype=np.float32)
    lost = []
    for seed in range(30):
        dimmed = augment_intensity(patch, np.random.default_rng(seed), replace(ALL_OFF, depth_dimming=0.3))
        per_slice = dimmed[:, 0, 0, 0]
        assert per_slice[0] == 1.0 and np.all(np.diff(per_slice) < 0)
        np.testing.assert_allclose(np.diff(np.log(per_slice)), np.log(per_slice[1]), rtol=1e-4)
        lost.append(1 - per_slice[-1])
    assert 0.25 < max(lost) <= 0.3 + 1e-6
    flat = np.ones((1, 4, 4, 2), dtype=np.float32)
    dimmed_flat = augment_intensity(flat, np.random.default_rng(18), replace(ALL_OFF, depth_dimming=0.3))
    np.testing.assert_array_equal(dimmed_flat, flat)


def test_noise_depends_on_the_signal():
    patch = np.zeros((1, 64, 64, 2), dtype=np.float32)
    patch[..., 1] = 1.0
    noisy = augment_intensity(patch, np.random.default_rng(19), replace(ALL_OFF, poisson_noise=0.05))
    assert np.array_equal(noisy[..., 0], patch[..., 0]) and noisy[..., 1].std() > 0


def test_channels_share_parameters_unless_asked_otherwise():
    channel = sample_patch(np.random.default_rng(20), channels=1)
    patch = np.repeat(channel, 3, axis=3)
    no_noise = replace(AugmentSettings(), gaussian_noise=0.0, poisson_noise=0.0)
    shared = augment_intensity(patch, np.random.default_rng(21), no_noise)
    assert np.array_equal(shared[..., 0], shared[..., 1]) and np.array_equal(shared[..., 0], shared[..., 2])
    separate = augment_intensity(patch, np.random.default_rng(21), no_noise, same_for_all_channels=False)
    assert not np.array_equal(separate[..., 0], separate[..., 1])
