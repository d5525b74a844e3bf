"""scripts/benchmark.py: its operation count on hand-computed models, and its helpers' output (no timing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("octrack_benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flops_of_a_convolution_and_a_dense_layer(benchmark):
    inputs = keras.Input(shape=(4, 6, 6, 2))
    x = keras.layers.Conv3D(3, 3, padding="same")(inputs)  # 2 · 27 · 2 · 3 per voxel, 144 voxels
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)  # 2 · 432 · 5
    assert benchmark.forward_flops(keras.Model(inputs, outputs)) == 2 * 27 * 2 * 3 * 144 + 2 * 432 * 5


def test_flops_of_open_input_shapes_and_transposed_convolutions(benchmark):
    inputs = keras.Input(shape=(None, None, None, 1))
    x = keras.layers.Conv3DTranspose(2, 2, strides=2)(inputs)  # 2 · 8 · 1 · 2 per input voxel
    outputs = keras.layers.Conv3D(1, 1)(x)  # 2 · 2 · 1 per output voxel
    model = keras.Model(inputs, outputs)
    assert benchmark.forward_flops(model, (2, 3, 4, 1)) == 2 * 8 * 2 * 24 + 2 * 2 * 8 * 24


def test_a_shared_sub_model_counts_once_per_call(benchmark):
    shared_input = keras.Input(shape=(3,))
    shared = keras.Model(shared_input, keras.layers.Dense(4)(shared_input))
    a, b = keras.Input(shape=(3,), name="a"), keras.Input(shape=(3,), name="b")
    joined = keras.layers.Concatenate()([shared(a), shared(b)])
    model = keras.Model([a, b], keras.layers.Dense(1)(joined))
    assert benchmark.forward_flops(model) == 2 * (2 * 3 * 4) + 2 * 8 * 1


def test_the_default_networks_cost_what_their_layers_say(benchmark):
    detect = benchmark.default_network("detect")
    patch = benchmark.forward_flops(detect, (16, 64, 64, 3))
    assert benchmark.forward_flops(detect, (16, 128, 64, 3)) == 2 * patch  # fully convolutional
    first = detect.get_layer("down0_conv1")
    assert patch > 2 * 27 * 3 * first.filters * 16 * 64 * 64
    link = benchmark.default_network("link")  # one encoder for both crops, and a small head
    encoder = benchmark.forward_flops(link.get_layer("encoder"))
    assert 2 * encoder < benchmark.forward_flops(link) < 2.01 * encoder


def test_machine_and_table(benchmark):
    machine = benchmark.machine()
    assert machine["cores"] >= 1 and machine["cpu"]
    assert {"python", "numpy", "keras", "backend"} <= set(machine["versions"])
    results = benchmark.with_ratios({
        "matmul": {"gflop_per_s": 200.0, "peak_memory_mb": 90.0},
        "train_detect": {"samples_per_s": 2.0, "gflop_per_sample": 30.0, "gflop_per_s": 60.0,
                         "input_wait_share": 0.05, "peak_memory_mb": 1500.0},
        "train_link": {"error": "exit status 1"},
        "predict_command": {"command_seconds_per_time_point": 30.0, "command_cpu_seconds_per_time_point": 50.0,
                            "startup_seconds": 4.0, "startup_cpu_seconds": 3.5, "in_process_seconds": 25.0,
                            "in_process_cpu_seconds": 45.0, "peak_memory_mb": 1400.0}})
    assert results["train_detect"]["share_of_matmul"] == pytest.approx(0.3)
    rows = {figure: (value, memory) for figure, value, memory in benchmark.table(results)}
    assert rows["train detect: GFLOP/s (share of matmul)"][0] == "60.0 (30%)"
    assert rows["train detect: samples/s"] == ("2.00", "1.50 GB")
    assert rows["train link: samples/s"][0] == "exit status 1"
    assert rows["tracking: s per 100 000 candidate links"] == ("–", "–")
    assert rows["octrack predict --steps positions: s per time point (CPU s)"] == ("30.0 s (50.0)", "1.40 GB")
    assert rows["  in process, Detector.predict: s (CPU s)"][0] == "25.0 s (45.0)"


def test_matmul_and_tracking_stages_give_sane_figures(benchmark, tmp_path):
    matmul = benchmark.stage_matmul(tmp_path, quick=True)
    assert matmul["gflop_per_s"] > 1
    positions = benchmark.random_walk_positions(20, 3)
    assert len(positions) == 60 and positions.time_points() == [0, 1, 2]
