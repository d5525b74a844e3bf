#!/usr/bin/env python3
"""Speed and memory of every stage of octrack, in one run: a table on screen and a JSON file.

    nice -n 19 env PYTHONPATH=$PWD .venv/bin/python scripts/benchmark.py            # about 10 minutes
    nice -n 19 env PYTHONPATH=$PWD .venv/bin/python scripts/benchmark.py --quick    # about 2 minutes

Every stage runs in a fresh Python process (this script with --stage), so that stages share no memory, and
reports its own peak resident memory. The stages run octrack's own code on synthetic data made on the fly:
- matmul: a float32 numpy matrix product (2048 × 2048 @ 2048 × 2048, best of a few): the dense-compute
  ceiling that training is compared with.
- prepare: `octrack.stages.prepare.prepare` of the three caches from a synthetic movie (`octrack.synth.generate`);
  MB/s = megabytes of the movie's TIFF files / seconds of preparing all three caches from scratch.
- train_detect, train_divide, train_link: `octrack.stages.train.run_training` with the ini defaults of each
  network. Samples/s after warm-up: the epochs after the first (which compiles). GFLOP per training sample:
  counted from the model's layers (Conv3D, Conv3DTranspose, Dense: 2 · kernel voxels · Cin · Cout per output
  voxel of the forward pass, per input voxel for a transposed convolution; other layers are not counted),
  times 3 for a training step (forward, plus gradients of inputs and of weights). Input wait: 1 − (seconds
  per step of `fit` on one batch held in memory) / (seconds per step of the real training), the
  measure scripts/benchmark_detection.py uses too (`seconds_per_step_in_memory`).
- predict_detect: `octrack.networks.detect.detect_in_frames` on one 512 × 512 × 32 time point (random frames of the
  time window) with the default detection network (untrained; its output layer's bias set so that no voxel
  passes the threshold), then `find_peaks` on a target map with a nucleus every ~7 µm, as a trained
  network's output would hold. Seconds of the second time point (the first compiles).
- predict_command: `octrack predict --steps positions` as a user runs it: a subprocess on a 512 × 512 × 32
  movie of 2 time points made by `octrack synth`, with a freshly initialised default detection network saved
  as a model folder (its output is noise around 0.5, the worst case for decoding: the candidate cap applies).
  Start-up = `octrack --version` (Python, Keras and the backend imported, devices listed); seconds per time
  point = (the command's seconds − start-up) / 2, wall and CPU (the children's rusage), so model loading, the
  first call's tracing and writing the results count in it. Next to it the in-process counterpart: the same
  model folder loaded in this process, `Detector.predict` on time point 0 (its first call, tracing included,
  as in the command; without reading and writing files). The load average before and after is recorded.
- decode_noise: `find_peaks` on a 512 × 512 × 32 frame of uniform noise (a local maximum in every 27 voxels),
  threshold 0.5, the default minimum distance at the synthetic voxel size: CPU seconds (best of 3), candidates
  found, peaks returned (at most the cap).
- tile_plans: `predict_centres` of the default network (untrained) on a 32 × 256 × 256 time point with the tile
  plan of before (the largest axis halved until 1 M voxels) and with today's (the fewest voxels computed):
  voxels computed, CPU seconds, the largest difference of the outputs and whether the peaks at 0.5 are the same.
- predict_classifiers: `divide.division_probabilities` for 1000 positions and `link.link_probabilities` for
  1000 candidate links in such a time point, default networks (untrained).
- tracking: `octrack.linking.link_tracks` (network-free costs) on synthetic random-walk positions with
  about 100 000 candidate links.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import octrack  # noqa: E402,F401  (its defaults, e.g. TF_ENABLE_ONEDNN_OPTS, are then recorded as the stages get them)

STAGES = ("matmul", "prepare", "train_detect", "train_divide", "train_link", "predict_detect",
          "predict_command", "decode_noise", "tile_plans", "predict_classifiers", "tracking")
COMMAND_TIME_POINTS = 2  # of the movie that `octrack predict` runs on in the predict_command stage
NETWORKS = ("detect", "divide", "link")
PREDICT_SHAPE_ZYX = (32, 512, 512)
CLASSIFIER_CANDIDATES = 1000
TRACKING_TARGET_LINKS = 100_000
RESULT_PREFIX = "BENCHMARK_RESULT "
# environment variables that change the speed figures, recorded with them
SPEED_SETTINGS = ("TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_XLA_FLAGS",
                  "OMP_NUM_THREADS", "KERAS_BACKEND")


# Counting

def forward_flops(model: Any, input_shapes: dict[str, tuple[int, ...]] | tuple[int, ...] | None = None) -> int:
    """Floating-point operations of one forward pass of one sample, from the model's layers (see the module
    docstring). `input_shapes` (without the batch axis) fixes the inputs that the model leaves open."""
    import keras

    if input_shapes is not None:
        inputs = ({name: keras.Input(shape=shape, name=name) for name, shape in input_shapes.items()}
                  if isinstance(input_shapes, dict) else keras.Input(shape=input_shapes))
        model = keras.models.clone_model(model, input_tensors=inputs)
    return _graph_flops(model)


def _graph_flops(model: Any) -> int:
    """Every layer, once per call (a shared sub-model, like the link network's encoder, counts per call)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += max(1, len(layer._inbound_nodes)) * _graph_flops(layer)
            continue
        for node in (node for node in layer._inbound_nodes if node.input_tensors):
            total += layer_flops(layer, node.input_tensors[0].shape, node.output_tensors[0].shape)
    return total


def layer_flops(layer: Any, input_shape: tuple[int | None, ...], output_shape: tuple[int | None, ...]) -> int:
    """2 · (kernel size) · Cin · Cout multiply-adds per output voxel (per input voxel for a transposed
    convolution); 2 · Cin · Cout per output row of a Dense layer; 0 for anything else."""
    import keras

    if isinstance(layer, keras.layers.Conv3DTranspose):
        kernel = layer.kernel.shape  # (kz, ky, kx, Cout, Cin)
        return 2 * math.prod(kernel) * math.prod(input_shape[1:-1])
    if isinstance(layer, (keras.layers.Conv3D, keras.layers.Conv2D, keras.layers.Conv1D)):
        kernel = layer.kernel.shape  # (k..., Cin, Cout)
        return 2 * math.prod(kernel) * math.prod(output_shape[1:-1])
    if isinstance(layer, keras.layers.Dense):
        return 2 * math.prod(layer.kernel.shape) * math.prod(output_shape[1:-1])
    return 0


TRAINING_FLOPS_PER_FORWARD = 3  # forward, backward to the inputs, backward to the weights


# The machine

def machine() -> dict[str, Any]:
    """CPU model, cores, the CPU flags that matter for dense compute, memory, and the versions."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "cpu_flags": []}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
            elif key.strip() == "flags":
                flags = value.split()
                info["cpu_flags"] = sorted(flag for flag in flags if flag.startswith(("avx", "amx", "fma")))
                break
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        info["memory_gib"] = round(total_kib / 2 ** 20, 1)
    info["versions"] = versions()
    info["settings"] = {name: os.environ[name] for name in sorted(os.environ)
                        if name in SPEED_SETTINGS or name.startswith(("DNNL_", "ONEDNN_"))}
    return info


def versions() -> dict[str, str]:
    import keras

    found = {"python": platform.python_version(), "numpy": np.__version__, "keras": keras.__version__,
             "backend": keras.backend.backend()}
    for package in ("tensorflow", "torch", "jax", "scipy", "h5py"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


# Stages (each in its own process)

def stage_matmul(work: Path, quick: bool) -> dict[str, Any]:
    size = 2048
    random = np.random.default_rng(0)
    a, b = (random.random((size, size), dtype=np.float32) for _ in range(2))
    best = math.inf
    for _ in range(3 if quick else 7):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return {"size": size, "seconds": best, "gflop_per_s": 2 * size ** 3 / best / 1e9}


def movie_settings(quick: bool) -> dict[str, Any]:
    """The synthetic movie that prepare caches and training learns from."""
    return ({"size_xyz": (128, 128, 16), "time_points": 8, "nuclei": 30} if quick
            else {"size_xyz": (256, 256, 32), "time_points": 12, "nuclei": 120})


def training_steps(quick: bool) -> dict[str, tuple[int, int]]:
    """(epochs, steps per epoch) per network: the first epoch compiles and is not timed."""
    return {name: ((2, 4) if quick else (3, 15)) if name == "detect" else ((2, 10) if quick else (3, 40))
            for name in NETWORKS}


INI = """\
[DEFAULTS]
output_folder = training
patience = 0
mixed_precision = {precision}

[prepare]
images_container_1 = {images}
images_pattern_1 = {pattern}
tracking_file_1 = {tracking}
pixel_size_x_um_1 = {x}
pixel_size_y_um_1 = {y}
pixel_size_z_um_1 = {z}

[train_detect]
steps_per_epoch = {detect_steps}

[train_divide]
steps_per_epoch = {divide_steps}

[train_link]
steps_per_epoch = {link_steps}
"""


def stage_prepare(work: Path, quick: bool, precision: str) -> dict[str, Any]:
    from octrack.config import Config
    from octrack.stages.prepare import prepare
    from octrack.synth import IMAGES_PATTERN, generate

    movie = generate(work / "movie", seed=1, **movie_settings(quick))
    steps = training_steps(quick)
    ini = work / "organoid_tracker.ini"
    voxel = movie.voxel_size
    ini.write_text(INI.format(precision=precision, images=movie.images_folder, pattern=IMAGES_PATTERN,
                              tracking=movie.ground_truth_aut, x=voxel.x_um, y=voxel.y_um, z=voxel.z_um,
                              **{f"{name}_steps": steps[name][1] for name in NETWORKS}))
    image_bytes = sum(path.stat().st_size for path in movie.images_folder.iterdir())
    started = time.perf_counter()
    _, caches = prepare(Config(ini), rebuild=True, networks=list(NETWORKS), report=lambda text: None)
    seconds = time.perf_counter() - started
    return {"movie": f"{'×'.join(map(str, movie.size_xyz))} voxels × {movie.time_points} time points",
            "image_mb": image_bytes / 1e6, "seconds": seconds, "mb_per_s": image_bytes / 1e6 / seconds,
            "cache_mb": sum(cache.path.stat().st_size for cache in caches) / 1e6}


def stage_train(network_name: str, work: Path, quick: bool) -> dict[str, Any]:
    from octrack.config import Config
    from octrack.networks import NETWORKS
    from octrack.stages.prepare import cache_path, read_section
    from octrack.stages.train import run_training

    config = Config(work / "organoid_tracker.ini")
    epochs, steps = training_steps(quick)[network_name]
    result = run_training(config, [network_name], epochs=epochs, restart=True, report=lambda text: None)[0]
    section = NETWORKS[network_name].read_section(config)
    batch = section.batch_size
    timed = result.state.history[1:]
    seconds_per_step = sum(row["train_seconds"] for row in timed) / (steps * len(timed))
    network = NETWORKS[network_name].training(section, cache_path(read_section(config), network_name))
    in_memory = seconds_per_step_in_memory(network, result.model_folder, batch, section.learning_rate, steps=steps)
    gflop = TRAINING_FLOPS_PER_FORWARD * forward_flops(*_model_and_sample_shape(network)) / 1e9
    samples_per_s = batch / seconds_per_step
    return {"batch_size": batch, "patch_zyx": list(network.patch_zyx), "samples_per_s": samples_per_s,
            "seconds_per_step": seconds_per_step, "seconds_per_step_in_memory": in_memory,
            "input_wait_share": max(0.0, 1 - in_memory / seconds_per_step),
            "gflop_per_sample": gflop, "gflop_per_s": gflop * samples_per_s,
            "parameters": int(network.build_model().count_params())}


def _model_and_sample_shape(network: Any) -> tuple[Any, Any]:
    """The network's model and, where it leaves its input shape open (the detection U-Net), the shape of
    one training patch."""
    model = network.build_model()
    if network.name == "detect":
        return model, (*network.patch_zyx, network.section.time_window.size)
    return model, None


def seconds_per_step_in_memory(network: Any, model_folder: Path, batch_size: int, learning_rate: float,
                               steps: int) -> float:
    """Seconds per step of `fit` on one real training batch held in memory: the same training loop with no
    input to make or wait for."""
    import keras

    from octrack.model_folder import MODEL_FILE, load_keras_model
    from octrack.training import compile_for_training

    class OneBatch(keras.utils.PyDataset):
        def __init__(self, batch: Any, count: int):
            super().__init__()
            self.batch, self.count = batch, count

        def __len__(self) -> int:
            return self.count

        def __getitem__(self, index: int) -> Any:
            return self.batch

    batch = network.training_batches(batch_size, 0, 0)[0]
    model = load_keras_model(model_folder / MODEL_FILE, "the model just trained")
    compile_for_training(model, learning_rate, network.loss())
    model.fit(OneBatch(batch, 3), epochs=1, verbose=0)  # compiles
    started = time.perf_counter()
    model.fit(OneBatch(batch, steps), epochs=1, verbose=0)
    return (time.perf_counter() - started) / steps


def default_network(name: str) -> Any:
    """The model a user gets from the ini defaults (untrained) for input of the synthetic movie's depth."""
    from octrack.config import KEYS
    from octrack.networks import NETWORKS, detect_model, divide, link

    def default(key: str) -> Any:
        return KEYS[key].default_for(NETWORKS[name].SECTION)

    window = 1 + default("time_window_before") + default("time_window_after")
    x, y, z = default("patch_shape")
    if name == detect_model.NAME:
        return detect_model.build_model(window, z, default("unet_levels"), default("unet_filters"))
    builder = divide.build_model if name == divide.NAME else link.build_model
    return builder((z, y, x), window, default("encoder_levels"), default("encoder_filters"))


def time_point_frames(window: int, seed: int = 0) -> list[np.ndarray]:
    random = np.random.default_rng(seed)
    return [random.standard_normal(PREDICT_SHAPE_ZYX, dtype=np.float32) for _ in range(window)]


def stage_predict_detect(work: Path, quick: bool) -> dict[str, Any]:
    from octrack.config import KEYS
    from octrack.networks import detect
    from octrack.networks.detect_model import DetectSettings, unet_tile_multiple
    from octrack.peaks import find_peaks
    from octrack.synth import DEFAULT_VOXEL_SIZE
    from octrack.tiling import tile_budget
    from octrack.time_window import TimeWindow

    model = default_network(detect.NAME)
    model.get_layer("centres").bias.assign(np.full((1,), -20.0, np.float32))
    voxel = DEFAULT_VOXEL_SIZE
    levels = KEYS["unet_levels"].default_for(detect.SECTION)
    x, y, z = KEYS["patch_shape"].default_for(detect.SECTION)
    min_distance = KEYS["min_distance_um"].default_for(detect.SECTION)
    filters = KEYS["unet_filters"].default_for(detect.SECTION)
    settings = DetectSettings(network=detect.NAME, time_window=TimeWindow(1, 1), patch_shape=(z, y, x),
                              voxel_size=voxel, unet_levels=levels, unet_filters=filters,
                              tile_multiple_zyx=unet_tile_multiple(z, levels), min_distance_um=min_distance)
    detector = detect.Detector(model, settings, 0.5, min_distance, work / "untrained.keras")
    frames = time_point_frames(model.input_shape[-1])
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        detect.detect_in_frames(detector, frames, np.ones(3))
        seconds.append(time.perf_counter() - started)
    centres, nuclei = nucleus_map(voxel)
    started = time.perf_counter()
    peaks = find_peaks(centres, 0.5, tuple(min_distance / np.array(voxel.zyx_um())))
    peak_seconds = time.perf_counter() - started
    return {"shape_zyx": list(PREDICT_SHAPE_ZYX), "first_seconds": seconds[0], "network_seconds": seconds[1],
            "peak_seconds": peak_seconds, "peaks": len(peaks), "nuclei": nuclei,
            "seconds": seconds[1] + peak_seconds, "max_tile_voxels": tile_budget(filters),
            "frames_mb": 4 * math.prod(PREDICT_SHAPE_ZYX) * len(frames) / 1e6}


def nucleus_map(voxel: Any) -> tuple[np.ndarray, int]:
    """A map like a trained network's output: a Gaussian peak (σ 1.5 µm) at nuclei ~7 µm apart."""
    from octrack.networks.detect_model import render_target

    random = np.random.default_rng(1)
    extent_um = np.array(PREDICT_SHAPE_ZYX) * np.array(voxel.zyx_um())
    count = int(math.prod(extent_um) / 7.0 ** 3)
    points = random.uniform(0, 1, (count, 3)) * (np.array(PREDICT_SHAPE_ZYX) - 1)
    sigma = tuple(1.5 / np.array(voxel.zyx_um()))
    return render_target(points, PREDICT_SHAPE_ZYX, sigma), count


def stage_predict_command(work: Path, quick: bool) -> dict[str, Any]:
    from octrack.config import Config
    from octrack.dataset import open_datasets
    from octrack.networks import detect
    from octrack.stages.predict import read_section
    from octrack.tracking import Tracking

    movie = work / "command_movie"
    octrack_command("synth", str(movie), "--time-points", str(COMMAND_TIME_POINTS), "--size",
                    *map(str, PREDICT_SHAPE_ZYX), "--nuclei", "60")
    folder = movie / "model_detect"
    save_untrained_detector(folder)
    with open(movie / "organoid_tracker.ini", "a") as ini:
        ini.write(f"detect_model_folder = {folder}\n")  # the last section of the ini is [predict]
    load_before = os.getloadavg()
    startup = octrack_command("--version")
    command = octrack_command("predict", "--steps", "positions", cwd=movie)
    result = {"time_points": COMMAND_TIME_POINTS, "startup_seconds": startup["seconds"],
              "startup_cpu_seconds": startup["cpu_seconds"], "command_seconds": command["seconds"],
              "command_seconds_per_time_point": (command["seconds"] - startup["seconds"]) / COMMAND_TIME_POINTS,
              "command_cpu_seconds_per_time_point":
                  (command["cpu_seconds"] - startup["cpu_seconds"]) / COMMAND_TIME_POINTS}
    config = Config(movie / "organoid_tracker.ini")
    dataset = open_datasets(config, "predict")[0]
    detector = detect.load(folder, read_section(config))
    frames = detector.frames(dataset)
    started, cpu = time.perf_counter(), time.process_time()
    peaks = detector.predict(frames, Tracking(), 0)
    result.update(in_process_seconds=time.perf_counter() - started, in_process_cpu_seconds=time.process_time() - cpu,
                  peaks=len(peaks), load_average=[load_before, os.getloadavg()])
    return result


def stage_decode_noise(work: Path, quick: bool) -> dict[str, Any]:
    from octrack.config import KEYS
    from octrack.networks import detect
    from octrack.peaks import _local_maxima, candidate_cap, find_peaks
    from octrack.synth import DEFAULT_VOXEL_SIZE

    noise = np.random.default_rng(4).random(PREDICT_SHAPE_ZYX, dtype=np.float32)
    min_distance = KEYS["min_distance_um"].default_for(detect.SECTION) / np.array(DEFAULT_VOXEL_SIZE.zyx_um())
    seconds = []
    for _ in range(3):
        started = time.process_time()
        peaks = find_peaks(noise, 0.5, tuple(min_distance))
        seconds.append(time.process_time() - started)
    return {"cpu_seconds": min(seconds), "candidates": len(_local_maxima(noise, 0.5)), "peaks": len(peaks),
            "cap": candidate_cap(noise.shape), "load_average": os.getloadavg()}


def stage_tile_plans(work: Path, quick: bool) -> dict[str, Any]:
    from octrack import tiling
    from octrack.config import KEYS
    from octrack.networks import detect
    from octrack.networks.detect_model import edge_margin, predict_centres, unet_tile_multiple
    from octrack.peaks import find_peaks

    model = default_network(detect.NAME)
    x, y, z = KEYS["patch_shape"].default_for(detect.SECTION)
    multiple = unet_tile_multiple(z, KEYS["unet_levels"].default_for(detect.SECTION))
    filters = KEYS["unet_filters"].default_for(detect.SECTION)
    shape = (32, 256, 256)
    frames = [frame[:, :shape[1], :shape[2]] for frame in time_point_frames(model.input_shape[-1])]
    covered = tuple(size + 2 * margin for size, margin in zip(shape, edge_margin((z, y, x), shape)))
    overlap = tuple(4 * size for size in multiple)
    plans = {"before": halving_plan(covered, multiple, overlap),
             "now": tiling.plan_tiles(covered, multiple, overlap, tiling.tile_budget(filters))}
    result: dict[str, Any] = {"shape_zyx": list(shape)}
    outputs = {}
    original = tiling.plan_tiles
    for name, plan in plans.items():
        tiling.plan_tiles = lambda *arguments, plan=plan, **options: plan
        predict_centres(model, frames, multiple, (z, y, x), filters)  # compiles this tile shape
        started = time.process_time()
        outputs[name] = predict_centres(model, frames, multiple, (z, y, x), filters)
        result[name] = {"tile_zyx": list(plan.tile_zyx), "tiles": len(list(plan.starts(covered))),
                        "cpu_seconds": time.process_time() - started}
        result[name]["voxels_computed_per_voxel"] = result[name]["tiles"] * math.prod(plan.tile_zyx) / math.prod(shape)
    tiling.plan_tiles = original
    peaks = {name: find_peaks(output, float(np.median(output)), (1.5, 9.4, 9.4)) for name, output in outputs.items()}
    result.update(max_output_difference=float(np.abs(outputs["before"] - outputs["now"]).max()),
                  same_peaks=bool(np.array_equal(peaks["before"][:, :3], peaks["now"][:, :3])),
                  peaks=len(peaks["now"]))
    return result


def halving_plan(shape: tuple[int, ...], multiple: tuple[int, ...], overlap: tuple[int, ...],
                 max_voxels: int = 1 << 20) -> Any:
    """The tile plan before issue 15: the largest axis (z last) halved until the tile fits the budget."""
    from octrack.tiling import TilePlan

    def round_up(value: int, step: int) -> int:
        return max(step, -(-value // step) * step)

    tile = [round_up(size, step) for size, step in zip(shape, multiple)]
    while math.prod(tile) > max_voxels:
        axis = int(np.argmax([size if index > 0 else size / 4 for index, size in enumerate(tile)]))
        smaller = round_up(max(tile[axis] // 2, 2 * overlap[axis] + multiple[axis]), multiple[axis])
        if smaller >= tile[axis]:
            break
        tile[axis] = smaller
    return TilePlan(tuple(tile), tuple(min(o, t // 4) if t < s else 0 for o, t, s in zip(overlap, tile, shape)))


def octrack_command(*arguments: str, cwd: Path | None = None) -> dict[str, float]:
    """Runs `octrack ARGUMENTS` (this checkout's, as `python -m octrack`): wall and CPU seconds (its rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.run([sys.executable, "-m", "octrack", *arguments], cwd=cwd, env=environment,
                             capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"octrack {' '.join(arguments)}: exit {process.returncode}\n{process.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"seconds": seconds,
            "cpu_seconds": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


def save_untrained_detector(folder: Path) -> None:
    """A model folder of the default detection network, freshly initialised, at the synthetic voxel size."""
    from octrack.config import KEYS
    from octrack.model_folder import save_model_folder
    from octrack.networks import detect
    from octrack.networks.detect_model import DetectSettings, unet_tile_multiple
    from octrack.synth import DEFAULT_VOXEL_SIZE
    from octrack.time_window import TimeWindow

    def default(key: str) -> Any:
        return KEYS[key].default_for(detect.SECTION)

    x, y, z = default("patch_shape")
    levels = default("unet_levels")
    settings = DetectSettings(
        network=detect.NAME, time_window=TimeWindow(default("time_window_before"), default("time_window_after")),
        patch_shape=(z, y, x), voxel_size=DEFAULT_VOXEL_SIZE, unet_levels=levels, unet_filters=default("unet_filters"),
        tile_multiple_zyx=unet_tile_multiple(z, levels), min_distance_um=default("min_distance_um"))
    save_model_folder(folder, default_network(detect.NAME), settings)


def stage_predict_classifiers(work: Path, quick: bool) -> dict[str, Any]:
    from octrack.networks import divide, link
    from octrack.synth import DEFAULT_VOXEL_SIZE
    from octrack.tracking import Position

    random = np.random.default_rng(2)
    centres = random.uniform(0, 1, (CLASSIFIER_CANDIDATES, 3)) * (np.array(PREDICT_SHAPE_ZYX) - 1)
    result = {}
    model = default_network(divide.NAME)
    frames = time_point_frames(model.input_shape[-1])
    patch = tuple(model.input_shape[1:4])
    divide.division_probabilities(model, frames, centres[:10], patch)  # compiles
    started = time.perf_counter()
    divide.division_probabilities(model, frames, centres, patch)
    result["divide_seconds_per_1000"] = (time.perf_counter() - started) * 1000 / len(centres)

    model = default_network(link.NAME)
    frames = time_point_frames(model.input_shape[0][-1])
    patch = tuple(model.input_shape[0][1:4])
    positions = [Position(x, y, z, 0) for z, y, x in centres]
    pairs = np.column_stack([np.arange(len(centres)), random.permutation(len(centres))])
    candidates = link.Candidates(positions, positions, pairs, centres[pairs[:, 1]] - centres[pairs[:, 0]])
    image_zyx = np.concatenate([centres, centres])
    link.link_probabilities(model, frames, candidates, image_zyx, DEFAULT_VOXEL_SIZE, patch)  # compiles
    started = time.perf_counter()
    link.link_probabilities(model, frames, candidates, image_zyx, DEFAULT_VOXEL_SIZE, patch)
    result["link_seconds_per_1000"] = (time.perf_counter() - started) * 1000 / len(pairs)
    return result


def random_walk_positions(nuclei: int, time_points: int, seed: int = 3) -> Any:
    """Nuclei ~8 µm apart in a slab, each moving 1 µm per axis and time point: positions only."""
    from octrack.tracking import Position, VoxelSize
    from octrack.tracking.model import from_positions

    voxel = VoxelSize(0.32, 0.32, 2.0)
    random = np.random.default_rng(seed)
    side_um = math.sqrt(nuclei * 8.0 ** 3 / 40.0)
    centres = random.uniform(0, 1, (nuclei, 3)) * np.array([side_um, side_um, 40.0])  # x, y, z in µm
    positions = []
    for time_point in range(time_points):
        centres = centres + random.normal(0, 1.0, centres.shape)
        positions += [Position(x / voxel.x_um, y / voxel.y_um, z / voxel.z_um, time_point) for x, y, z in centres]
    return from_positions(positions, voxel)


def stage_tracking(work: Path, quick: bool) -> dict[str, Any]:
    from octrack.linking import link_tracks

    positions = random_walk_positions(1000, 70)
    started = time.perf_counter()
    result = link_tracks(positions)
    seconds = time.perf_counter() - started
    return {"positions": len(positions), "candidate_links": result.candidate_links, "seconds": seconds,
            "seconds_per_100k": seconds * TRACKING_TARGET_LINKS / result.candidate_links}


def run_stage(name: str, work: Path, quick: bool, precision: str) -> dict[str, Any]:
    if name == "prepare":
        return stage_prepare(work, quick, precision)
    if name.startswith("train_"):
        return stage_train(name.removeprefix("train_"), work, quick)
    return globals()[f"stage_{name}"](work, quick)


def peak_memory_mb() -> float:
    """The peak resident memory of this process and its finished children, in MB (ru_maxrss is in KiB)."""
    return 1024 * max(resource.getrusage(who).ru_maxrss
                      for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1e6


# The parent: one process per stage, the table, the JSON file

def spawn(name: str, work: Path, quick: bool, precision: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--stage", name, "--work", str(work), "--mixed-precision", precision]
    if quick:
        command.append("--quick")
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        sys.stderr.write(process.stdout[-3000:] + process.stderr[-3000:])
        return {"error": f"exit status {process.returncode}", "wall_seconds": time.perf_counter() - started}
    return {**json.loads(lines[-1].removeprefix(RESULT_PREFIX)), "wall_seconds": time.perf_counter() - started}


def with_ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each network's achieved GFLOP/s as a share of the matrix product's."""
    matmul = results.get("matmul", {}).get("gflop_per_s")
    for name in NETWORKS:
        stage = results.get(f"train_{name}", {})
        if matmul and "gflop_per_s" in stage:
            stage["share_of_matmul"] = stage["gflop_per_s"] / matmul
    return results


def table(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(figure, value, peak memory of its stage) rows."""
    def memory(stage: str) -> str:
        value = results.get(stage, {}).get("peak_memory_mb")
        return f"{value / 1000:.2f} GB" if value else "–"

    def get(stage: str, key: str, form: str) -> str:
        value = results.get(stage, {}).get(key)
        return form.format(value) if value is not None else results.get(stage, {}).get("error", "–")

    rows = [("float32 matrix product 2048³ (numpy)", get("matmul", "gflop_per_s", "{:.0f} GFLOP/s"),
             memory("matmul")),
            ("prepare (3 caches)", get("prepare", "mb_per_s", "{:.1f} MB/s"), memory("prepare"))]
    for name in NETWORKS:
        stage = f"train_{name}"
        rows += [(f"train {name}: samples/s", get(stage, "samples_per_s", "{:.2f}"), memory(stage)),
                 (f"train {name}: GFLOP per sample (3 × forward)", get(stage, "gflop_per_sample", "{:.2f}"), ""),
                 (f"train {name}: GFLOP/s (share of matmul)",
                  get(stage, "gflop_per_s", "{:.1f}") + get(stage, "share_of_matmul", " ({:.0%})"), ""),
                 (f"train {name}: input wait", get(stage, "input_wait_share", "{:.1%}"), "")]
    rows += [("predict detect: s per 512×512×32 time point", get("predict_detect", "seconds", "{:.1f} s"),
              memory("predict_detect")),
             ("octrack predict --steps positions: s per time point (CPU s)",
              get("predict_command", "command_seconds_per_time_point", "{:.1f} s")
              + get("predict_command", "command_cpu_seconds_per_time_point", " ({:.1f})"), memory("predict_command")),
             ("  its start-up (`octrack --version`): s (CPU s)", get("predict_command", "startup_seconds", "{:.1f} s")
              + get("predict_command", "startup_cpu_seconds", " ({:.1f})"), ""),
             ("  in process, Detector.predict: s (CPU s)", get("predict_command", "in_process_seconds", "{:.1f} s")
              + get("predict_command", "in_process_cpu_seconds", " ({:.1f})"), ""),
             ("decoding a 512×512×32 frame of noise: CPU s", get("decode_noise", "cpu_seconds", "{:.2f} s"),
              memory("decode_noise")),
             ("tile plan before → now: CPU s of predict_centres, 32×256×256", " → ".join(
                 "{tiles} of {tile_zyx}: {cpu_seconds:.1f} s".format(**results["tile_plans"][name])
                 for name in ("before", "now")) if "now" in results.get("tile_plans", {}) else "–",
              memory("tile_plans")),
             ("predict divide: s per 1000 positions", get("predict_classifiers", "divide_seconds_per_1000",
                                                          "{:.2f} s"), memory("predict_classifiers")),
             ("predict link: s per 1000 candidate links", get("predict_classifiers", "link_seconds_per_1000",
                                                              "{:.2f} s"), ""),
             ("tracking: s per 100 000 candidate links", get("tracking", "seconds_per_100k", "{:.1f} s"),
              memory("tracking"))]
    return rows


def print_table(rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    print(f"{'figure':<{widths[0]}}  {'value':>{widths[1]}}  peak memory")
    for figure, value, memory in rows:
        print(f"{figure:<{widths[0]}}  {value:>{widths[1]}}  {memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller movie and fewer steps (~2 minutes)")
    parser.add_argument("--json", type=Path, default=Path("benchmark_output") / "benchmark.json")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset of: " + ", ".join(STAGES))
    parser.add_argument("--mixed-precision", default="float32",
                        choices=["float32", "mixed_bfloat16", "mixed_float16"],
                        help="the ini's mixed_precision for the training stages")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.stage:
        result = run_stage(arguments.stage, arguments.work, arguments.quick, arguments.mixed_precision)
        print(RESULT_PREFIX + json.dumps({**result, "peak_memory_mb": peak_memory_mb()}))
        return
    from octrack.files import write_text_atomic

    stages = [stage for stage in arguments.stages.split(",") if stage]
    unknown = [stage for stage in stages if stage not in STAGES]
    if unknown:
        parser.error(f"--stages: unknown stage {unknown[0]}; stages: {', '.join(STAGES)}")
    if any(stage.startswith("train_") for stage in stages) and "prepare" not in stages:
        parser.error("--stages: the train_* stages need the prepare stage")
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="octrack-benchmark-") as work:
        for stage in stages:
            print(f"{stage} …", flush=True)
            results[stage] = spawn(stage, Path(work), arguments.quick, arguments.mixed_precision)
    report = {"machine": machine(), "quick": arguments.quick, "mixed_precision": arguments.mixed_precision,
              "total_seconds": time.perf_counter() - started, "stages": with_ratios(results)}
    print(f"\n{report['machine']['cpu']}, {report['machine']['cores']} cores; " + ", ".join(
        f"{name} {version}" for name, version in report["machine"]["versions"].items()))
    print_table(table(results))
    write_text_atomic(arguments.json, json.dumps(report, indent=1))
    print(f"\n{arguments.json} ({report['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
