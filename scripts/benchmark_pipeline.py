#!/usr/bin/env python3
"""Whole-pipeline benchmark: trains the detection, division and link networks within time budgets, runs
`octrack predict` (positions → divisions → links → tracks) on held-out time points and prints detection, link
and division precision / recall / F1 of the tracks, scored as `octrack evaluate` scores them.

    python scripts/benchmark_pipeline.py --data breast-cancer   # real 2D: train 0-8, predict and score 9-11 (8 px)
    python scripts/benchmark_pipeline.py --data synthetic       # 3D: train on two movies, score a third (5 µm)

The synthetic held-out movie has 100 time points (about 27 divisions); a division whose mother or daughter is an
uncertain annotation (a nucleus mostly outside the image) counts neither way, as `octrack evaluate` counts it. On 2
loaded cores give detection time: a 15-minute budget there trained 80 steps (see docs/benchmarks.md, issue 13,
session 22).

The training settings are those of scripts/benchmark_detection.py and scripts/benchmark_classifiers.py (imported
from them, not copied). Each run writes to --output (default ./benchmark_output/pipeline/NAME) and ends with a
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import benchmark_classifiers as classifiers  # noqa: E402
import benchmark_detection as detection  # noqa: E402

SYNTHETIC_TRAINING_MOVIES = ((11, 60), (12, 60))  # (seed, time points): enough mothers for the division network
SYNTHETIC_HELD_OUT = (2, 100)  # about 30 divisions to score (20 time points had 6: too few for a division F1)


def write_breast_cancer(folder: Path, detect_minutes: float, classifier_minutes: float) -> tuple[Path, Path, dict]:
    ini, ground_truth, distance, _ = detection.write_breast_cancer(folder, detect_minutes)
    sections = classifiers.TRAINING.format(common=classifiers.BREAST_CANCER_COMMON.format(minutes=classifier_minutes),
                                           link=classifiers.BREAST_CANCER_LINK)
    ini.write_text(ini.read_text() + sections)
    from octrack.tracking import VoxelSize

    return ini, ground_truth, {"max_distance_um": distance, "voxel_size": VoxelSize(1.0, 1.0, 1.0)}


def write_synthetic(folder: Path, detect_minutes: float, classifier_minutes: float) -> tuple[Path, Path, dict]:
    """All three networks learn from two long synthetic movies; a third, never seen, is predicted."""
    from octrack.synth import IMAGES_PATTERN, generate

    datasets = []
    for number, (seed, time_points) in enumerate(SYNTHETIC_TRAINING_MOVIES, start=1):
        movie = generate(folder / f"train_seed{seed}", seed=seed, time_points=time_points)
        print(f"training movie seed {seed}: {movie.time_points} time points, {movie.positions} positions, "
              f"{movie.divisions} divisions")
        datasets.append(f"images_container_{number} = {movie.images_folder}\n"
                        f"images_pattern_{number} = {IMAGES_PATTERN}\n"
                        f"tracking_file_{number} = {movie.ground_truth_aut}\n"
                        + detection.voxel_keys(number, movie.voxel_size))
    seed, time_points = SYNTHETIC_HELD_OUT
    held_out = generate(folder / "held_out", seed=seed, time_points=time_points)
    print(f"held-out movie seed {seed}: {held_out.time_points} time points, {held_out.positions} positions, "
          f"{held_out.divisions} divisions")
    ini = folder / "organoid_tracker.ini"
    ini.write_text(detection.SYNTHETIC_INI.format(training_datasets="".join(datasets),
                                                  held_out=held_out.images_folder, minutes=detect_minutes,
                                                  voxel_keys_1=detection.voxel_keys(1, held_out.voxel_size))
                   + classifiers.TRAINING.format(common=classifiers.SYNTHETIC_COMMON.format(minutes=classifier_minutes),
                                                 link=""))
    return ini, held_out.ground_truth_aut, {"max_distance_um": 5.0}


def run(name: str, detect_minutes: float, classifier_minutes: float, output: Path) -> dict:
    from octrack.config import Config
    from octrack.dataset import open_datasets
    from octrack.stages.evaluate import evaluate_files
    from octrack.stages.predict import run_predict
    from octrack.stages.train import run_training

    writer = {"breast-cancer": write_breast_cancer, "synthetic": write_synthetic}[name]
    ini, ground_truth, scoring = writer(output / name, detect_minutes, classifier_minutes)
    config = Config(ini)
    started = time.perf_counter()
    run_training(config, ["detect", "divide", "link"], restart=True)
    training_minutes = (time.perf_counter() - started) / 60
    started = time.perf_counter()
    folder = run_predict(config)[0]
    predict_minutes = (time.perf_counter() - started) / 60
    time_points = open_datasets(config, "predict")[0].time_points
    time_range = f"{time_points[0]}:{time_points[-1]}"
    summary = {"data": name, "training_minutes": round(training_minutes, 1),
               "predict_minutes": round(predict_minutes, 2), "time_points_scored": time_range}
    for result in ("positions.csv", "tracks.aut"):
        scores = evaluate_files(Path(ground_truth), folder / result, time_range=time_range, **scoring)
        key = "detection" if result == "positions.csv" else "tracks"
        summary[key] = {"detection_f1": round(scores.detection.f1, 4)}
        if key == "tracks":
            summary[key].update({
                "detection_precision": round(scores.detection.precision, 4),
                "detection_recall": round(scores.detection.recall, 4),
                "link_f1": round(scores.links.f1, 4), "link_precision": round(scores.links.precision, 4),
                "link_recall": round(scores.links.recall, 4), "division_f1": round(scores.divisions.f1, 4),
                "division_precision": round(scores.divisions.precision, 4),
                "division_recall": round(scores.divisions.recall, 4),
                "divisions": _counts(scores.divisions), "divisions_exact_f1": _f1(scores.divisions_exact),
                "links": _counts(scores.links),
                "tracks_without_error": round(scores.tracks_without_error_fraction, 4),
                "uncertain_annotations": scores.detection.uncertain,
                "predictions_at_uncertain_annotations": scores.detection.at_uncertain})
        if key == "tracks" and scores.error_calibration is not None:
            summary[key]["review_at_0.99"] = _review_at(scores.error_calibration, 0.99)
    tracks = summary["tracks"]
    print(f"\n== {name} (time points {time_range}): detection F1 {summary['detection']['detection_f1']:.4f} "
          f"(positions), {tracks['detection_f1']:.4f} (tracks); link F1 {tracks['link_f1']:.4f} (P "
          f"{tracks['link_precision']:.4f}, R {tracks['link_recall']:.4f}); division F1 {tracks['division_f1']:.4f} "
          f"(P {tracks['division_precision']:.4f}, R {tracks['division_recall']:.4f}); tracks without error "
          f"{tracks['tracks_without_error']:.3f}; training {summary['training_minutes']} min, predict "
          f"{summary['predict_minutes']} min")
    divisions = tracks["divisions"]
    print(f"   divisions scored: {divisions['true']} true, {divisions['predicted']} predicted (TP {divisions['tp']}, "
          f"FP {divisions['fp']}, FN {divisions['fn']}; ±1 time point, daughters required); division F1 at ±0 "
          f"{tracks['divisions_exact_f1']}")
    if "review_at_0.99" in tracks:
        review = tracks["review_at_0.99"]
        print(f"   links below marginal_probability 0.99 (predict's temperature): {review['flagged']:.3f} of links "
              f"flagged, {review['caught']:.3f} of link errors caught; {review['wrong_unflagged']:.4f} of the "
              f"links at or above 0.99 wrong")
    if tracks["uncertain_annotations"]:
        print(f"   {tracks['uncertain_annotations']} uncertain annotations (nuclei mostly outside the image) and the "
              f"{tracks['predictions_at_uncertain_annotations']} predictions at them, with their links, count "
              f"neither way")
    print(json.dumps(summary))
    return summary


def _counts(counts) -> dict:
    return {"true": counts.true_count, "predicted": counts.predicted_count, "tp": counts.true_positives,
            "fp": counts.false_positives, "fn": counts.false_negatives}


def _f1(counts) -> float | None:
    return None if counts is None else round(counts.f1, 4)


def _review_at(calibration, threshold: float) -> dict:
    point = next(point for point in calibration.review_curve if point.threshold == threshold)
    return {"flagged": round(point.flagged, 4), "caught": round(point.caught, 4),
            "wrong_unflagged": round(point.wrong_unflagged, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["breast-cancer", "synthetic", "both"], default="both")
    parser.add_argument("--detect-minutes", type=float, default=10.0,
                        help="training budget of the detection network (default %(default)s)")
    parser.add_argument("--classifier-minutes", type=float, default=4.0,
                        help="training budget of each of the division and link networks (default %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("benchmark_output") / "pipeline")
    arguments = parser.parse_args()
    names = ["breast-cancer", "synthetic"] if arguments.data == "both" else [arguments.data]
    for name in names:
        run(name, arguments.detect_minutes, arguments.classifier_minutes, arguments.output)


if __name__ == "__main__":
    main()
