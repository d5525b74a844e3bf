"""The tracker on tiny problems with known answers, its exactness, confidence, probabilities and real data."""

from __future__ import annotations

import numpy as np
import pytest

from octrack.linking import MARGINAL_PROBABILITY, link_tracks
from octrack.linking.costs import CostSettings, MotionModel, compute_costs
from octrack.linking.graph import build_graph
from octrack.linking import solver
from octrack.linking.solver import _integer_program, candidate_pairs, solve
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking
from octrack.tracking.model import from_positions
from tests.helpers import real_data

VOXEL = VoxelSize(1.0, 1.0, 1.0)


def _walk(start: tuple[float, float, float], first: int, last: int, step=(0.5, 0.3, 0.0)) -> list[Position]:
    return [Position(start[0] + step[0] * i, start[1] + step[1] * i, start[2] + step[2] * i, first + i)
            for i in range(last - first + 1)]


def _positions(*tracks: list[Position]) -> Tracking:
    return from_positions([p for track in tracks for p in track], VOXEL)


def _links(tracking: Tracking) -> set:
    return set(tracking.links())


def _chain(track: list[Position]) -> set:
    return set(zip(track, track[1:]))


def test_straight_tracks_are_linked_exactly() -> None:
    tracks = [_walk((20, 20, 5), 0, 6), _walk((40, 22, 5), 0, 6, (-0.4, 0.6, 0)), _walk((30, 45, 5), 0, 6)]
    result = link_tracks(_positions(*tracks))
    assert _links(result.tracking) == set().union(*map(_chain, tracks))
    assert result.left_out == 0 and not result.tracking.divisions()


def test_a_division_is_found() -> None:
    mother = _walk((30, 30, 5), 0, 3)
    daughter_a = [Position(33, 31.5, 5, 4), Position(34.5, 32, 5, 5), Position(35.5, 32.5, 5, 6)]
    daughter_b = [Position(29, 29.5, 5, 4), Position(27.5, 29, 5, 5), Position(26.5, 28.5, 5, 6)]
    bystander = _walk((50, 10, 5), 0, 6)
    result = link_tracks(_positions(mother, daughter_a, daughter_b, bystander))
    assert result.tracking.divisions() == [mother[-1]]
    assert set(result.tracking.future(mother[-1])) == {daughter_a[0], daughter_b[0]}
    assert _links(result.tracking) >= _chain(daughter_a) | _chain(daughter_b) | _chain(bystander)


def test_appearing_at_the_border_is_cheaper_than_inside() -> None:
    inside, at_border = _walk((30, 30, 5), 0, 6), _walk((1, 30, 5), 3, 6)
    tracking = _positions(inside, at_border)
    graph = build_graph(tracking, use_tracking_links=False)
    costs = compute_costs(graph, CostSettings(), MotionModel(1.0), link_probability=None, division_probability=None,
                          image_box_um=(np.zeros(3), np.array([60.0, 60.0, 10.0])))
    index = {p: i for i, p in enumerate(graph.positions)}
    assert costs.appear[index[at_border[0]]] < costs.appear[index[inside[3]]]
    assert costs.appear[index[inside[0]]] == 0 and costs.disappear[index[inside[-1]]] == 0  # first/last time point
    result = link_tracks(tracking, image_shape_zyx=(11, 61, 61))
    assert result.tracking.past(at_border[0]) == [] and _links(result.tracking) == _chain(inside) | _chain(at_border)


def test_a_dropped_detection_is_bridged_by_a_gap_link_without_stealing_a_neighbour() -> None:
    broken, neighbour = _walk((20, 20, 5), 0, 6), _walk((27, 20, 5), 0, 6)
    kept = broken[:3] + broken[4:]
    bridged = _chain(broken[:3]) | {(broken[2], broken[4])} | _chain(broken[4:]) | _chain(neighbour)
    assert _links(link_tracks(_positions(kept, neighbour)).tracking) == bridged
    without_gaps = link_tracks(_positions(kept, neighbour), settings=CostSettings(gap=None))
    assert _links(without_gaps.tracking) == _chain(broken[:3]) | _chain(broken[4:]) | _chain(neighbour)


def test_a_false_detection_is_left_out() -> None:
    tracks = [_walk((20, 20, 5), 0, 6), _walk((40, 40, 5), 0, 6)]
    false = Position(70, 5, 5, 3)
    result = link_tracks(_positions(*tracks, [false]))
    assert result.left_out == 1 and false not in result.tracking
    assert _links(result.tracking) == _chain(tracks[0]) | _chain(tracks[1])


def test_ambiguous_links_have_the_lowest_marginal_probability() -> None:
    lone = _walk((10, 10, 5), 0, 4, (0.5, 0, 0))
    close_a = _walk((40, 40, 5), 0, 4, (0.5, 0, 0))
    close_b = _walk((40, 40.6, 5), 0, 4, (0.5, 0, 0))  # two cells side by side: their links could swap
    result = link_tracks(_positions(lone, close_a, close_b))
    tracking = result.tracking
    confidence = {link: tracking.link_data(*link)[MARGINAL_PROBABILITY] for link in tracking.links()}
    assert min(confidence[link] for link in _chain(lone)) > max(confidence[link] for link in _chain(close_a))
    assert result.uncertain_links == sum(value < 0.99 for value in confidence.values()) > 0
    assert all(0 < value <= 1 for value in confidence.values())


@pytest.mark.parametrize("largest_program", [1, 20_000])
def test_splitting_into_groups_gives_the_whole_problem_s_optimum(monkeypatch: pytest.MonkeyPatch,
                                                                 largest_program: int) -> None:
    """Solving per group (assignment problems plus programs over chunks of groups, one group each at the
    smallest chunk size) costs exactly what one program over the whole candidate graph costs: the split is
    exact."""
    monkeypatch.setattr(solver, "_LARGEST_PROGRAM", largest_program)
    random = np.random.default_rng(3)
    positions = [Position(random.uniform(0, 30) + 200 * side, random.uniform(0, 30), float(random.integers(0, 3)), t)
                 for t in range(6) for side in range(2) for _ in range(6)]
    graph = build_graph(from_positions(positions, VOXEL), use_tracking_links=False, factor=3)
    costs = compute_costs(graph, CostSettings(), MotionModel(2.0), link_probability=None, division_probability=None,
                          image_box_um=None)

    def total(links: np.ndarray, divisions: np.ndarray) -> float:
        alone = links.copy()
        alone[graph.division_links[divisions].ravel()] = False
        has_in, has_out = np.zeros(len(positions), bool), np.zeros(len(positions), bool)
        has_in[graph.link_target[links]] = has_out[graph.link_source[links]] = True
        left_out = ~has_in & ~has_out
        return (costs.link[alone].sum() + costs.division[divisions].sum() + costs.appear[~has_in & has_out].sum()
                + costs.disappear[has_in & ~has_out].sum()
                + np.minimum(costs.appear + costs.disappear, costs.leave_out)[left_out].sum())

    split = solve(graph, costs)
    assert split.groups > 1 and split.divisions.any()
    whole_pairs, whole_divisions = _integer_program(graph, costs, candidate_pairs(graph, costs,
                                                                                  np.arange(graph.link_count)),
                                                    np.arange(len(graph.division_links)))
    links = np.zeros(graph.link_count, bool)
    links[whole_pairs.link[whole_pairs.link >= 0]] = True
    links[graph.division_links[whole_divisions].ravel()] = True
    divisions = np.zeros(len(graph.division_links), bool)
    divisions[whole_divisions] = True
    assert total(split.links, split.divisions) == pytest.approx(total(links, divisions), abs=1e-6)


def test_network_probabilities_overrule_displacement() -> None:
    """Where links carry `link_probability`, those links are the candidates and their costs: the far link
    that the network trusts wins over the near one; a high `division_probability` makes a division."""
    a0, a1 = Position(10, 10, 0, 0), Position(10.5, 10, 0, 1)
    b1 = Position(16, 10, 0, 1)
    tracking = from_positions([a0, a1, b1], VOXEL)
    tracking.add_link(a0, a1, link_probability=0.02)
    tracking.add_link(a0, b1, link_probability=0.98)
    result = link_tracks(tracking)
    assert _links(result.tracking) == {(a0, b1)} and "link probabilities" in result.describe()
    assert result.tracking.link_data(a0, b1)["link_probability"] == 0.98
    c0 = Position(16, 12, 0, 0)  # another cell that b1 may come from instead
    tracking = from_positions([a0, c0, a1, b1], VOXEL)
    tracking.add_link(a0, a1, link_probability=0.97)
    tracking.add_link(a0, b1, link_probability=0.97)
    tracking.add_link(c0, b1, link_probability=0.5)
    tracking.set_position_data(a0, "division_probability", 0.99)
    assert _links(link_tracks(tracking).tracking) == {(a0, a1), (a0, b1)}
    tracking.set_position_data(a0, "division_probability", 0.001)
    assert _links(link_tracks(tracking).tracking) == {(a0, a1), (c0, b1)}


def test_real_lineage_slice() -> None:
    truth = load_tracking(real_data("celegans-lineage/ce01_t000-119.csv"), VoxelSize(0.09, 0.09, 1.0))
    first_part = from_positions([p for p in truth.positions() if p.t <= 40], truth.voxel_size)
    result = link_tracks(first_part, image_shape_zyx=(35, 512, 708))
    true_links = {link for link in truth.links() if link[1].t <= 40}
    found = _links(result.tracking)
    assert len(found & true_links) >= 0.995 * len(true_links) and len(found - true_links) <= 2
    true_divisions = {p for p in truth.divisions() if p.t < 40}
    assert len(set(result.tracking.divisions()) ^ true_divisions) <= 1
