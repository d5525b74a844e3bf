#!/usr/bin/env python3
"""Does the tile plan change what a trained detection model finds? Predicts the same time points with tiles of
several voxel budgets and prints, per budget, the tile shape, CPU seconds per time point, the peaks that moved
(found by one budget and not within half a voxel by the first budget, either way), and detection true / false
positives, misses and F1 against ground truth.

    python scripts/benchmark_tile_budget.py --config held_out.ini --model training_output/model_detect \\
        --ground-truth held_out/ground_truth.aut --time-points 0:4 --max-distance-um 5 --budgets 1M,2M

The ini's first [predict] dataset is read; budgets are voxels per tile (k and M suffixes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def voxels(text: str) -> int:
    factor = {"k": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
    return int(float(text.rstrip("kM")) * factor)


def unmatched(peaks: np.ndarray, others: np.ndarray) -> int:
    """Peaks (z, y, x, ...) with no peak of `others` within half a voxel."""
    from scipy.spatial import cKDTree

    if len(others) == 0:
        return len(peaks)
    distances, _ = cKDTree(others[:, :3]).query(peaks[:, :3])
    return int(np.count_nonzero(distances > 0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--ground-truth", type=Path, required=True)
    parser.add_argument("--time-points", required=True, help="A:B, inclusive")
    parser.add_argument("--max-distance-um", type=float, required=True)
    parser.add_argument("--budgets", default="1M,2M")
    arguments = parser.parse_args()

    from octrack import tiling
    from octrack.config import Config
    from octrack.dataset import open_datasets
    from octrack.networks import detect
    from octrack.networks.detect_model import add_detections
    from octrack.scoring import score_detections
    from octrack.stages.predict import read_section
    from octrack.tracking import Tracking, load_tracking

    config = Config(arguments.config)
    dataset = open_datasets(config, "predict")[0]
    detector = detect.load(arguments.model, read_section(config))
    frames = detector.frames(dataset)
    truth = load_tracking(arguments.ground_truth)
    first, last = (int(value) for value in arguments.time_points.split(":"))
    time_points = list(range(first, last + 1))
    plans = []
    planner = tiling.plan_tiles

    def recorded_plan(*given, **options):
        plans.append(planner(*given, **options))
        return plans[-1]

    tiling.plan_tiles = recorded_plan
    reference = None
    print(f"{'budget':>7} {'tile z, y, x':>14} {'CPU s/tp':>9} {'peaks moved':>12} {'TP':>6} {'FP':>5} {'FN':>5} "
          f"{'F1':>7}")
    for budget in arguments.budgets.split(","):
        tiling.MAX_TILE_ACTIVATIONS = voxels(budget) * detector.settings.unet_filters
        tracking, peaks, seconds = Tracking(), [], 0.0
        for time_point in time_points:
            started = time.process_time()
            peaks.append(detector.predict(frames, tracking, time_point))
            seconds += time.process_time() - started
            add_detections(tracking, time_point, peaks[-1].tolist())
        moved = 0 if reference is None else sum(unmatched(a, b) + unmatched(b, a) for a, b in zip(peaks, reference))
        reference = reference or peaks
        scores = score_detections(truth, tracking, max_distance_um=arguments.max_distance_um,
                                  voxel_size=dataset.voxel_size, time_points=time_points)
        tile = "×".join(map(str, plans[-1].tile_zyx))
        print(f"{budget:>7} {tile:>14} {seconds / len(time_points):>9.1f} {moved:>12} {scores.true_positives:>6} "
              f"{scores.false_positives:>5} {scores.false_negatives:>5} {scores.f1:>7.4f}")


if __name__ == "__main__":
    main()
