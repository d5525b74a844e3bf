#!/usr/bin/env python3
"""Are the tracker's marginal probabilities right on random walks, and is belief propagation the cause when they
flag many links? (issue 13; the walks of scripts/load_track.py, whose nuclei keep their identity.)

    python scripts/benchmark_walk_calibration.py score WALK.csv TRACKS.csv   # `octrack track` output of a walk
    python scripts/benchmark_walk_calibration.py exact --cells 20 --time-points 3 --seeds 16

`score`: the tracks of `load_track.py walk COUNT TIME_POINTS WALK.csv` (tracked with `octrack track WALK.csv
--voxel-size 1 1 1`) against the walk's identities (row i of a time point is the same nucleus as row i of the
next): how many links are wrong, the reliability table of their `marginal_probability` and the review curve.

`exact`: small walks whose every part the exact sum can take (octrack/linking/marginals.py, with the bound on its
states raised), linked with the default costs and temperature; the marginals of the chosen links by the exact sum
and by belief propagation forced on every part, pooled over the seeds, at each of `--temperatures`, against
which links are right.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from load_track import positions as walk_rows  # noqa: E402
from octrack.linking import DEFAULT_TEMPERATURE, link_tracks  # noqa: E402
from octrack.scoring import TrackingErrors, error_calibration, format_error_calibration  # noqa: E402
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking  # noqa: E402

MARGINALS = importlib.import_module("octrack.linking.marginals")  # the module (the package exports the function)
EXACT_STATES = 2_000_000


def identities(rows: np.ndarray) -> dict[Position, int]:
    """Each position of a walk (rows of t, z, y, x, every time point the same number of rows in the same order)
    and its nucleus."""
    time_points = int(rows[:, 0].max()) + 1
    per_time_point = len(rows) // time_points
    return {_position(row): index % per_time_point for index, row in enumerate(rows)}


def _position(row: np.ndarray) -> Position:
    t, z, y, x = (float(value) for value in row)
    return Position(round(x, 3), round(y, 3), round(z, 3), int(t))


def labelled(tracking: Tracking, nucleus: dict[Position, int]) -> tuple[list, list]:
    """The tracking's links, right (both ends the same nucleus) and wrong."""
    right, wrong = [], []
    for a, b in tracking.links():
        (right if nucleus[_rounded(a)] == nucleus[_rounded(b)] else wrong).append((a, b))
    return right, wrong


def _rounded(position: Position) -> Position:
    return Position(round(position.x, 3), round(position.y, 3), round(position.z, 3), position.t)


def score(walk_csv: Path, tracks_csv: Path) -> None:
    rows = np.loadtxt(walk_csv, delimiter=",", skiprows=1, usecols=(1, 2, 3, 4))
    tracking = load_tracking(tracks_csv, VoxelSize(1.0, 1.0, 1.0))
    right, wrong = labelled(tracking, identities(rows))
    calibration = error_calibration(tracking, TrackingErrors(right, wrong, [], [], [], []))
    print(f"{tracks_csv}: {len(right) + len(wrong)} links, {len(wrong)} wrong "
          f"({len(wrong) / max(1, len(right) + len(wrong)):.4f})")
    print(format_error_calibration(calibration))


def walk_tracking(count: int, time_points: int, seed: int) -> tuple[Tracking, dict[Position, int]]:
    rows = np.round(walk_rows("walk", count, time_points, seed), 3)
    tracking = Tracking(VoxelSize(1.0, 1.0, 1.0))
    for row in rows:
        tracking.add_position(_position(row))
    return tracking, identities(rows)


def exact_against_belief_propagation(cells: int, time_points: int, seeds: int, temperatures: list[float]) -> None:
    problems, correct = [], []
    for seed in range(seeds):
        positions, nucleus = walk_tracking(cells * time_points, time_points, seed)
        problem = link_tracks(positions).problem
        if _marginals_with_states(problem, EXACT_STATES, DEFAULT_TEMPERATURE) is None:
            print(f"seed {seed}: a part too large for the exact sum, left out")
            continue
        problems.append(problem)
        correct.append(np.array([nucleus[a] == nucleus[b] for a, b in problem.chosen_links()]))
    right = np.concatenate(correct)
    print(f"{len(problems)} walks of {cells} nuclei over {time_points} time points (seeds 0–{seeds - 1}), all parts "
          f"summed exactly; {len(right)} chosen links, {int((~right).sum())} wrong ({np.mean(~right):.4f})")
    pooled = {}
    for name, states in (("exact sum", EXACT_STATES), ("belief propagation", 0)):
        for temperature in temperatures:
            p = np.concatenate([_marginals_with_states(problem, states, temperature, allow_propagation=True)
                                for problem in problems])
            pooled.setdefault(name, p)
            print(f"  {name:<19} T {temperature:.2f}: "
                  f"links below 0.99 {np.mean(p < 0.99):.3f}, errors among them "
                  f"{np.mean(p[~right] < 0.99) if (~right).any() else float('nan'):.3f}, mean error probability "
                  f"{np.mean(1 - p):.4f} (observed {np.mean(~right):.4f}), wrong at or above 0.99 "
                  f"{np.mean(~right[p >= 0.99]) if (p >= 0.99).any() else 0.0:.4f}")
    difference = np.abs(pooled["exact sum"] - pooled["belief propagation"])
    print(f"  |exact − belief propagation| per link at T {temperatures[0]:g}: mean {difference.mean():.4f}, 95th "
          f"percentile {np.quantile(difference, 0.95):.3f}, largest {difference.max():.3f}")


def _marginals_with_states(problem, states: int, temperature: float, allow_propagation: bool = False
                           ) -> np.ndarray | None:
    """The chosen links' marginals with the exact sum's bound on states set to `states` (0: belief propagation
    on every part of more than one source); None where a part needed belief propagation and that was not allowed."""
    propagated = []
    original_bound, original_propagation = MARGINALS.MAX_STATES, MARGINALS._belief_propagation

    def counted(*arguments):
        propagated.append(True)
        return original_propagation(*arguments)

    MARGINALS.MAX_STATES, MARGINALS._belief_propagation = states, counted
    try:
        values = MARGINALS.marginals(problem.graph, problem.costs, problem.solution, temperature).link[problem.solution.links]
    finally:
        MARGINALS.MAX_STATES, MARGINALS._belief_propagation = original_bound, original_propagation
    return None if propagated and not allow_propagation else values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    scoring = commands.add_parser("score", help="score the tracks of a walk")
    scoring.add_argument("walk", type=Path)
    scoring.add_argument("tracks", type=Path)
    exact = commands.add_parser("exact", help="exact sum against belief propagation on small walks")
    exact.add_argument("--cells", type=int, default=20, help="nuclei per time point (default %(default)s)")
    exact.add_argument("--time-points", type=int, default=3)
    exact.add_argument("--seeds", type=int, default=16)
    exact.add_argument("--temperatures", type=float, nargs="+", default=[DEFAULT_TEMPERATURE, 1.0])
    arguments = parser.parse_args()
    if arguments.command == "score":
        score(arguments.walk, arguments.tracks)
    else:
        exact_against_belief_propagation(arguments.cells, arguments.time_points, arguments.seeds,
                                         arguments.temperatures)


if __name__ == "__main__":
    main()
