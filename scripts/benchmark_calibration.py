"""Calibration benchmark: are the tracker's marginal probabilities error probabilities one can act on?

For each data set the network-free tracker (`octrack.linking.link_tracks`) links positions without links, the
temperature is fitted (`octrack.stages.calibrate`, maximum likelihood of the chosen links being right) on the
first part of the time points, and the links of the other part are scored at that temperature:
- the share of links with marginal probability >= 0.99 that are wrong (target <= 1%);
- the share of the wrong links that flagging the links below 0.99 catches (target >= 80%), and the share of links
  flagged (target <= 10%);
- the reliability table and the review curve (`octrack evaluate`'s, octrack/scoring.py).

Data sets:
- C. elegans (../shared/data/celegans-lineage, Fluo-N3DH-CE 01 ground truth; voxel 0.09 × 0.09 × 1.0 µm), true
  positions: fitted on time points 0–59, scored on 60–119; matched within 2.5 µm.
- The same positions perturbed as in scripts/benchmark_tracking.py (seed 0: 5% dropped, 5% added, 0.5 µm
  jitter): the same split.
- Breast cancer (../shared/data/breast-cancer-2d, 2D, pixels), true positions: fitted on 0–8, scored on 9–11;
  matched within 8 px.

Run: `nice -n 19 env PYTHONPATH=$PWD .venv/bin/python scripts/benchmark_calibration.py` (from the project root;
a few minutes on two shared cores).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark_tracking import perturbed  # noqa: E402

from octrack.errors import UserError  # noqa: E402
from octrack.linking import DEFAULT_TEMPERATURE, link_tracks  # noqa: E402
from octrack.scoring import (error_calibration, format_error_calibration, score_detections,  # noqa: E402
                             tracking_errors)
from octrack.stages.calibrate import fitted_temperature, labelled_links  # noqa: E402
from octrack.tracking import Tracking, VoxelSize, load_tracking  # noqa: E402
from octrack.tracking.model import from_positions  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
THRESHOLD = 0.99


@dataclass(frozen=True)
class Case:
    name: str
    truth: Tracking
    positions: Tracking
    image_shape_zyx: tuple[int, int, int]
    fit_on: list[int]
    score_on: list[int]
    distance: dict[str, float]


def cases() -> list[Case]:
    celegans = load_tracking(DATA / "celegans-lineage" / "ce01_t000-119.csv", VoxelSize(0.09, 0.09, 1.0))
    halves = (list(range(0, 60)), list(range(60, 120)))
    found = [Case("C. elegans, true positions", celegans, from_positions(celegans.positions(), celegans.voxel_size),
                  (35, 512, 708), *halves, {"max_distance_um": 2.5}),
             Case("C. elegans, perturbed positions (seed 0)", celegans, perturbed(celegans, 0), (35, 512, 708),
                  *halves, {"max_distance_um": 2.5})]
    cancer = load_tracking(DATA / "breast-cancer-2d" / "01_GT" / "TRA", VoxelSize(1.0, 1.0, 1.0))
    found.append(Case("breast cancer, true positions", cancer, from_positions(cancer.positions(), cancer.voxel_size),
                      (1, 724, 1024), list(range(0, 9)), list(range(9, 12)), {"max_distance_px": 8.0}))
    return found


def run(case: Case) -> None:
    start = time.perf_counter()
    result = link_tracks(case.positions, image_shape_zyx=case.image_shape_zyx)
    fit = labelled_links(result, case.truth, case.fit_on, **case.distance)
    try:
        temperature = fitted_temperature(result, fit)
        how = f"fitted on {len(fit.correct)} links, {int((~fit.correct).sum())} wrong"
    except UserError:
        temperature = DEFAULT_TEMPERATURE
        how = f"none fits: all {len(fit.correct)} links of the fitting time points are right; the default"
    scored = link_tracks(case.positions, image_shape_zyx=case.image_shape_zyx, temperature=temperature)
    detection = score_detections(case.truth, scored.tracking, time_points=case.score_on, **case.distance)
    calibration = error_calibration(scored.tracking, tracking_errors(case.truth, scored.tracking, detection))
    at = next(point for point in calibration.review_curve if point.threshold == THRESHOLD)
    print(f"\n== {case.name}: temperature {temperature:.3f} ({how}); scored on time points "
          f"{case.score_on[0]}–{case.score_on[-1]}: {calibration.links} links, {calibration.wrong} wrong "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"links >= {THRESHOLD} that are wrong: {at.wrong_unflagged:.4f} (target <= 0.01)")
    print(f"link errors caught by flagging < {THRESHOLD}: {at.caught:.3f} (target >= 0.8), "
          f"links flagged: {at.flagged:.3f} (target <= 0.1)")
    print(format_error_calibration(calibration))


def main() -> None:
    for case in cases():
        run(case)


if __name__ == "__main__":
    main()
