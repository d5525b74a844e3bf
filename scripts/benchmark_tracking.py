"""Tracking benchmark: the network-free linker of octrack against LapTrack on a real C. elegans lineage.

Data: ../shared/data/celegans-lineage/ce01_t000-119.csv (Cell Tracking Challenge Fluo-N3DH-CE 01 ground
truth, positions only; voxel 0.09 × 0.09 × 1.0 µm, images 708 × 512 × 35). Both linkers get the same
positions without links, twice:
- the true positions;
- perturbed positions (seeds 0, 1, 2): 5% dropped, 5% false ones added (uniform in the box around that time
  point's true positions), and every position jittered by Gaussian noise of 0.5 µm on each axis.
Scores: `octrack.scoring.score_tracking` on the detection matching within 2.5 µm: link and division
precision, recall and F1. A division counts when its mother and both daughters match (as the CTC's BC(i) and
traccuracy count), within ±1 time point (and, second figure, at the exact time point); a link that skips a
time point is right when it passes only an unmatched true position (traccuracy's relax_skips_pred).

LapTrack 0.17.1 (pip install laptrack==0.17.1; the `benchmark` extra) works in µm with squared Euclidean
costs. Its parameters: links up to 6 µm (cutoff 36 µm², the longest true link here is 5.3 µm), divisions
(splitting) up to 6 µm, no merging, and gap closing over one missing time point (gap_closing_max_frame_count
2) up to 8 µm, as octrack's gap links. Of the track start/end costs, LapTrack's own defaults (from the 90th
percentile of the link costs) are kept.

Then the solver's speed: the lineage placed side by side in 18 copies (about 100 000 candidate links),
linked whole, in seconds.

Run: `nice -n 19 env PYTHONPATH=$PWD .venv/bin/python scripts/benchmark_tracking.py` (from the project root).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from octrack.scoring import TrackingScores, score_detections, score_tracking
from octrack.linking import link_tracks
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking
from octrack.tracking.model import from_positions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celegans-lineage" / "ce01_t000-119.csv"
VOXEL_SIZE = VoxelSize(0.09, 0.09, 1.0)
IMAGE_SHAPE_ZYX = (35, 512, 708)
MATCH_DISTANCE_UM = 2.5
DROPPED, ADDED, JITTER_UM = 0.05, 0.05, 0.5
LAPTRACK_MAX_LINK_UM = LAPTRACK_MAX_SPLIT_UM = 6.0
LAPTRACK_MAX_GAP_UM, LAPTRACK_GAP_FRAMES = 8.0, 2
SEEDS = (0, 1, 2)
COPIES_FOR_SPEED = 18


def perturbed(truth: Tracking, seed: int = 0) -> Tracking:
    """5% of the positions dropped, 5% false ones added, all jittered (see the module docstring)."""
    random = np.random.default_rng(seed)
    scale = np.array([VOXEL_SIZE.x_um, VOXEL_SIZE.y_um, VOXEL_SIZE.z_um])
    positions = list(truth.positions())
    kept = [p for p, drop in zip(positions, random.random(len(positions)) < DROPPED) if not drop]
    false = []
    for t, count in zip(*np.unique(random.choice([p.t for p in positions], round(ADDED * len(positions))),
                                   return_counts=True)):
        xyz = np.array([(p.x, p.y, p.z) for p in truth.positions_at(int(t))])
        for x, y, z in random.uniform(xyz.min(axis=0), xyz.max(axis=0), size=(count, 3)):
            false.append(Position(x, y, z, int(t)))
    jittered = []
    for p in kept + false:
        x, y, z = np.array([p.x, p.y, p.z]) + random.normal(0, JITTER_UM, 3) / scale
        jittered.append(Position(float(x), float(y), float(z), p.t))
    return from_positions(jittered, VOXEL_SIZE)


def laptrack_tracks(positions: Tracking) -> Tracking:
    from laptrack import LapTrack

    time_points = positions.time_points()
    frames = [positions.positions_at(t) for t in range(time_points[-1] + 1)]
    scale = np.array([VOXEL_SIZE.x_um, VOXEL_SIZE.y_um, VOXEL_SIZE.z_um])
    coordinates = [np.array([(p.x, p.y, p.z) for p in frame], dtype=float).reshape(-1, 3) * scale
                   for frame in frames]
    tracker = LapTrack(cutoff=LAPTRACK_MAX_LINK_UM ** 2, splitting_cutoff=LAPTRACK_MAX_SPLIT_UM ** 2,
                       merging_cutoff=False, gap_closing_cutoff=LAPTRACK_MAX_GAP_UM ** 2,
                       gap_closing_max_frame_count=LAPTRACK_GAP_FRAMES)
    graph = tracker.predict(coordinates)
    result = from_positions(positions.positions(), VOXEL_SIZE)
    for (frame_a, index_a), (frame_b, index_b) in graph.edges():
        result.add_link(frames[frame_a][index_a], frames[frame_b][index_b])
    return result


def scores(truth: Tracking, predicted: Tracking) -> TrackingScores:
    detection = score_detections(truth, predicted, max_distance_um=MATCH_DISTANCE_UM, voxel_size=VOXEL_SIZE)
    return score_tracking(truth, predicted, detection)


def report(name: str, result: TrackingScores, seconds: float) -> None:
    links, divisions, exact = result.links, result.divisions, result.divisions_exact
    print(f"  {name:<10} link F1 {links.f1:.4f} (FP {links.false_positives:>3}, FN {links.false_negatives:>3})   "
          f"division F1 {divisions.f1:.4f} / ±0 {exact.f1:.4f} "
          f"(FP {divisions.false_positives:>2}, FN {divisions.false_negatives:>2})   "
          f"tracks without error {result.tracks_without_error_fraction:.3f}   {result.skip_links} gap links   "
          f"{seconds:.1f} s", flush=True)


def compare(title: str, truth: Tracking, positions: Tracking) -> dict[str, TrackingScores]:
    print(f"{title}: {len(positions)} positions", flush=True)
    start = time.perf_counter()
    ours = link_tracks(positions, image_shape_zyx=IMAGE_SHAPE_ZYX)
    results = {"octrack": scores(truth, ours.tracking)}
    report("octrack", results["octrack"], time.perf_counter() - start)
    print(f"             {ours.describe()}")
    start = time.perf_counter()
    results["LapTrack"] = scores(truth, laptrack_tracks(positions))
    report("LapTrack", results["LapTrack"], time.perf_counter() - start)
    return results


def mean_of_seeds(runs: list[dict[str, TrackingScores]]) -> None:
    print(f"Mean of seeds {', '.join(map(str, SEEDS))}:")
    for name in runs[0]:
        link_f1 = np.mean([run[name].links.f1 for run in runs])
        division_f1 = np.mean([run[name].divisions.f1 for run in runs])
        exact_f1 = np.mean([run[name].divisions_exact.f1 for run in runs])
        print(f"  {name:<10} link F1 {link_f1:.4f}   division F1 {division_f1:.4f} / ±0 {exact_f1:.4f}")


def side_by_side(truth: Tracking, copies: int) -> Tracking:
    """`copies` of the lineage next to each other along x, far enough apart not to interact."""
    width = max(p.x for p in truth.positions()) + 200
    return from_positions([Position(p.x + width * copy, p.y, p.z, p.t)
                           for copy in range(copies) for p in truth.positions()], VOXEL_SIZE)


def main() -> None:
    if not DATA.exists():
        sys.exit(f"{DATA} not found: this benchmark needs ../shared/data")
    truth = load_tracking(DATA, VOXEL_SIZE)
    positions = from_positions(truth.positions(), VOXEL_SIZE)
    print(f"{DATA.name}: {len(truth)} positions, {truth.link_count()} links, {len(truth.divisions())} divisions; "
          f"matching within {MATCH_DISTANCE_UM} µm")
    compare("True positions", truth, positions)
    mean_of_seeds([compare(f"Perturbed ({DROPPED:.0%} dropped, {ADDED:.0%} added, {JITTER_UM} µm jitter, seed {seed})",
                           truth, perturbed(truth, seed)) for seed in SEEDS])
    large = side_by_side(truth, COPIES_FOR_SPEED)
    start = time.perf_counter()
    result = link_tracks(large)
    print(f"Speed: {result.candidate_links} candidate links ({len(large)} positions) linked in "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
