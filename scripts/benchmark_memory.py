#!/usr/bin/env python3
"""Peak memory of `octrack predict --steps positions` on large frames: does prediction stay within the time
window, whatever the length of the movie?

Writes a movie of uint16 noise (default 5 time points of 2048 × 2048 × 64, 512 MiB each: more than one time
window) and a tiny untrained detection model (time window 1 + 1 + 1; by default no pooling and 1 filter, its
output below the peak threshold: fast, with small activations per tile; a default-size network adds its own,
a fixed amount set by the tile size of octrack.tiling, not by the frame's). Then it runs predict in a fresh
process and prints that process's peak resident memory (max RSS) and the peak of what numpy and Python
allocated (tracemalloc: the arrays, not TensorFlow's own buffers), next to the same for a process that only
loads the model and runs it once on a small frame (the fixed cost of the framework). The figures are in MiB
and in float32 frames (4 bytes per voxel of one time point).

    nice -n 19 env PYTHONPATH=$PWD /work/main/.venv/bin/python scripts/benchmark_memory.py [--size 64 2048 2048]

Ends with a JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import write_noise_movie, write_tiny_detection_model  # noqa: E402

INI = """\
[predict]
images_container_1 = images
images_pattern_1 = nuclei_t{{time:03}}.tif
pixel_size_x_um_1 = 0.32
pixel_size_y_um_1 = 0.32
pixel_size_z_um_1 = 2
detect_model_folder = {model}
output_folder = output
"""

# Runs in the measured process: argv[1] = ini, argv[2] = "predict" or "baseline".
MEASURED = """\
import json, resource, sys, tracemalloc
import numpy as np
tracemalloc.start()
if sys.argv[2] == "predict":
    from octrack.cli import main
    assert main(["predict", "--quiet", "--config", sys.argv[1], "--steps", "positions"]) == 0
else:
    from octrack.config import Config
    from octrack.networks import detect
    from octrack.networks.detect_model import predict_centres
    from octrack.stages.predict import read_section
    predict = read_section(Config(sys.argv[1]))
    detector = detect.load(predict.model_folder(detect.NAME), predict)
    predict_centres(detector.model, [np.zeros((16, 64, 64), np.float32)] * detector.settings.time_window.size,
                    detector.settings.tile_multiple_zyx, (1, 1, 1), detector.settings.unet_filters)
print(json.dumps({"max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "traced_peak_mib": tracemalloc.get_traced_memory()[1] / 2 ** 20}))
"""


def measure(ini: Path, mode: str) -> dict[str, float]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", MEASURED, str(ini), mode], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    if result.returncode != 0:
        sys.exit(f"{mode} failed:\n{result.stderr}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=(64, 2048, 2048), metavar=("Z", "Y", "X"),
                        help="frame size, z y x as every octrack command line takes it")
    parser.add_argument("--time-points", type=int, default=5)
    parser.add_argument("--levels", type=int, default=0, help="poolings of the tiny model's U-Net")
    parser.add_argument("--filters", type=int, default=1, help="filters of its first level")
    parser.add_argument("--output", type=Path, help="folder for the movie and model (default: a temporary one)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=arguments.output) as folder:
        folder = Path(folder)
        size_xyz = tuple(arguments.size[::-1])
        write_noise_movie(folder / "images", size_xyz, arguments.time_points)
        model = write_tiny_detection_model(folder / "model", levels=arguments.levels, filters=arguments.filters)
        ini = folder / "organoid_tracker.ini"
        ini.write_text(INI.format(model=model))
        baseline, predict = measure(ini, "baseline"), measure(ini, "predict")
    frame_mib = 4 * math.prod(arguments.size) / 2 ** 20
    z, y, x = arguments.size
    print(f"frames z, y, x = {z}, {y}, {x}, {arguments.time_points} time points, time window 3, a U-Net of "
          f"{arguments.levels} levels and {arguments.filters} filters; one float32 frame = {frame_mib:.0f} MiB")
    print(f"{'':28}{'max RSS':>12}{'numpy+Python':>14}{'seconds':>9}")
    for name, figures in (("baseline (model, no frames)", baseline), ("predict --steps positions", predict)):
        print(f"{name:28}{figures['max_rss_mib']:>8.0f} MiB{figures['traced_peak_mib']:>10.0f} MiB"
              f"{figures['seconds']:>9.1f}")
    above = predict["max_rss_mib"] - baseline["max_rss_mib"]
    traced_above = predict["traced_peak_mib"] - baseline["traced_peak_mib"]
    print(f"predict above the baseline: {above:.0f} MiB = {above / frame_mib:.2f} float32 frames "
          f"(numpy+Python: {traced_above:.0f} MiB = {traced_above / frame_mib:.2f} frames)")
    print(json.dumps({"size_zyx": list(arguments.size), "time_points": arguments.time_points,
                      "levels": arguments.levels, "filters": arguments.filters,
                      "frame_float32_mib": frame_mib, "baseline": baseline, "predict": predict,
                      "above_baseline_frames": above / frame_mib,
                      "traced_above_baseline_frames": traced_above / frame_mib}))


if __name__ == "__main__":
    main()
