"""Marginal probabilities of links and divisions: equal to brute-force enumeration on tiny problems; the
temperature fit recovers a known temperature."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

from octrack.calibration import fit_temperature
from octrack.linking.costs import Costs
from octrack.linking.graph import CandidateGraph, build_graph
from octrack.linking.marginals import marginals
from octrack.linking.solver import solve
from octrack.tracking import Position, VoxelSize
from octrack.tracking.model import from_positions


def _tiny_graph(seed: int, per_time_point: int = 3, time_points: int = 2, gap_links: bool = False) -> CandidateGraph:
    random = np.random.default_rng(seed)
    positions = [Position(*random.uniform(0, 4, 2), 0.0, t) for t in range(time_points) for _ in range(per_time_point)]
    return build_graph(from_positions(positions, VoxelSize(1, 1, 1)), use_tracking_links=False, factor=10,
                       gap_links=gap_links)


def _random_costs(graph: CandidateGraph, seed: int, leave_out: bool = False) -> Costs:
    """Random costs; with `leave_out`, leaving a position out costs from much less to more than its appearing
    and disappearing."""
    random = np.random.default_rng(seed)
    link = random.uniform(-1, 4, graph.link_count)
    division = link[graph.division_links].sum(axis=1) + random.uniform(0, 4, len(graph.division_links))
    n = len(graph.positions)
    return Costs(link, division, random.uniform(0, 4, n), random.uniform(0, 4, n),
                 random.uniform(0, 8, n) if leave_out else None)


def _brute_force(graph: CandidateGraph, costs: Costs, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Link and division marginals over every valid solution: each position one way out and at most one way in
    (else it appears)."""
    link_total, division_total, total = np.zeros(graph.link_count), np.zeros(len(graph.division_links)), 0.0
    for links, divisions, cost in _solutions(graph, costs):
        weight = np.exp(-cost / temperature)
        total += weight
        link_total[links] += weight
        division_total[divisions] += weight
    return link_total / total, division_total / total


def _solutions(graph: CandidateGraph, costs: Costs) -> list[tuple[list[int], list[int], float]]:
    """Every valid solution: its links (those of divisions included), divisions and cost. A position left out
    (where `costs.leave_out` is given) fills its own way in and costs `leave_out` instead of its appearing and
    disappearing."""
    n = len(graph.positions)
    ways_out = []
    for source in range(n):
        options = [("disappear", source)] + ([("leave out", source)] if costs.leave_out is not None else [])
        options += [("link", link) for link in np.flatnonzero(graph.link_source == source)]
        options += [("division", d) for d in np.flatnonzero(graph.division_mother == source)]
        ways_out.append(options)
    solutions = []
    for choice in itertools.product(*ways_out):
        filled, cost, links, divisions = [], 0.0, [], []
        for kind, index in choice:
            if kind == "disappear":
                cost += costs.disappear[index]
            elif kind == "leave out":
                filled.append(index)
                cost += costs.leave_out[index]  # its way in is filled: no appearance
            elif kind == "link":
                filled.append(graph.link_target[index])
                cost += costs.link[index]
                links.append(index)
            else:
                filled += list(graph.link_target[graph.division_links[index]])
                cost += costs.division[index]
                divisions.append(index)
                links += list(graph.division_links[index])
        if len(set(filled)) < len(filled):
            continue
        cost += sum(costs.appear[p] for p in range(n) if p not in filled)
        solutions.append((links, divisions, cost))
    return solutions


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("temperature", [0.7, 1.5, 4.0])
def test_marginals_equal_brute_force_enumeration(seed: int, temperature: float) -> None:
    graph = _tiny_graph(seed)
    costs = _random_costs(graph, seed)
    result = marginals(graph, costs, solve(graph, costs), temperature)
    links, divisions = _brute_force(graph, costs, temperature)
    assert result.link == pytest.approx(links, abs=1e-6)
    assert result.division == pytest.approx(divisions, abs=1e-6)
    assert len(graph.division_links) > 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("temperature", [0.7, 1.5, 4.0])
def test_marginals_with_leaving_out_equal_brute_force_enumeration(seed: int, temperature: float) -> None:
    graph = _tiny_graph(seed)
    costs = _random_costs(graph, seed, leave_out=True)
    solution = solve(graph, costs)
    result = marginals(graph, costs, solution, temperature)
    links, divisions = _brute_force(graph, costs, temperature)
    assert result.link == pytest.approx(links, abs=1e-6)
    assert result.division == pytest.approx(divisions, abs=1e-6)
    linked = np.zeros(len(graph.positions), dtype=bool)
    linked[graph.link_source[solution.links]] = linked[graph.link_target[solution.links]] = True
    assert np.all(result.left_out[linked] < 1) and np.all(result.left_out <= result.appear + 1e-12)


@pytest.mark.parametrize("gap_links", [False, True])
@pytest.mark.parametrize("leave_out", [False, True])
def test_three_time_points_factorise_exactly(gap_links: bool, leave_out: bool) -> None:
    graph = _tiny_graph(11, per_time_point=2, time_points=3, gap_links=gap_links)
    assert np.any(graph.time[graph.link_target] - graph.time[graph.link_source] == 2) == gap_links
    costs = _random_costs(graph, 11, leave_out)
    result = marginals(graph, costs, solve(graph, costs), 1.5)
    links, divisions = _brute_force(graph, costs, 1.5)
    assert result.link == pytest.approx(links, abs=1e-6) and result.division == pytest.approx(divisions, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("leave_out", [False, True])
def test_crowded_parts_fall_back_to_belief_propagation_close_to_exact(monkeypatch: pytest.MonkeyPatch,
                                                                      seed: int, leave_out: bool) -> None:
    graph = _tiny_graph(seed, per_time_point=4)
    costs = _random_costs(graph, seed, leave_out)
    solution = solve(graph, costs)
    exact = marginals(graph, costs, solution, 1.5)
    monkeypatch.setattr(importlib.import_module("octrack.linking.marginals"), "MAX_STATES", 1)
    approximate = marginals(graph, costs, solution, 1.5)
    assert np.abs(approximate.link - exact.link).max() < 0.1  # every position near every other: the worst case
    assert np.abs(approximate.division - exact.division).max() < 0.1


def test_a_link_without_rivals_is_certain_and_the_temperature_must_be_positive() -> None:
    graph = build_graph(from_positions([Position(0, 0, 0, 0), Position(0.5, 0, 0, 1)], VoxelSize(1, 1, 1)),
                        use_tracking_links=False)
    costs = Costs(np.array([0.1]), np.zeros(0), np.array([0.0, 30.0]), np.array([30.0, 0.0]))
    assert marginals(graph, costs, solve(graph, costs), 1.5).link[0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        marginals(graph, costs, solve(graph, costs), 0.0)


def test_fitting_recovers_a_known_temperature() -> None:
    """Truth drawn from the Gibbs distribution at T = 2: the chosen links' marginals at T are then exactly their
    probability of being right, and the fit finds T."""
    random = np.random.default_rng(0)
    cost_gaps = random.exponential(3.0, 4000)  # how much dearer the alternative of each chosen link is
    true_temperature = 2.0

    def probability(temperature: float) -> np.ndarray:
        return 1 / (1 + np.exp(-cost_gaps / temperature))

    correct = random.random(len(cost_gaps)) < probability(true_temperature)
    assert fit_temperature(probability, correct) == pytest.approx(true_temperature, rel=0.1)


def test_fitting_recovers_the_temperature_of_lineages_drawn_from_the_tracker_s_own_distribution() -> None:
    """Many tiny problems with random costs; the true lineage of each is drawn from P ∝ exp(−cost / 2); the
    tracker's chosen links, labelled right or wrong by it, give back T ≈ 2."""
    random = np.random.default_rng(1)
    true_temperature, problems, labels = 2.0, [], []
    for seed in range(150):
        graph = _tiny_graph(100 + seed, per_time_point=2)
        costs = _random_costs(graph, 100 + seed)
        solution = solve(graph, costs)
        solutions = _solutions(graph, costs)
        weights = np.exp(-np.array([cost for _, _, cost in solutions]) / true_temperature)
        true_links = set(solutions[random.choice(len(solutions), p=weights / weights.sum())][0])
        problems.append((graph, costs, solution))
        labels += [link in true_links for link in np.flatnonzero(solution.links)]

    def probabilities(temperature: float) -> np.ndarray:
        return np.concatenate([marginals(graph, costs, solution, temperature).link[solution.links]
                               for graph, costs, solution in problems])

    assert fit_temperature(probabilities, np.array(labels)) == pytest.approx(true_temperature, rel=0.35)


def test_fitting_refuses_labels_of_one_kind_only() -> None:
    assert fit_temperature(lambda t: np.full(3, 0.9), np.ones(3, dtype=bool)) is None
