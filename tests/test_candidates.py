import numpy as np

from octrack.candidates import candidate_links, candidate_pairs
from octrack.tracking import Position, Tracking, VoxelSize


def test_partners_within_factor_of_the_nearest_both_ways():
    sources = np.array([[0.0, 0, 0], [10, 0, 0]])
    targets = np.array([[1.0, 0, 0], [1.9, 0, 0], [2.1, 0, 0], [30, 0, 0]])
    forward_only = candidate_pairs(sources[:1], targets[:3], factor=2, max_partners=5)
    assert (0, 2) in forward_only  # found backwards: source 0 is target 2's nearest
    # Forward, source 0 (nearest 1) takes targets 0 and 1 but not 2 (2.1 > 2); source 1 (nearest 7.9)
    # takes 0, 1, 2. Backward, target 2 takes source 0; target 3 (nearest 20) takes both sources.
    pairs = candidate_pairs(sources, targets, factor=2, max_partners=5)
    assert pairs == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]
    tight = candidate_pairs(sources, targets[:2], factor=1.5, max_partners=5)
    assert tight == [(0, 0), (0, 1), (1, 0), (1, 1)]  # source 1: 8.1 ≤ 1.5 × 8.1; 9 ≤ 12.2


def test_at_most_max_partners_nearest_first():
    sources = np.array([[0.0, 0, 0], [100, 0, 0]])
    targets = np.array([[d, 0, 0] for d in (1.0, 1.1, 1.2, 1.3, 1.4)])
    # source 0 takes its 3 nearest (0, 1, 2), source 1 its 3 nearest (4, 3, 2); each target takes source 0
    assert candidate_pairs(sources, targets, factor=2, max_partners=3) == [
        (0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 4)]
    assert candidate_pairs(sources, targets, factor=1.05, max_partners=1) == [
        (0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 4)]


def test_empty_time_points_give_no_candidates():
    assert candidate_pairs(np.zeros((0, 3)), np.zeros((2, 3))) == []
    assert candidate_pairs(np.zeros((2, 3)), np.zeros((0, 3))) == []


def test_candidate_links_measure_in_micrometres():
    tracking = Tracking(VoxelSize(1, 1, 10))
    a = tracking.add_position(Position(0, 0, 0, 0))
    c = tracking.add_position(Position(0, 0, 3, 0))
    q = tracking.add_position(Position(3, 0, 0, 1))  # 3 µm (3 px) from a
    p = tracking.add_position(Position(0, 0, 2, 1))  # 20 µm (2 px) from a, 10 µm from c
    assert candidate_links(tracking, 0, factor=1, max_partners=1) == [(a, q), (c, p)]
    assert candidate_links(tracking, 1) == []


def test_partners_are_sought_where_the_whole_picture_moved():
    """Cells scattered at random about 16 apart, all shifted by 14 along x: without the shift most would find
    their own partner (14 away) beyond twice the distance to the nearest position at t+1."""
    random = np.random.default_rng(1)
    sources = np.column_stack([random.uniform(0, 200, (150, 2)), np.zeros(150)])
    targets = sources + [14.0, 0, 0] + np.column_stack([random.normal(0, 0.3, (150, 2)), np.zeros(150)])
    pairs = candidate_pairs(sources, targets, factor=2, max_partners=5)
    assert all((i, i) in pairs for i in range(len(sources)))


def test_few_positions_are_not_shifted():
    sources = np.array([[0.0, 0, 0], [10, 0, 0]])
    shifted = sources + [14.0, 0, 0]
    assert candidate_pairs(sources, shifted, factor=2, max_partners=5) == [(0, 0), (0, 1), (1, 0), (1, 1)]
