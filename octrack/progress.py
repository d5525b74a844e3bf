"""The progress file of a prediction step: its finished time points, one JSON line each, so that an interrupted
run resumes where it stopped. A changed model, decoding or input starts the file over."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


class Progress:
    """The rows of the finished time points (`done`), for a step identified by `header`."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.header = header
        self.done: dict[int, list[list[float]]] = {}
        lines = path.read_text().splitlines() if path.exists() else []
        if lines and _json_or_none(lines[0]) == self.header:
            for line in lines[1:]:
                entry = _json_or_none(line)
                if entry is not None:
                    self.done[entry["t"]] = entry["values"]
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.header) + "\n")

    def add(self, time_point: int, values: np.ndarray) -> None:
        rows = np.round(np.asarray(values, dtype=np.float64), 6).tolist()
        with open(self.path, "a") as file:
            file.write(json.dumps({"t": time_point, "values": rows}) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.done[time_point] = rows


def _json_or_none(line: str) -> Any:
    """A line of the progress file, or None for a line cut off by an interruption."""
    try:
        return json.loads(line)
    except ValueError:
        return None
