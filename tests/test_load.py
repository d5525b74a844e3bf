"""The tracker's bounds under load (docs/reliability.md, "Load"): crowded clusters linked without divisions (the
optimum without them, said in the summary), large groups without divisions as programs (the dense assignment's
optimum), groups too large for one program in windows of time points (a valid tracking near the optimum),
the exact marginals' bit masks as narrow as the open targets; and the script that makes the load checks'
positions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from octrack.linking import link_tracks, solver
from octrack.linking.marginals import _step_masks
from octrack.linking.costs import CostSettings, MotionModel, compute_costs
from octrack.linking.graph import build_graph
from octrack.linking.solver import _integer_program, candidate_pairs, solve
from octrack.tracking import Position, VoxelSize, load_tracking
from octrack.tracking.model import from_positions

VOXEL = VoxelSize(1.0, 1.0, 1.0)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "load_track.py"


def random_problem(seed: int, spread: float, per_time_point: int = 12, time_points: int = 6,
                   settings: CostSettings = CostSettings(division=0.0)):  # cheap divisions: some are chosen
    random = np.random.default_rng(seed)
    positions = [Position(*random.uniform(0, spread, 2), float(random.integers(0, 3)), t)
                 for t in range(time_points) for _ in range(per_time_point)]
    graph = build_graph(from_positions(positions, VOXEL), use_tracking_links=False, factor=3, gap_links=True)
    costs = compute_costs(graph, settings, MotionModel(2.0), link_probability=None, division_probability=None,
                          image_box_um=None)
    return graph, costs


def total_cost(graph, costs, links: np.ndarray, divisions: np.ndarray) -> float:
    """The cost of a solution; asserts that it is one (at most one way in and out per position, a mother's two
    daughters among its links)."""
    n = len(graph.positions)
    alone = links.copy()
    alone[graph.division_links[divisions].ravel()] = False
    ins = np.bincount(graph.link_target[links], minlength=n)
    outs = np.bincount(graph.link_source[alone], minlength=n) + np.bincount(graph.division_mother[divisions],
                                                                              minlength=n)
    assert ins.max(initial=0) <= 1 and outs.max(initial=0) <= 1
    has_in, has_out = ins > 0, outs > 0
    left_out = ~has_in & ~has_out
    return float(costs.link[alone].sum() + costs.division[divisions].sum() + costs.appear[~has_in & has_out].sum()
                 + costs.disappear[has_in & ~has_out].sum()
                 + np.minimum(costs.appear + costs.disappear, costs.leave_out)[left_out].sum())


def one_program(graph, costs, divisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference: one integer program over every candidate link and `divisions`."""
    pairs, chosen = _integer_program(graph, costs, candidate_pairs(graph, costs, np.arange(graph.link_count)),
                                     divisions)
    links = np.zeros(graph.link_count, bool)
    links[pairs.link[pairs.link >= 0]] = True
    links[graph.division_links[chosen].ravel()] = True
    division_mask = np.zeros(len(graph.division_links), bool)
    division_mask[chosen] = True
    return links, division_mask


@pytest.mark.parametrize("seed", [0, 1])
def test_crowded_clusters_get_the_optimum_without_divisions(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, costs = random_problem(seed, spread=12.0)
    assert solve(graph, costs).divisions.any()  # not crowded at the real bound
    monkeypatch.setattr(solver, "CROWDED_CLUSTER", 10)
    monkeypatch.setattr(solver, "CROWDED_DENSITY", 1.0)
    monkeypatch.setattr(solver, "_LARGEST_ASSIGNMENT", 5)  # large assignment problems as programs, too
    crowded = solve(graph, costs)
    assert crowded.crowded_clusters >= 1 and not crowded.divisions.any()
    assert total_cost(graph, costs, crowded.links, crowded.divisions) == pytest.approx(
        total_cost(graph, costs, *one_program(graph, costs, np.zeros(0, dtype=np.int64))), abs=1e-6)


def test_a_large_cluster_of_cells_apart_is_not_crowded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Size alone does not make a cluster crowded (a large field of cells links into one cluster): its density
    must pass `CROWDED_DENSITY` too. The load script's random walk (cells 8 µm apart) is not; its crowded spot is."""
    monkeypatch.setattr(solver, "CROWDED_CLUSTER", 10)
    for layout, crowded in (("walk", 0), ("crowded", 2)):
        path = tmp_path / f"{layout}.csv"
        subprocess.run([sys.executable, str(SCRIPT), layout, "600", "3", str(path)], check=True, capture_output=True)
        assert link_tracks(load_tracking(path, VOXEL)).crowded_clusters == crowded, layout


@pytest.mark.parametrize("seed", [0, 1])
def test_a_crowded_group_too_large_for_one_problem_is_assigned_in_windows_near_the_optimum(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, costs = random_problem(seed, spread=12.0)
    best = total_cost(graph, costs, *one_program(graph, costs, np.zeros(0, dtype=np.int64)))
    monkeypatch.setattr(solver, "CROWDED_CLUSTER", 10)
    monkeypatch.setattr(solver, "CROWDED_DENSITY", 1.0)
    monkeypatch.setattr(solver, "_LARGEST_GROUP", 50)
    monkeypatch.setattr(solver, "_LARGEST_PROGRAM", 40)
    windowed = solve(graph, costs)
    assert not windowed.divisions.any()
    assert total_cost(graph, costs, windowed.links, windowed.divisions) == pytest.approx(best, rel=0.01)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_large_assignment_problem_as_a_program_equals_the_dense_one(seed: int, monkeypatch: pytest.MonkeyPatch
                                                                      ) -> None:
    graph, costs = random_problem(seed, spread=40.0, settings=CostSettings(division=1e9))
    dense = solve(graph, costs)
    monkeypatch.setattr(solver, "_LARGEST_ASSIGNMENT", 1)
    sparse = solve(graph, costs)
    assert total_cost(graph, costs, sparse.links, sparse.divisions) == pytest.approx(
        total_cost(graph, costs, dense.links, dense.divisions), abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_group_too_large_for_one_program_is_solved_in_windows_near_the_optimum(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    graph, costs = random_problem(seed, spread=30.0)
    whole = total_cost(graph, costs, *one_program(graph, costs, np.arange(len(graph.division_links))))
    monkeypatch.setattr(solver, "_LARGEST_GROUP", 50)
    monkeypatch.setattr(solver, "_LARGEST_PROGRAM", 40)  # windows of one or two time points
    windowed = solve(graph, costs)
    assert windowed.divisions.any()
    assert total_cost(graph, costs, windowed.links, windowed.divisions) == pytest.approx(whole, rel=0.01)
    assert windowed.links.sum() > 0.5 * len(graph.positions)


def test_bit_masks_of_the_exact_sum_stay_as_wide_as_the_open_targets() -> None:
    """A chain of 2 000 sources, each filling its own target or the next one's: two targets are open at a time,
    so two bits suffice however long the chain."""
    count = 2000
    targets = np.c_[np.r_[np.arange(count), np.arange(1, count + 1)], np.full(2 * count, -1)]
    steps = [np.array([source, count + source]) for source in range(count)]
    masks, after = zip(*_step_masks(steps, targets))
    assert max(mask.bit_length() for step in masks for mask in step) <= 2 and len(after) == count
    assert after[-1] == 0 and all(bin(state).count("1") == 1 for state in after[:-1])


def test_load_script_and_a_crowded_track_said_in_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    path = tmp_path / "crowded.csv"
    subprocess.run([sys.executable, str(SCRIPT), "crowded", "600", "3", str(path)], check=True, capture_output=True)
    tracking = load_tracking(path, VOXEL)
    assert len(tracking) == 600 and [len(tracking.positions_at(t)) for t in range(3)] == [200, 200, 200]
    monkeypatch.setattr(solver, "CROWDED_CLUSTER", 500)  # (the density is the real bound's)
    result = link_tracks(tracking)
    assert result.crowded_clusters == 2 and not result.tracking.divisions()
    assert "2 cluster(s) of positions too crowded for divisions" in result.describe()
    assert result.tracking.link_count() > 300


def test_a_crowded_movie_is_solved_in_windows_that_stay_the_same_size_however_many_time_points(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Work linear in the time points: each further time point of a crowded movie adds as many windows, each no
    larger (as programs: without divisions their relaxation is whole)."""
    monkeypatch.setattr(solver, "CROWDED_CLUSTER", 30)
    monkeypatch.setattr(solver, "_LARGEST_GROUP", 150)
    monkeypatch.setattr(solver, "_LARGEST_PROGRAM", 100)  # windows of one time point
    monkeypatch.setattr(solver, "_LARGEST_ASSIGNMENT", 50)  # as programs
    programs: list[int] = []
    original = solver._solve_part

    def counted(graph, costs, pairs, divisions, slot_group):
        programs.append(len(pairs) + len(divisions))
        return original(graph, costs, pairs, divisions, slot_group)

    monkeypatch.setattr(solver, "_solve_part", counted)
    calls, largest = [], []
    for time_points in (4, 6, 8):
        path = tmp_path / f"crowded{time_points}.csv"
        subprocess.run([sys.executable, str(SCRIPT), "crowded", str(50 * time_points), str(time_points), str(path)],
                       check=True, capture_output=True)
        programs.clear()
        result = link_tracks(load_tracking(path, VOXEL))
        assert result.crowded_clusters == time_points - 1 and result.tracking.link_count() > 30 * time_points
        calls.append(len(programs))
        largest.append(max(programs))
    assert calls[2] - calls[1] == calls[1] - calls[0] > 0, calls
    assert max(largest) <= 1.2 * min(largest), largest
