"""CPU seconds of each stage of the tracker on a positions file (docs/reliability.md, "Load"): candidate graph,
costs, solver (its windows and their programs or assignment problems), marginals (exact sums, belief
propagation), review list. Prints one line per stage: calls, CPU seconds; then the tracker's summary.

`--scale` multiplies the solver's size bounds (`CROWDED_CLUSTER`, `_LARGEST_GROUP`, `_LARGEST_PROGRAM`,
`_LARGEST_ASSIGNMENT`), so that a smaller problem (fewer positions per time point) takes the same paths as a
large one; e.g. 1 000 crowded positions per time point with `--scale 0.2` behave as 5 000 with the real bounds:
    python scripts/load_track.py crowded 20000 20 /tmp/crowded.csv
    python scripts/load_stages.py /tmp/crowded.csv --scale 0.2
"""

from __future__ import annotations

import argparse
import functools
import importlib
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import octrack.linking as linking
from octrack.linking import solver
from octrack.tracking import VoxelSize, load_tracking

BOUNDS = ("CROWDED_CLUSTER", "_LARGEST_GROUP", "_LARGEST_PROGRAM", "_LARGEST_ASSIGNMENT")


def timed_stages() -> dict[str, list[float]]:
    """Wraps the stages' functions so that each adds its calls and CPU seconds to the returned table."""
    marginals = importlib.import_module("octrack.linking.marginals")
    table: dict[str, list[float]] = {}
    stages: list[tuple[ModuleType, str]] = [
        (linking, "build_graph"), (linking, "compute_costs"), (linking, "solve"), (solver, "_windows"),
        (solver, "_solve_part"), (solver, "_integer_program"), (solver, "_assign_group"), (linking, "marginals"),
        (marginals, "_exact"), (marginals, "_belief_propagation"), (linking, "review_items")]
    for module, name in stages:
        setattr(module, name, _timed(getattr(module, name), f"{module.__name__}.{name}", table))
    return table


def _timed(function: Callable, label: str, table: dict[str, list[float]]) -> Callable:
    @functools.wraps(function)
    def wrapper(*arguments, **keywords):
        start = time.process_time()
        try:
            return function(*arguments, **keywords)
        finally:
            entry = table.setdefault(label, [0, 0.0])
            entry[0] += 1
            entry[1] += time.process_time() - start
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("positions", type=Path, help="positions file (t, z, y, x in µm, as load_track.py writes)")
    parser.add_argument("--scale", type=float, default=1.0, help="factor on the solver's size bounds")
    arguments = parser.parse_args()
    for name in BOUNDS:
        setattr(solver, name, max(1, int(getattr(solver, name) * arguments.scale)))
    linking.CROWDED_CLUSTER = solver.CROWDED_CLUSTER  # as the summary says it
    table = timed_stages()
    tracking = load_tracking(arguments.positions, VoxelSize(1.0, 1.0, 1.0))
    start = time.process_time()
    result = linking.link_tracks(tracking)
    print(f"{'link_tracks':45s} {1:6d} {time.process_time() - start:9.1f} s")
    for label, (calls, seconds) in table.items():
        print(f"{label:45s} {calls:6d} {seconds:9.1f} s")
    print(result.describe())


if __name__ == "__main__":
    main()
