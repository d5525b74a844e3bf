"""The pieces of the detection network: crop box, target, loss, pooling plan, tiling, peak decoding."""

from __future__ import annotations

import numpy as np
import pytest

from octrack.networks.blocks import pool_plan, tile_multiple
from octrack.networks.detect import crop_box
from octrack.networks.detect_model import detection_loss, render_target, uncertain_zone
from octrack.peaks import candidate_cap, find_peaks, find_peaks_at
from octrack.augment import AugmentSettings
from octrack.networks.detect_training import Crop, TrainingPatches, annotated_box
from octrack.tiling import plan_tiles, predict_tiled
from octrack.tracking import Position


def test_crop_box_encloses_positions_plus_margin_and_stays_in_the_image():
    positions = [Position(10, 20, 3, 0), Position(50, 30, 5, 0)]
    box = crop_box(positions, (8, 64, 64), (2, 16, 16))
    assert box == (slice(1, 8), slice(4, 47), slice(0, 64))


def test_target_peaks_at_each_centre_with_anisotropic_width():
    target = render_target(np.array([[4, 20, 20]]), (9, 41, 41), (0.75, 4.7, 4.7))
    assert target.max() == pytest.approx(1.0)
    assert np.unravel_index(target.argmax(), target.shape) == (4, 20, 20)
    assert target[5, 20, 20] < target[4, 20, 25]  # one slice in z is wider than 5 px in x (2 µm vs 1.6 µm)


def test_touching_nuclei_stay_two_peaks():
    target = render_target(np.array([[0, 20, 15], [0, 20, 25]]), (1, 40, 40), (1, 3, 3))
    peaks = find_peaks(target, 0.5, (1, 3, 3))
    assert len(peaks) == 2
    np.testing.assert_allclose(sorted(peaks[:, 2]), [15, 25], atol=0.3)


def test_a_weak_nucleus_on_the_slope_of_a_strong_one_is_kept_beyond_the_minimum_distance():
    strong = render_target(np.array([[0, 20, 14]]), (1, 40, 40), (1, 3, 3))
    weak = 0.4 * render_target(np.array([[0, 20, 22]]), (1, 40, 40), (1, 3, 3))
    peaks = find_peaks(np.maximum(strong, weak), 0.2, (1, 6, 6))  # 8 px apart, minimum 6 px
    np.testing.assert_allclose(sorted(peaks[:, 2]), [14, 22], atol=0.5)
    assert peaks[0, 3] > peaks[1, 3]  # strongest first
    closer = 0.4 * render_target(np.array([[0, 20, 19]]), (1, 40, 40), (1, 3, 3))
    assert len(find_peaks(np.maximum(strong, closer), 0.2, (1, 6, 6))) == 1  # 5 px apart: one nucleus


def test_peaks_are_refined_below_a_voxel():
    target = render_target(np.array([[3.0, 20.4, 17.6]]), (7, 40, 40), (1, 3, 3))
    (z, y, x, value), = find_peaks(target, 0.3, (1, 4, 4))
    assert (z, y, x) == pytest.approx((3.0, 20.4, 17.6), abs=0.15)
    assert value > 0.9


def test_maxima_on_the_outermost_column_are_nuclei_outside_the_image():
    target = render_target(np.array([[0, 20, -1.5], [0, 20, 20]]), (1, 40, 40), (1, 3, 3))
    peaks = find_peaks(target, 0.2, (1, 3, 3))
    assert len(peaks) == 1 and peaks[0, 2] == pytest.approx(20, abs=0.2)


def test_peaks_found_in_slabs_of_planes_are_those_of_the_whole_volume(monkeypatch):
    """Slabs of 1 to 5 planes (the filter sees each slab with its neighbouring planes) give the peaks of one
    slab for the whole volume, also with plateaus: the output quantised, peaks on a slab boundary included."""
    from scipy import ndimage

    from octrack import peaks

    random = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(random.random((9, 30, 30)), (1, 2, 2))
    quantised = (np.round(smooth * 40) / 40).astype(np.float32)
    whole = find_peaks(quantised, float(np.median(quantised)), (1, 3, 3))
    assert len(whole) > 10
    for planes in range(1, 6):
        monkeypatch.setattr(peaks, "MAXIMA_SLAB_VOXELS", planes * 30 * 30)
        np.testing.assert_array_equal(find_peaks(quantised, float(np.median(quantised)), (1, 3, 3)), whole)


def test_decoding_a_frame_of_noise_is_bounded_in_time_and_peaks_with_a_warning(caplog):
    """An untrained network's output at its worst: a local maximum in every 27 voxels of a 512 × 512 × 32
    frame. Decoding takes about a second (docs/benchmarks.md); the bound here is generous for a shared CPU."""
    import time

    noise = np.random.default_rng(0).random((32, 512, 512), dtype=np.float32)
    start = time.process_time()
    with caplog.at_level("WARNING", logger="octrack.peaks"):
        peaks = find_peaks(noise, 0.5, (1, 3, 3))
    assert time.process_time() - start < 15
    assert 0 < len(peaks) <= candidate_cap(noise.shape) < 300_000
    assert "only the strongest" in caplog.text and "untrained model or the wrong voxel size" in caplog.text


def test_a_constant_output_is_decoded_in_bounded_memory_with_a_warning(caplog):
    """A model that outputs one value everywhere makes the whole frame one plateau of maxima: only the first
    voxels (8 per candidate of the cap) are grouped, not every voxel of the frame."""
    import tracemalloc

    flat = np.full((16, 256, 256), 0.7, dtype=np.float32)
    tracemalloc.start()
    try:
        with caplog.at_level("WARNING", logger="octrack.peaks"):
            peaks = find_peaks(flat, 0.5, (1, 3, 3))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * flat.nbytes  # the filter's buffers take about 3; grouping all 1 M voxels about 25
    assert 0 < len(peaks) <= candidate_cap(flat.shape)
    assert "a model that outputs a constant?" in caplog.text


def test_the_minimum_distance_keeps_what_taking_peaks_one_by_one_keeps():
    """The suppression in rounds keeps exactly the peaks that the plain greedy loop keeps."""
    from octrack.peaks import _kept_apart

    random = np.random.default_rng(1)
    for distance in ((1, 3, 3), (2, 8, 5), (0.5, 1, 1)):
        points = random.uniform(0, 40, (400, 3))
        kept: list[int] = []
        for index, point in enumerate(points):
            if np.all(np.sum(((point - points[kept]) / distance) ** 2, axis=1) > 1):
                kept.append(index)
        assert 10 < len(kept) < 400
        np.testing.assert_array_equal(np.flatnonzero(_kept_apart(points, distance)), kept)


def test_peaks_at_several_thresholds_are_those_of_each_threshold_alone():
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(np.random.default_rng(2).random((8, 60, 60)), (1, 2, 2)).astype(np.float32)
    thresholds = (0.46, 0.5, 0.52, 0.55)
    for threshold, peaks in zip(thresholds, find_peaks_at(smooth, thresholds, (1, 4, 4))):
        np.testing.assert_array_equal(peaks, find_peaks(smooth, threshold, (1, 4, 4)))
    assert len(find_peaks(smooth, 0.46, (1, 4, 4))) > len(find_peaks(smooth, 0.52, (1, 4, 4))) > 0


def batch_loss(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The loss of a batch: the same value for every sample of it."""
    per_sample = np.asarray(detection_loss(y_true, y_pred))
    assert per_sample.shape == (len(y_true),) and np.all(per_sample == per_sample[0])
    return float(per_sample[0])


def test_loss_ignores_masked_voxels_and_balances_foreground():
    target = render_target(np.array([[0, 8, 8]]), (1, 16, 16), (1, 2, 2))
    mask = np.ones_like(target)
    perfect = target[np.newaxis, ..., np.newaxis]
    y_true = np.stack([target, mask], axis=-1)[np.newaxis]
    assert batch_loss(y_true, perfect) == pytest.approx(0.0, abs=1e-7)
    wrong_outside = perfect.copy()
    wrong_outside[0, 0, :, :4] = 1.0  # errors only where the mask is 0
    y_true_masked = y_true.copy()
    y_true_masked[0, 0, :, :4, 1] = 0
    assert batch_loss(y_true_masked, wrong_outside) == pytest.approx(0.0, abs=1e-7)
    missed = np.zeros_like(perfect)  # missing the one nucleus costs as much as the whole background could
    assert batch_loss(y_true, missed) > 0.05
    both = batch_loss(np.concatenate([y_true, y_true]), np.concatenate([perfect, missed]))
    assert 0 < both < batch_loss(y_true, missed)  # weighted over the whole batch's voxels


def test_annotated_box_drops_a_band_only_where_the_crop_edge_is_inside_the_image():
    low, high = annotated_box(np.array([0, 10, 0]), np.array([8, 40, 30]), np.array([8, 100, 30]),
                              np.array([1, 3, 3]))
    np.testing.assert_array_equal(low, [0, 3, 0])
    np.testing.assert_array_equal(high, [8, 37, 30])


def test_training_patches_stay_exactly_zero_beyond_the_image_edge_whatever_the_intensity_changes():
    """Prediction sees zeros beyond the image's edge; training must too, or noise there hides where the
    image ends, and with it whether a nucleus cut by the edge is mostly in the image or mostly outside."""
    image = np.full((4, 24, 24, 1), 0.2, dtype=np.float16)
    crop = Crop(np.ascontiguousarray(image.transpose(1, 2, 0, 3)), np.array([[2.0, 1.0, 1.0]]), np.zeros((0, 3)),
                np.zeros((0, 3)), np.zeros(3, int), np.array([4, 24, 24]), np.array([1.0, 2.0, 2.0], np.float32),
                np.array([2.0, 0.5, 0.5]), "train", "corner", np.array([4, 24, 24]))
    strong = AugmentSettings(flip=False, rotate=False, scale=(1, 1), brightness=0.3, gaussian_noise=0.2)
    patches = TrainingPatches([crop], (4, 16, 16), batch_size=8, seed=1, first_step=0, augment=strong, workers=1)
    x, y = patches[0]
    beyond = np.ones(x.shape[:4], dtype=bool)
    for sample, (low, high) in enumerate(_image_part(x[..., 0])):
        beyond[sample, low[0]:high[0], low[1]:high[1], low[2]:high[2]] = False
    assert beyond.any() and (~beyond).any()
    assert np.all(x[..., 0][beyond] == 0) and np.all(y[..., 1][beyond] == 0)
    assert np.all(x[..., 0][~beyond] != 0) and np.all(y[..., 1][~beyond] == 1)


def _image_part(patches: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per patch, the (z, y, x) box of its non-zero voxels."""
    boxes = []
    for patch in patches:
        voxels = np.argwhere(patch != 0)
        boxes.append((voxels.min(axis=0), voxels.max(axis=0) + 1))
    return boxes


def test_the_loss_ignores_the_output_around_uncertain_annotations_but_not_a_certain_neighbour():
    sigma = (1.0, 2.0, 2.0)
    target = render_target(np.array([[4.0, 10.0, 10.0]]), (8, 32, 32), sigma)
    zone = uncertain_zone(np.array([[4.0, 10.0, 18.0]]), target, sigma)
    assert zone[4, 10, 18] and zone[4, 10, 15] and not zone[4, 10, 13] and not zone[4, 10, 10]
    assert not zone[4, 10, 24] and not zone[4, 20, 18]
    assert not uncertain_zone(np.zeros((0, 3)), target, sigma).any()


def test_pooling_in_z_only_while_there_is_depth():
    assert pool_plan(1, 3) == [(1, 2, 2)] * 3
    assert pool_plan(16, 3) == [(2, 2, 2)] * 3
    assert pool_plan(8, 3) == [(2, 2, 2), (2, 2, 2), (1, 2, 2)]
    assert tile_multiple(pool_plan(8, 3)) == (4, 8, 8)


@pytest.mark.parametrize("margin", [(0, 0, 0), (0, 8, 5)])
@pytest.mark.parametrize("shape", [(1, 50, 70), (20, 100, 130), (5, 300, 301)])
def test_tiles_stitch_back_to_the_whole_volume(shape, margin):
    frames = [np.random.default_rng(0).random(shape, dtype=np.float32) for _ in range(2)]
    covered = tuple(size + 2 * extra for size, extra in zip(shape, margin))
    plan = plan_tiles(covered, (1 if shape[0] == 1 else 4, 8, 8), (2, 16, 16), max_voxels=20000)
    output = predict_tiled(lambda tile: tile * 2, frames, plan, margin)
    np.testing.assert_array_equal(output, 2 * np.stack(frames, axis=-1))


def test_the_tile_plan_computes_few_voxels_within_the_budget_and_keeps_the_whole_overlap():
    """A 512 × 512 × 32 frame with its margin: halving the largest axis gave 49 tiles of 40 × 136 × 136, 3.1 times
    the voxels covered; the fewest voxels within the same budget are about 2.2 times."""
    import math

    from octrack.tiling import tile_budget

    covered = (40, 544, 544)
    plan = plan_tiles(covered, (8, 8, 8), (32, 32, 32), tile_budget(16))
    assert math.prod(plan.tile_zyx) <= tile_budget(16) and plan.overlap_zyx == (0, 32, 32)
    assert len(list(plan.starts(covered))) * math.prod(plan.tile_zyx) < 2.2 * math.prod(covered)
    one_tile = plan_tiles((24, 100, 100), (8, 8, 8), (32, 32, 32), tile_budget(16))
    assert one_tile.tile_zyx == (24, 104, 104)  # one tile: no overlap
    tiny = plan_tiles((40, 544, 544), (8, 8, 8), (32, 32, 32), max_voxels=1000)  # no shape fits: the smallest
    assert tiny.tile_zyx == (40, 128, 128) and tiny.overlap_zyx == (0, 32, 32)


def test_a_network_of_fewer_filters_gets_larger_tiles_in_the_same_memory():
    """8 first-level filters instead of 16: half the memory per voxel, so tiles of twice the voxels, and the
    512 × 512 × 32 frame is computed in fewer, larger tiles (about 1.5 times the voxels covered, not 2.2)."""
    import math

    from octrack.tiling import tile_budget

    assert tile_budget(16) == 1 << 20 and tile_budget(8) == 2 << 20
    covered = (40, 544, 544)
    plan = plan_tiles(covered, (8, 8, 8), (32, 32, 32), max_voxels=tile_budget(8))
    assert tile_budget(16) < math.prod(plan.tile_zyx) <= tile_budget(8)
    assert len(list(plan.starts(covered))) * math.prod(plan.tile_zyx) < 1.6 * math.prod(covered)


def test_the_network_sees_zeros_for_the_margin_beyond_the_image_edges():
    frame = np.ones((1, 40, 40), dtype=np.float32)
    seen = []
    plan = plan_tiles((1, 56, 50), (1, 8, 8), (0, 0, 0), max_voxels=1 << 20)
    predict_tiled(lambda tile: seen.append(tile[0, ..., 0]) or tile, [frame], plan, (0, 8, 5))
    assert len(seen) == 1 and seen[0].shape == (1, 56, 56)
    np.testing.assert_array_equal(seen[0][0, 8:48, 5:45], 1)
    assert seen[0].sum() == 40 * 40


def test_patches_are_drawn_near_newborn_daughters_as_often_as_asked():
    """`division_patch_share`: the newborn daughters, rare among the nuclei, are where detection misses most."""
    from octrack.networks.detect_training import _patch_centre

    image = np.zeros((1, 200, 200, 1), dtype=np.float16)
    nuclei = np.array([[0.0, 20.0, 20.0 + 8 * i] for i in range(20)] + [[0.0, 180.0, 180.0]])
    crop = Crop(np.ascontiguousarray(image.transpose(1, 2, 0, 3)), nuclei, np.zeros((0, 3)), nuclei[-1:],
                np.zeros(3, int), np.array([1, 200, 200]), np.array([1.0, 2.0, 2.0], np.float32),
                np.array([1.0, 1.0, 1.0]), "train", "crop", np.array([1, 200, 200]))
    rng = np.random.default_rng(0)

    def near_newborn(share: float) -> float:
        centres = np.array([_patch_centre(crop, (1, 16, 16), rng, share) for _ in range(2000)])
        return float(np.mean(np.all(np.abs(centres[:, 1:] - 180) <= 4, axis=1)))

    assert near_newborn(0.0) < 0.06  # one nucleus of 21, 70 % of patches near a nucleus
    assert 0.25 < near_newborn(0.3) < 0.36
