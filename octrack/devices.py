"""Where the networks run: the Keras backend, the devices it will use, and the number format that suits them.

Backend-neutral: asks TensorFlow, PyTorch or JAX, whichever Keras runs on (KERAS_BACKEND), and imports none
of the others. `octrack --version` and `octrack doctor` print `describe()`; training and prediction log
`describe_briefly()` once per process.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata

from octrack import __version__

log = logging.getLogger(__name__)

AUTO_PRECISION = "auto"
GPU_PRECISION = "mixed_float16"  # every CUDA GPU since Volta computes float16 in its tensor cores
CPU_PRECISION = "float32"  # CPUs without AVX512_BF16 or AMX emulate 16-bit formats, which is slower


CUDA_RUNTIMES = ("nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13", "nvidia-cuda-runtime")


def choose_backend() -> None:
    """KERAS_BACKEND=torch where it is unset and PyTorch's CUDA build is installed (`pip install 'octrack[cuda]'`),
    so that one install line gives a user the GPU. Asks the package metadata only: no import, no start-up cost.
    A KERAS_BACKEND of the user's own wins."""
    if "KERAS_BACKEND" in os.environ:
        return
    if _installed("torch") and any(_installed(runtime) for runtime in CUDA_RUNTIMES):
        os.environ["KERAS_BACKEND"] = "torch"


# What TensorFlow's C++ side writes to stderr while it is imported with oneDNN on, whatever TF_CPP_MIN_LOG_LEVEL
# says (absl logs before it is initialised): a notice that results may differ by round-off, and absl's preamble.
TENSORFLOW_IMPORT_NOISE = ("All log messages before absl::InitializeLog() is called", "oneDNN custom operations are on")


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports `tensorflow`, whoever asks for it first, with TENSORFLOW_IMPORT_NOISE left out of stderr, so that
    a refused command still prints its one line and nothing else. Everything else written meanwhile is kept."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; and find_spec below must not find this finder again
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module) -> None:
                with stderr_without(TENSORFLOW_IMPORT_NOISE):
                    execute(module)

            spec.loader.exec_module = exec_module  # this spec's own loader object; its class stays as it is
        return spec


def quiet_tensorflow_import() -> None:
    """Before anything imports TensorFlow: its import-time notices are left out (see _QuietTensorFlowImport)."""
    if "tensorflow" not in sys.modules and not any(isinstance(finder, _QuietTensorFlowImport)
                                                   for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


@contextlib.contextmanager
def stderr_without(noise: tuple[str, ...]) -> Iterator[None]:
    """Runs the block with the process's stderr (file descriptor 2, which C++ libraries write to) going to a
    file, then writes that file's lines to stderr except those containing any of `noise`."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not any(text in line for text in noise)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
        return True
    except metadata.PackageNotFoundError:
        return False


def backend() -> str:
    import keras

    return keras.backend.backend()


@functools.lru_cache(maxsize=1)
def accelerators() -> tuple[str, ...]:
    """The GPUs the backend will use, by name ("" for none)."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        found = []
        for device in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(device)
            found.append(f"{device.name.replace('/physical_device:', '')} {details.get('device_name', '')}".strip())
        return tuple(found)
    if name == "torch":
        import torch

        if torch.cuda.is_available():
            return tuple(f"cuda:{index} {torch.cuda.get_device_name(index)}" for index in range(torch.cuda.device_count()))
        return ()
    if name == "jax":
        import jax

        return tuple(f"{device.platform}:{device.id} {device.device_kind}" for device in jax.devices()
                     if device.platform != "cpu")
    return ()


def default_precision() -> str:
    """mixed_precision = auto: float16 compute on a GPU, float32 on the CPU."""
    return GPU_PRECISION if accelerators() else CPU_PRECISION


def resolve_precision(precision: str) -> str:
    return default_precision() if precision == AUTO_PRECISION else precision


def describe_briefly() -> str:
    """One line: backend, devices, the precision that mixed_precision = auto gives."""
    devices = ", ".join(accelerators()) or f"the CPU ({os.cpu_count()} logical cores), no GPU"
    return f"Keras backend {backend()} on {devices}; mixed precision (auto) {_on_off(default_precision())}"


def describe(full: bool = False) -> str:
    """What `octrack --version` prints (and, with `full`, `octrack doctor`: versions, threads, CPU features)."""
    import keras

    devices = ", ".join(accelerators()) or "CPU only (no GPU visible to the backend)"
    lines = [f"octrack {__version__}",
             f"Keras {keras.__version__}, backend {backend()} {_version_of(backend())}".rstrip(),
             f"devices: {devices}",
             f"mixed precision: {_on_off(default_precision())} (mixed_precision = auto; set it in [train_*] "
             f"to float32, mixed_float16 or mixed_bfloat16)"]
    if full:
        lines += [f"CPU: {os.cpu_count()} logical cores, {_cpu_features()}",
                  f"threads: {_thread_settings()}"]
        if backend() == "tensorflow":
            lines.append(f"TensorFlow's oneDNN CPU kernels: {_onednn_state()}")
        if not accelerators():
            lines.append("for an NVIDIA GPU: pip install 'octrack[cuda]' (README, Install)")
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def log_device() -> None:
    """Logs `describe_briefly()`, once per process."""
    log.info(describe_briefly())


def _on_off(precision: str) -> str:
    return "off (float32)" if precision == "float32" else f"on ({precision})"


def _version_of(name: str) -> str:
    package = {"tensorflow": ("tensorflow", "tensorflow-cpu")}.get(name, (name,))
    for candidate in package:
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return ""


def _cpu_features() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "features unknown"
    wanted = [flag for flag in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]
    return " ".join(wanted) or "no AVX2"


def _onednn_state() -> str:
    """Whether TensorFlow runs oneDNN's kernels (TF_ENABLE_ONEDNN_OPTS, which octrack/__init__.py turns on)."""
    try:  # TensorFlow's own answer; no public API asks it
        from tensorflow.python.util import _pywrap_util_port

        return "on" if _pywrap_util_port.IsMklEnabled() else "off (TF_ENABLE_ONEDNN_OPTS=0)"
    except (ImportError, AttributeError):
        return "unknown"


def _thread_settings() -> str:
    names = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
    found = [f"{name}={os.environ[name]}" for name in names if name in os.environ]
    return ", ".join(found) or "backend defaults (one per logical core)"
