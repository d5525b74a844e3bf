#!/usr/bin/env python3
"""TensorFlow's convolution speed with its oneDNN CPU kernels on and off (docs/benchmarks.md, "oneDNN on by default").

    python scripts/benchmark_onednn.py

Times one 3×3×3 convolution, 16 → 16 channels, on 32 × 128 × 128 voxels, five times after a warm-up, in a fresh
process per setting of TF_ENABLE_ONEDNN_OPTS (TensorFlow reads it once, at import), and prints GFLOP per CPU second
and per wall second for each, then the ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPEATS = 5
SHAPE_ZYX, CHANNELS = (32, 128, 128), 16


def measure() -> dict[str, float]:
    import time

    import numpy as np
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    volume = tf.constant(np.random.default_rng(0).random((1, *SHAPE_ZYX, CHANNELS), dtype=np.float32))
    kernel = tf.constant(np.random.default_rng(1).random((3, 3, 3, CHANNELS, CHANNELS), dtype=np.float32))
    convolve = tf.function(lambda x: tf.nn.conv3d(x, kernel, [1] * 5, "SAME"))
    convolve(volume).numpy()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(REPEATS):
        convolve(volume).numpy()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    flop = REPEATS * 2 * 27 * CHANNELS * CHANNELS * int(np.prod(SHAPE_ZYX))
    return {"onednn_on": bool(_pywrap_util_port.IsMklEnabled()), "gflop_per_cpu_second": flop / cpu / 1e9,
            "gflop_per_second": flop / wall / 1e9, "load_average": os.getloadavg()[0]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure()))
        return
    results = {}
    for setting in ("0", "1"):
        environment = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
        finished = subprocess.run([sys.executable, __file__, "--measure"], env=environment, capture_output=True,
                                  text=True, check=True)
        results[setting] = json.loads(finished.stdout.strip().splitlines()[-1])
        result = results[setting]
        print(f"TF_ENABLE_ONEDNN_OPTS={setting} (oneDNN {'on' if result['onednn_on'] else 'off'}): "
              f"{result['gflop_per_cpu_second']:.1f} GFLOP per CPU second, {result['gflop_per_second']:.1f} per "
              f"wall second (load average {result['load_average']:.1f})")
    ratio = results["1"]["gflop_per_cpu_second"] / results["0"]["gflop_per_cpu_second"]
    print(f"oneDNN on / off: {ratio:.2f}x per CPU second")


if __name__ == "__main__":
    main()
