"""Positions files for load checks of `octrack track` (docs/reliability.md, "Load").

Layouts, each a CSV of positions without links (t, z, y, x in µm; give `--voxel-size 1 1 1` to track):
- `walk`: nuclei that keep their identity and move by a random walk (1.5 µm per axis per time point) in a
  cube sized for a nearest-neighbour distance near 8 µm, as in a dense organoid;
- `uniform`: fresh uniform random positions every time point in the same cube (no true tracks at all);
- `crowded`: every time point's positions in one Gaussian spot (σ = 2 µm per axis), so that every position is
  a near neighbour of every other.

Example (the two cases of issue 16):
    python scripts/load_track.py walk 500000 100 /tmp/walk.csv
    python scripts/load_track.py crowded 500000 100 /tmp/crowded.csv     # 5 000 per time point
    /usr/bin/time -v octrack track /tmp/walk.csv --voxel-size 1 1 1 --output /tmp/walk-tracks.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NEAREST_UM = 8.0
STEP_UM = 1.5
SPOT_SIGMA_UM = 2.0


def positions(layout: str, count: int, time_points: int, seed: int = 0) -> np.ndarray:
    """(count, 4) rows of t, z, y, x: `count // time_points` positions per time point."""
    random = np.random.default_rng(seed)
    per_time_point = count // time_points
    side = NEAREST_UM * per_time_point ** (1 / 3)
    if layout == "walk":
        start = random.uniform(0, side, (per_time_point, 3))
        steps = random.normal(0, STEP_UM, (time_points, per_time_point, 3))
        steps[0] = 0
        zyx = start + np.cumsum(steps, axis=0)
    elif layout == "uniform":
        zyx = random.uniform(0, side, (time_points, per_time_point, 3))
    elif layout == "crowded":
        zyx = side / 2 + random.normal(0, SPOT_SIGMA_UM, (time_points, per_time_point, 3))
    else:
        raise ValueError(f"unknown layout {layout}")
    t = np.repeat(np.arange(time_points), per_time_point)[:, None]
    return np.hstack([t, zyx.reshape(-1, 3)])


def write_csv(rows: np.ndarray, path: Path) -> None:
    ids = np.arange(1, len(rows) + 1)
    with open(path, "w") as file:
        file.write("node_id,t,z,y,x,parent_id\n")
        for node_id, (t, z, y, x) in zip(ids, rows):
            file.write(f"{node_id},{int(t)},{z:.3f},{y:.3f},{x:.3f},-1\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layout", choices=("walk", "uniform", "crowded"))
    parser.add_argument("count", type=int, help="positions in all")
    parser.add_argument("time_points", type=int)
    parser.add_argument("output", type=Path, help="CSV to write")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    rows = positions(arguments.layout, arguments.count, arguments.time_points, arguments.seed)
    write_csv(rows, arguments.output)
    print(f"wrote {arguments.output}: {len(rows)} positions, {arguments.count // arguments.time_points} per time "
          f"point over {arguments.time_points} time points ({arguments.layout})")


if __name__ == "__main__":
    main()
