#!/usr/bin/env python3
"""Detection benchmark: trains the detection network within a time budget, predicts held-out time points,
and prints F1, training throughput (patches/s) and the share of training time spent waiting for data.

    python scripts/benchmark_detection.py --data breast-cancer   # real 2D: train 0-8, validate 9-11, F1 at 8 px
    python scripts/benchmark_detection.py --data breast-cancer-defaults   # the same, sizes from the data
    python scripts/benchmark_detection.py --data synthetic       # 3D: train on two movies, score a third at 5 µm

Each run writes to --output (default ./benchmark_output/detection/NAME) and ends with a JSON line.
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
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark import seconds_per_step_in_memory  # noqa: E402

BREAST_CANCER_DATASETS = """\
[prepare]
images_container_1 = {data}/breast-cancer-2d/01
images_pattern_1 = t{{time:04}}.tif
tracking_file_1 = {data}/breast-cancer-2d/01_GT/TRA
max_time_point_1 = 8
use_for_1 = train
images_container_2 = {data}/breast-cancer-2d/01
images_pattern_2 = t{{time:04}}.tif
tracking_file_2 = {data}/breast-cancer-2d/01_GT/TRA
min_time_point_2 = 9
use_for_2 = validation
pixel_size_x_um_1 = 1
pixel_size_y_um_1 = 1
pixel_size_z_um_1 = 1
pixel_size_x_um_2 = 1
pixel_size_y_um_2 = 1
pixel_size_z_um_2 = 1

[predict]
images_container_1 = {data}/breast-cancer-2d/01
images_pattern_1 = t{{time:04}}.tif
min_time_point_1 = 9
pixel_size_x_um_1 = 1
pixel_size_y_um_1 = 1
pixel_size_z_um_1 = 1
"""

BREAST_CANCER_INI = """\
[DEFAULTS]
output_folder = training_output
patch_shape = 128, 128, 1
batch_size = 8
target_sigma_um = 3
min_distance_um = 6
match_distance_um = 8
patience = 0
time_window_before = 1
time_window_after = 1
max_training_minutes = {minutes}
epochs = 1000
steps_per_epoch = 50

""" + BREAST_CANCER_DATASETS


# The same data with an ini of only the datasets, their voxel size (1 µm = 1 px: the data give none) and the
# training's length: every size from the data (octrack/data_defaults.py). The length is 1200 steps of 8 patches, as
# the hand-tuned run of 6 minutes (24 epochs of 50 steps, F1 0.961), in epochs of 100 steps (half the validation
# passes), so that the figure does not depend on how busy the machine is; --minutes is only a cap.
BREAST_CANCER_DEFAULTS_INI = """\
[DEFAULTS]
output_folder = training_output
epochs = 12
steps_per_epoch = 100
max_training_minutes = {minutes}

""" + BREAST_CANCER_DATASETS

SYNTHETIC_INI = """\
[DEFAULTS]
output_folder = training_output

[prepare]
{training_datasets}
[predict]
images_container_1 = {held_out}
images_pattern_1 = nuclei_t{{time:03}}.tif
{voxel_keys_1}
[train_detect]
patch_shape = 64, 64, 16
batch_size = 4
unet_filters = 8
# the synthetic nuclei are at least 6.8 µm apart: peaks closer than 4 µm are one nucleus
min_distance_um = 4
patience = 0
max_training_minutes = {minutes}
epochs = 1000
steps_per_epoch = 40
"""
SYNTHETIC_TRAINING_SEEDS = (1, 3)  # two movies of 12 time points to learn from
SYNTHETIC_HELD_OUT_SEED = 2


def write_breast_cancer(folder: Path, minutes: float, template: str = BREAST_CANCER_INI
                        ) -> tuple[Path, Path, float, str]:
    if not (DATA / "breast-cancer-2d").exists():
        sys.exit(f"real data not found at {DATA / 'breast-cancer-2d'}")
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "organoid_tracker.ini"
    ini.write_text(template.format(minutes=minutes, data=DATA))
    return ini, DATA / "breast-cancer-2d" / "01_GT" / "TRA", 8.0, "px"


def write_breast_cancer_defaults(folder: Path, minutes: float) -> tuple[Path, Path, float, str]:
    return write_breast_cancer(folder, minutes, BREAST_CANCER_DEFAULTS_INI)


def voxel_keys(number: int, voxel) -> str:
    """The pixel_size_*_um_N lines of a dataset."""
    return "".join(f"pixel_size_{axis}_um_{number} = {size}\n"
                   for axis, size in zip("xyz", (voxel.x_um, voxel.y_um, voxel.z_um)))


def write_synthetic(folder: Path, minutes: float) -> tuple[Path, Path, float, str]:
    """Trains on synthetic movies (seeds 1 and 3) and predicts another (seed 2) that it never saw."""
    from octrack.synth import IMAGES_PATTERN, generate

    datasets = []
    for number, seed in enumerate(SYNTHETIC_TRAINING_SEEDS, start=1):
        movie = generate(folder / f"train_seed{seed}", seed=seed, time_points=12)
        datasets.append(f"images_container_{number} = {movie.images_folder}\n"
                        f"images_pattern_{number} = {IMAGES_PATTERN}\n"
                        f"tracking_file_{number} = {movie.ground_truth_aut}\n"
                        + voxel_keys(number, movie.voxel_size))
    held_out = generate(folder / "held_out", seed=SYNTHETIC_HELD_OUT_SEED, time_points=6)
    ini = folder / "organoid_tracker.ini"
    ini.write_text(SYNTHETIC_INI.format(training_datasets="".join(datasets),
                                        held_out=held_out.images_folder, minutes=minutes,
                                        voxel_keys_1=voxel_keys(1, held_out.voxel_size)))
    return ini, held_out.ground_truth_aut, 5.0, "um"


def uncertain_as_certain(tracking):
    """`tracking` with every uncertain annotation made certain (changed in place): the strictest scoring."""
    from octrack.tracking.model import UNCERTAIN

    for position in tracking.positions():
        tracking.position_data(position).pop(UNCERTAIN, None)
    return tracking


def override_keys(ini: Path, assignments: list[str]) -> None:
    """Sets KEY=VALUE pairs in the ini's [train_detect] section (for trying a setting against the benchmark's)."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(ini, encoding="utf-8")
    if not parser.has_section("train_detect"):
        parser.add_section("train_detect")
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator:
            raise SystemExit(f"--set {assignment}: expected KEY=VALUE, e.g. --set unet_filters=8")
        parser.set("train_detect", key.strip(), value.strip())
    with open(ini, "w", encoding="utf-8") as file:
        parser.write(file)


def run(name: str, minutes: float, output: Path, assignments: list[str] = ()) -> dict:
    from octrack.config import Config
    from octrack.dataset import open_datasets
    from octrack.networks import detect
    from octrack.scoring import score_detections
    from octrack.stages.predict import run_predict
    from octrack.stages.prepare import cache_path, read_section, section_for_data
    from octrack.stages.train import run_training
    from octrack.tracking import load_tracking

    writer = {"breast-cancer": write_breast_cancer, "breast-cancer-defaults": write_breast_cancer_defaults,
              "synthetic": write_synthetic}[name]
    ini, ground_truth, distance, unit = writer(output / name, minutes)
    if assignments:
        override_keys(ini, list(assignments))
    config = Config(ini)
    started = time.perf_counter()
    result = run_training(config, ["detect"], restart=True)[0]
    training_minutes = (time.perf_counter() - started) / 60
    predictions = run_predict(config, ["positions"])[0]
    truth = load_tracking(ground_truth)
    predicted = load_tracking(predictions / "positions.csv")
    predicted_range = open_datasets(config, "predict")[0].time_points
    time_points = [t for t in truth.time_points() if t in predicted_range]
    distance_keys = {"max_distance_px": distance} if unit == "px" else {"max_distance_um": distance}
    scores = score_detections(truth, predicted, time_points=time_points, **distance_keys)
    strict = score_detections(uncertain_as_certain(load_tracking(ground_truth)), predicted, time_points=time_points, **distance_keys)

    history = result.state.history
    steps = result.state.steps_per_epoch
    section, _ = section_for_data(config, detect.NAME, open_datasets(config, "prepare"))  # as training had it
    batch = section.batch_size
    timed = history[1:] or history  # the first epoch includes compiling
    train_seconds = sum(row["train_seconds"] for row in timed)
    seconds_per_step = train_seconds / (steps * len(timed))
    network = detect.training(section, cache_path(read_section(config), detect.NAME))
    compute = seconds_per_step_in_memory(network, result.model_folder, batch, section.learning_rate, steps=30)
    summary = {
        "data": name, "settings": list(assignments), "f1": round(scores.f1, 4), "precision": round(scores.precision, 4),
        "recall": round(scores.recall, 4), "match_distance": f"{distance:g} {unit}",
        "uncertain_annotations": scores.uncertain, "predictions_at_uncertain_annotations": scores.at_uncertain,
        "f1_counting_uncertain_as_certain": round(strict.f1, 4),
        "time_points_scored": time_points, "training_minutes": round(training_minutes, 1),
        "epochs": result.state.epoch, "best_epoch": result.state.best_epoch,
        "patches_per_second": round(batch / seconds_per_step, 2),
        "data_wait_share": round(max(0.0, 1 - compute / seconds_per_step), 3),
    }
    print(f"\n== {name}: F1 {summary['f1']:.4f} (precision {summary['precision']:.4f}, recall "
          f"{summary['recall']:.4f}) at {distance:g} {unit} on time points {time_points}")
    if scores.uncertain:
        print(f"   {scores.uncertain} uncertain annotations (nuclei mostly outside the image) count neither way, "
              f"{scores.at_uncertain} predictions matched them; counting them as certain: F1 {strict.f1:.4f}")
    print(f"   training {summary['training_minutes']} min, {summary['epochs']} epochs (best {summary['best_epoch']}),"
          f" {summary['patches_per_second']} patches/s, waiting for data {100 * summary['data_wait_share']:.1f}%")
    print(json.dumps(summary))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["breast-cancer", "breast-cancer-defaults", "synthetic", "both"],
                        default="both", help="breast-cancer-defaults: an ini of only datasets, voxel size and the "
                                             "time budget")
    parser.add_argument("--minutes", type=float, default=19.5,
                        help="training budget per data set in minutes (default %(default)s; predicting and "
                             "scoring come on top)")
    parser.add_argument("--output", type=Path, default=Path("benchmark_output") / "detection")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="assignments",
                        help="an ini key of [train_detect] to try against the benchmark's setting, e.g. "
                             "--set unet_filters=8 (repeatable)")
    arguments = parser.parse_args()
    names = ["breast-cancer", "synthetic"] if arguments.data == "both" else [arguments.data]
    for name in names:
        run(name, arguments.minutes, arguments.output, arguments.assignments)


if __name__ == "__main__":
    main()
