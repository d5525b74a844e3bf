"""`octrack doctor` and `octrack --version`: the version, the Keras backend, the devices it will use, and whether
mixed precision is on (octrack/devices.py)."""

from __future__ import annotations

from octrack import devices

choose_backend = devices.choose_backend
quiet_tensorflow_import = devices.quiet_tensorflow_import


def report(full: bool) -> str:
    """`--version` (short) or `doctor` (with versions, threads and CPU features)."""
    return devices.describe(full)
