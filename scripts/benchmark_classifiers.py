#!/usr/bin/env python3
"""Division and link classifier benchmark: trains both networks within a time budget each, calibrates them
(Platt scaling on the validation time points) and prints, on those time points, average precision, ROC AUC,
precision and recall, the expected calibration error (ECE) before and after calibration, and the division
network's reliability table.

    python scripts/benchmark_classifiers.py --data breast-cancer   # real 2D: train 0-8, validate 9-11
    python scripts/benchmark_classifiers.py --data synthetic       # 3D: two movies to train, a third to validate

Targets: link AP >= 0.98 on breast-cancer (division AP reported as reached: 34 divisions in the whole movie);
on synthetic 3D, division AP >= 0.9 and link AP >= 0.99; ECE after Platt scaling < 0.05 everywhere.
"ECE after calibration" is in-sample (Platt fitted and scored on the same validation samples, as the model
folder stores it); the cross-fitted figure fits on four fifths and scores the fifth left out, five times.
Each run writes to --output (default ./benchmark_output/classifiers/NAME) and ends with a JSON line.
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
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

TRAINING = """
[train_divide]
{common}
[train_link]
{common}{link}"""
# The breast-cancer field drifts by about (x, y) = (−3, −15) px per time point (true links: spread 7 px), a
# pattern that the displacement input carries only while training keeps its direction: flips and rotations
# are off for this movie's link network (--link-rotations turns them on, as they are by default).
BREAST_CANCER_LINK = """augment_flip = false
augment_rotate = false
"""

BREAST_CANCER_COMMON = """patch_shape = 48, 48, 1
encoder_filters = 16
batch_size = 32
patience = 0
max_training_minutes = {minutes}
epochs = 1000
steps_per_epoch = 100
"""

SYNTHETIC_COMMON = """patch_shape = 32, 32, 8
encoder_filters = 8
batch_size = 32
patience = 0
max_training_minutes = {minutes}
epochs = 1000
steps_per_epoch = 100
"""

BREAST_CANCER_DATASET = """images_container_{n} = {data}/breast-cancer-2d/01
images_pattern_{n} = t{{time:04}}.tif
tracking_file_{n} = {data}/breast-cancer-2d/01_GT/TRA
pixel_size_x_um_{n} = 1
pixel_size_y_um_{n} = 1
pixel_size_z_um_{n} = 1
"""

SYNTHETIC_MOVIES = {"train": [(11, 100), (12, 100)], "validation": [(13, 80)]}  # (seed, time points)


def with_epochs(common: str, epochs: int) -> str:
    """The common settings with at most `epochs` epochs instead of the budget alone."""
    return common.replace("epochs = 1000", f"epochs = {epochs}")


def write_breast_cancer(folder: Path, minutes: float, rotations: bool = False, epochs: int = 1000) -> Path:
    if not (DATA / "breast-cancer-2d").exists():
        sys.exit(f"real data not found at {DATA / 'breast-cancer-2d'}")
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "organoid_tracker.ini"
    ini.write_text("[DEFAULTS]\noutput_folder = training_output\n\n[prepare]\n"
                   + BREAST_CANCER_DATASET.format(n=1, data=DATA) + "max_time_point_1 = 8\nuse_for_1 = train\n"
                   + BREAST_CANCER_DATASET.format(n=2, data=DATA) + "min_time_point_2 = 9\nuse_for_2 = validation\n"
                   + TRAINING.format(common=with_epochs(BREAST_CANCER_COMMON.format(minutes=minutes), epochs),
                                     link="" if rotations else BREAST_CANCER_LINK))
    return ini


def write_synthetic(folder: Path, minutes: float, epochs: int = 1000) -> Path:
    """Synthetic 3D+time movies at the default division rate: two to train on, a third to validate on."""
    from octrack.synth import generate

    lines = ["[DEFAULTS]", "output_folder = training_output", "", "[prepare]"]
    number = 0
    for use, movies in SYNTHETIC_MOVIES.items():
        for seed, time_points in movies:
            number += 1
            movie = generate(folder / f"movie_{seed}", seed=seed, time_points=time_points)
            print(f"synthetic movie seed {seed} ({use}): {movie.time_points} time points, {movie.positions} "
                  f"positions, {movie.divisions} divisions")
            voxel = movie.voxel_size
            lines += [f"images_container_{number} = {movie.images_folder}",
                      f"images_pattern_{number} = nuclei_t{{time:03}}.tif",
                      f"tracking_file_{number} = {movie.ground_truth_aut}", f"use_for_{number} = {use}",
                      f"pixel_size_x_um_{number} = {voxel.x_um}", f"pixel_size_y_um_{number} = {voxel.y_um}",
                      f"pixel_size_z_um_{number} = {voxel.z_um}"]
    ini = folder / "organoid_tracker.ini"
    common = with_epochs(SYNTHETIC_COMMON.format(minutes=minutes), epochs)
    ini.write_text("\n".join(lines) + "\n" + TRAINING.format(common=common, link=""))
    return ini


def run(name: str, minutes: float, output: Path, link_rotations: bool, networks: list[str], epochs: int = 1000
        ) -> dict:
    from octrack.calibration import ReliabilityBin, format_reliability
    from octrack.config import Config
    from octrack.model_folder import load_settings
    from octrack.networks import NETWORKS
    from octrack.stages.train import run_training

    folder = output / name
    ini = (write_breast_cancer(folder, minutes, link_rotations, epochs) if name == "breast-cancer"
           else write_synthetic(folder, minutes, epochs))
    started = time.perf_counter()
    results = run_training(Config(ini), networks, restart=True)
    summary: dict = {"data": name, "minutes": round((time.perf_counter() - started) / 60, 1),
                     "link_rotations": link_rotations or name == "synthetic"}
    for result in results:
        network = result.model_folder.name.removeprefix("model_")
        scores = load_settings(result.model_folder, NETWORKS[network].SETTINGS).validation_scores
        before, after = scores["before_calibration"], scores["after_calibration"]
        summary[network] = {
            "average_precision": round(after["average_precision"], 4), "roc_auc": round(after["roc_auc"], 4),
            "precision": round(after["precision"], 4), "recall": round(after["recall"], 4),
            "ece_before": round(before["ece"], 4), "ece_after": round(after["ece"], 4),
            "ece_after_cross_fitted": round(scores["ece_after_calibration_cross_fitted"], 4),
            "validation_samples": after["samples"], "validation_positives": after["positives"],
            "epochs": result.state.epoch, "best_epoch": result.state.best_epoch}
        print(f"\n== {name}, {network}: AP {after['average_precision']:.4f}, ROC AUC {after['roc_auc']:.4f}, "
              f"precision {after['precision']:.4f}, recall {after['recall']:.4f} at p >= 0.5 "
              f"({after['positives']} positives in {after['samples']} validation samples); ECE {before['ece']:.4f} "
              f"before, {after['ece']:.4f} after Platt scaling ({scores['ece_after_calibration_cross_fitted']:.4f} "
              f"cross-fitted); {result.state.epoch} epochs, best {result.state.best_epoch}")
        if network == "divide":
            print(format_reliability([ReliabilityBin(**row) for row in scores["reliability_before"]],
                                     [ReliabilityBin(**row) for row in scores["reliability_after"]]))
    print(json.dumps(summary))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["breast-cancer", "synthetic", "both"], default="both")
    parser.add_argument("--minutes", type=float, default=9.0,
                        help="training budget per network in minutes (default %(default)s: with preparing and "
                             "scoring, about 22 minutes per data set)")
    parser.add_argument("--output", type=Path, default=Path("benchmark_output") / "classifiers")
    parser.add_argument("--link-rotations", action="store_true",
                        help="breast-cancer: train the link network with flips and rotations (off by default "
                             "there: the movie drifts in one direction)")
    parser.add_argument("--networks", default="divide,link", choices=["divide,link", "divide", "link"],
                        help="the networks to train and score (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=1000,
                        help="at most this many epochs of 100 steps (with --minutes, whichever ends first: on a "
                             "busy machine, a number of epochs compares runs where minutes do not)")
    arguments = parser.parse_args()
    names = ["breast-cancer", "synthetic"] if arguments.data == "both" else [arguments.data]
    for name in names:
        run(name, arguments.minutes, arguments.output, arguments.link_rotations, arguments.networks.split(","),
            arguments.epochs)


if __name__ == "__main__":
    main()
