#!/usr/bin/env python
"""The CTC's own scores (py-ctcmetrics: DET, TRA) of octrack's Cell Tracking Challenge results, by marker radius.

Tracks are made by `octrack track` (network-free) from the true positions, and from the true positions moved by
a random jitter (as a detector would place them), then written as CTC results with each radius and scored against
the ground truth: the real breast-cancer data (its own TRA markers, discs of about 8 px radius) and a synthetic 3D
movie (ground truth written by `octrack convert --ground-truth`). The figures go to docs/benchmarks.md.

    python scripts/benchmark_ctc.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np

from octrack.stages.common import image_geometry
from octrack.stages.tracking_files import convert
from octrack.synth import generate
from octrack.linking import link_tracks
from octrack.tracking import Position, Tracking, load_tracking, save_tracking

ROOT = Path(__file__).resolve().parents[1]


def ctc_scores(result: Path, ground_truth: Path) -> dict[str, float]:
    """Valid, DET and TRA of py-ctcmetrics (its printing silenced)."""
    from ctc_metrics.scripts.evaluate import evaluate_sequence
    from ctc_metrics.scripts.validate import validate_sequence

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        valid = validate_sequence(str(result), threads=1)["Valid"]
        scores = evaluate_sequence(str(result), str(ground_truth), ["DET", "TRA"], threads=1)
    return {"Valid": valid, "DET": scores["DET"], "TRA": scores["TRA"]}


def jittered(tracking: Tracking, sigma: np.ndarray, shape_zyx: tuple[int, int, int], seed: int = 0) -> Tracking:
    """The positions moved by normal noise of `sigma` pixels (x, y, z), kept inside the image; no links."""
    rng = np.random.default_rng(seed)
    result = Tracking(tracking.voxel_size)
    high = np.array(shape_zyx[::-1], dtype=float) - 1
    for position in tracking.positions():
        x, y, z = np.clip(np.array(position[:3]) + rng.normal(0, 1, 3) * sigma, 0, high)
        result.add_position(Position(float(x), float(y), float(z), position.t))
    return result


def table(name: str, ground_truth: Path, inputs: dict[str, Tracking], geometry, radii: list[tuple[str, float]],
          scratch: Path) -> None:
    print(f"\n{name}")
    print(f"{'positions':<22} {'radius':>10} {'Valid':>6} {'DET':>7} {'TRA':>7}")
    for label, positions in inputs.items():
        tracks = link_tracks(positions, image_shape_zyx=geometry.shape_zyx).tracking
        for unit, radius in radii:
            result = scratch / f"{label}_{unit}_{radius:g}".replace(" ", "_")
            options = {"radius_um": radius} if unit == "um" else {"radius_px": radius}
            save_tracking(tracks, result, image_shape_zyx=geometry.shape_zyx, frame_count=geometry.frame_count,
                          **options)
            scores = ctc_scores(result, ground_truth)
            print(f"{label:<22} {radius:>7g} {unit:<2} {scores['Valid']:>6} {scores['DET']:>7.4f} "
                  f"{scores['TRA']:>7.4f}", flush=True)


def breast_cancer(data: Path, scratch: Path) -> None:
    folder = data / "breast-cancer-2d"
    truth = load_tracking(folder / "01_GT" / "TRA")
    geometry = image_geometry(folder / "01", None)
    inputs = {"true": truth, "jitter 2 px": jittered(truth, np.array([2.0, 2.0, 0.0]), geometry.shape_zyx)}
    table("breast-cancer-2d (ground truth: its own TRA markers, discs of ~8 px radius)", folder / "01_GT", inputs,
          geometry, [("px", radius) for radius in (3, 5, 6, 8, 10, 12, 15)], scratch)


def synthetic(scratch: Path) -> None:
    movie = scratch / "synthetic"
    generate(movie, seed=2, time_points=10)
    geometry = image_geometry(movie / "images", None)
    with contextlib.redirect_stdout(io.StringIO()):
        convert(movie / "ground_truth.aut", movie / "01_GT", geometry=geometry, ground_truth=True)
    truth = load_tracking(movie / "ground_truth.aut")
    sigma_px = 1.0 / np.array([truth.voxel_size.x_um, truth.voxel_size.y_um, truth.voxel_size.z_um])
    inputs = {"true": truth, "jitter 1 µm": jittered(truth, sigma_px, geometry.shape_zyx)}
    table("synthetic 3D (octrack synth --seed 2; ground truth by convert --ground-truth: 2 px discs)",
          movie / "01_GT", inputs, geometry, [("um", radius) for radius in (2, 3, 5, 7, 9)], scratch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        breast_cancer(arguments.data, Path(scratch))
        synthetic(Path(scratch))


if __name__ == "__main__":
    main()
