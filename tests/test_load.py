"""The tracker's bounds under load (docs/reliability.md, "Load"): integer programs of bounded size, crowded
groups linked without divisions as sparse assignment problems, both exact where they apply; and the script
that makes the load checks' positions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import octrack.linking.solver as solver
from octrack.linking import link_tracks
from octrack.linking.costs import CostSettings, MotionModel, compute_costs
from octrack.linking.graph import build_graph
from octrack.tracking import Position, VoxelSize, load_tracking
from octrack.tracking.model import from_positions

VOXEL = VoxelSize(1.0, 1.0, 1.0)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "load_track.py"


def random_problem(seed: int, spread: float = 30.0):
    random = np.random.default_rng(seed)
    positions = [Position(*random.uniform(0, spread, 2), float(random.integers(0, 3)), t)
                 for t in range(5) for _ in range(15)]
    graph = build_graph(from_positions(positions, VOXEL), use_tracking_links=False, factor=3)
    costs = compute_costs(graph, CostSettings(), MotionModel(2.0), link_probability=None,
                          division_probability=None, image_box_um=None)
    return graph, costs


def total_cost(graph, costs, links: np.ndarray, divisions: np.ndarray) -> float:
    alone = links.copy()
    alone[graph.division_links[divisions].ravel()] = False
    has_in, has_out = np.zeros(len(graph.positions), bool), np.zeros(len(graph.positions), bool)
    has_in[graph.link_target[links]] = has_out[graph.link_source[links]] = True
    return float(costs.link[alone].sum() + costs.division[divisions].sum() + costs.appear[~has_in].sum()
                 + costs.disappear[~has_out].sum())


def whole_program(graph, costs, divisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    chosen_links, chosen_divisions = solver._integer_program(graph, costs, np.arange(graph.link_count), divisions)
    links = np.zeros(graph.link_count, bool)
    links[chosen_links] = True
    links[graph.division_links[chosen_divisions].ravel()] = True
    division_mask = np.zeros(len(graph.division_links), bool)
    division_mask[chosen_divisions] = True
    return links, division_mask


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_programs_in_small_batches_keep_the_optimum(seed, monkeypatch):
    graph, costs = random_problem(seed)
    monkeypatch.setattr(solver, "PROGRAM_SIZE", 5)  # a program per group or two
    split = solver.solve(graph, costs)
    assert split.divisions.any() and split.crowded_groups == 0
    whole = whole_program(graph, costs, np.arange(len(graph.division_links)))
    assert total_cost(graph, costs, split.links, split.divisions) == pytest.approx(total_cost(graph, costs, *whole))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crowded_groups_are_the_optimum_without_divisions(seed, monkeypatch):
    graph, costs = random_problem(seed, spread=12.0)
    monkeypatch.setattr(solver, "CROWDED_GROUP", 10)
    split = solver.solve(graph, costs)
    assert split.crowded_groups >= 1 and not split.divisions.any()
    links = np.flatnonzero(costs.link < costs.disappear[graph.link_source] + costs.appear[graph.link_target])
    dense = np.zeros(graph.link_count, bool)
    dense[dense_assignment(graph, costs, links)] = True
    assert total_cost(graph, costs, split.links, split.divisions) == pytest.approx(
        total_cost(graph, costs, dense, split.divisions))


def dense_assignment(graph, costs, links: np.ndarray) -> np.ndarray:
    """The reference: one dense assignment problem over all the links (sources may disappear, targets appear)."""
    from scipy.optimize import linear_sum_assignment

    sources, source_index = np.unique(graph.link_source[links], return_inverse=True)
    targets, target_index = np.unique(graph.link_target[links], return_inverse=True)
    s, t = len(sources), len(targets)
    matrix = np.full((s + t, t + s), np.inf)
    matrix[source_index, target_index] = costs.link[links]
    matrix[np.arange(s), t + np.arange(s)] = costs.disappear[sources]
    matrix[s + np.arange(t), np.arange(t)] = costs.appear[targets]
    matrix[s:, t:] = 0.0
    rows, columns = linear_sum_assignment(matrix)
    lookup = {(a, b): link for a, b, link in zip(source_index, target_index, links)}
    return np.array([lookup[a, b] for a, b in zip(rows, columns) if a < s and b < t], dtype=np.int64)


def test_load_script_and_a_crowded_track(tmp_path, monkeypatch):
    path = tmp_path / "crowded.csv"
    subprocess.run([sys.executable, str(SCRIPT), "crowded", "600", "3", str(path)], check=True,
                   capture_output=True)
    tracking = load_tracking(path, VOXEL)
    assert len(tracking) == 600 and [len(tracking.positions_at(t)) for t in range(3)] == [200, 200, 200]
    monkeypatch.setattr(solver, "CROWDED_GROUP", 500)
    result = link_tracks(tracking)
    assert "too crowded for divisions" in result.describe() and not result.tracking.divisions()
    assert result.tracking.link_count() > 300
