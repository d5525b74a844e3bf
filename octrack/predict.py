"""`octrack predict`: the trained networks on the time lapses of [predict].

Positions: every time point is normalised exactly as prepare normalised the training crops, rescaled to the
voxel size the model was trained at, run through the detection network in overlapping tiles, and decoded
into peaks. Finished time points are appended to a progress file, so an interrupted run resumes where it
stopped; the result files are written (atomically) only at the end.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from octrack.cache import file_fingerprint, fingerprint
from octrack.config import Config
from octrack.dataset import Dataset, open_datasets
from octrack.errors import UserError
from octrack.frames import FrameReader
from octrack.networks import detect
from octrack.tracking import Position, Tracking, VoxelSize, save_tracking

SECTION = "predict"
log = logging.getLogger(__name__)
STEPS = ("positions",)
PROGRESS_FILE = ".positions_progress.jsonl"


@dataclass(frozen=True)
class Detector:
    """A detection model with its settings and the decoding values in force (settings.json or [predict])."""

    model: Any
    settings: dict[str, Any]
    threshold: float
    min_distance_um: float
    model_file: Path

    @property
    def voxel_size(self) -> VoxelSize:
        return VoxelSize(*self.settings["voxel_size_um_xyz"])

    def fingerprint(self) -> str:
        """Identifies the model file and the decoding, so that results of another model are never reused."""
        return fingerprint(file_fingerprint([self.model_file]), self.settings, self.threshold, self.min_distance_um)


def load_detector(config: Config) -> Detector:
    from octrack.model_folder import MODEL_FILE, load_model_folder

    folder = config.get(SECTION, "detect_model_folder")
    folder = config.resolve(folder) if folder else config.output_folder(SECTION) / "model_detect"
    model, settings = load_model_folder(folder, detect.NAME)
    threshold = config.get(SECTION, "peak_threshold") or settings.get("peak_threshold") or 0.5
    min_distance = (config.get(SECTION, "min_distance_um") if config.raw(SECTION, "min_distance_um")
                    else settings["min_distance_um"])
    return Detector(model, settings, float(threshold), float(min_distance), folder / MODEL_FILE)


def predictions_folder(config: Config, dataset: Dataset) -> Path:
    return dataset.config.predictions_folder or config.output_folder(SECTION) / "predictions" / str(
        dataset.config.number)


def run_predict(config: Config, steps: list[str], report: Callable[[str], None] = print) -> list[Path]:
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        raise UserError(f"--steps {','.join(steps)}: `{unknown[0]}` is not available in this version; "
                        f"steps: {', '.join(STEPS)}")
    datasets = open_datasets(config, SECTION)
    detector = load_detector(config)
    written = []
    for dataset in datasets:
        folder = predictions_folder(config, dataset)
        report(dataset.describe())
        tracking = predict_positions(dataset, detector, folder)
        save_tracking(tracking, folder / "positions.csv")
        save_tracking(tracking, folder / "positions.aut")
        (folder / PROGRESS_FILE).unlink(missing_ok=True)
        report(f"  {len(tracking)} positions in {len(tracking.time_points())} time points → "
               f"{folder / 'positions.csv'}, {folder / 'positions.aut'}")
        written.append(folder)
    return written


def predict_positions(dataset: Dataset, detector: Detector, folder: Path) -> Tracking:
    voxel_size = dataset.voxel_size
    if voxel_size is None:
        voxel_size = detector.voxel_size
        log.warning(f"{dataset.config.where('pixel_size_x_um')}: the voxel size of {dataset.name} is not known; "
                    f"assuming the model's, {voxel_size.x_um:g} × {voxel_size.y_um:g} × {voxel_size.z_um:g} µm")
    progress = _Progress(folder / PROGRESS_FILE, fingerprint(detector.fingerprint(), voxel_size), dataset)
    reader = FrameReader(dataset)
    before, after = detector.settings["time_window"]
    todo = [t for t in dataset.time_points if t not in progress.done]
    for time_point in tqdm(todo, desc=f"positions, dataset {dataset.config.number}", unit="time point"):
        frames = [frame.data for frame in reader.frames(time_point, before, after)]
        progress.add(time_point, detect_in_frames(detector, frames, voxel_size))
    tracking = Tracking(voxel_size)
    for time_point in dataset.time_points:
        for z, y, x, value in progress.done[time_point]:
            tracking.add_position(Position(x, y, z, time_point), detection_peak=round(float(value), 4))
    return tracking


def detect_in_frames(detector: Detector, frames: list[np.ndarray], voxel_size: VoxelSize) -> np.ndarray:
    """Peaks (z, y, x, value) in the pixels of `frames`, found at the model's voxel size."""
    from scipy import ndimage

    model_voxel = np.array(detector.voxel_size.zyx_um())
    zoom = np.array(voxel_size.zyx_um()) / model_voxel
    zoom[np.asarray(frames[0].shape) == 1] = 1.0
    rescale = not np.allclose(zoom, 1.0, rtol=0.02)
    original_shape = np.array(frames[0].shape)
    if rescale:
        frames = [ndimage.zoom(frame, zoom, order=1) for frame in frames]
    centres = detect.predict_centres(detector.model, frames, tuple(detector.settings["tile_multiple_zyx"]))
    peaks = detect.find_peaks(centres, detector.threshold, tuple(detector.min_distance_um / model_voxel))
    if rescale:  # ndimage.zoom maps the first and last voxels onto each other
        zoomed_shape = np.array(frames[0].shape)
        peaks[:, :3] *= np.where(zoomed_shape > 1, (original_shape - 1) / np.maximum(zoomed_shape - 1, 1), 1.0)
    return peaks


class _Progress:
    """Finished time points, one JSON line each; a changed model or decoding starts the file over."""

    def __init__(self, path: Path, model_fingerprint: str, dataset: Dataset):
        self.path = path
        self.header = {"model": model_fingerprint, "images": dataset.images.describe(),
                       "channels": list(dataset.config.image_channels)}
        self.done: dict[int, list[list[float]]] = {}
        lines = path.read_text().splitlines() if path.exists() else []
        if lines and _json_or_none(lines[0]) == self.header:
            for line in lines[1:]:
                entry = _json_or_none(line)
                if entry is not None:
                    self.done[entry["t"]] = entry["peaks"]
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.header) + "\n")

    def add(self, time_point: int, peaks: np.ndarray) -> None:
        rows = np.round(peaks.astype(np.float64), 3).tolist()
        with open(self.path, "a") as file:
            file.write(json.dumps({"t": time_point, "peaks": rows}) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.done[time_point] = rows


def _json_or_none(line: str) -> Any:
    """A line of the progress file, or None for a line cut off by an interruption."""
    try:
        return json.loads(line)
    except ValueError:
        return None
