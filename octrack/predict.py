"""`octrack predict`: the trained networks on the time lapses of [predict].

Positions: every time point is normalised exactly as prepare normalised the training crops, rescaled to the
voxel size the model was trained at, run through the detection network in overlapping tiles, and decoded
into peaks. Divisions: the division network on the crops around every position (detected, or from the
dataset's positions file), calibrated. Links: the candidate links between consecutive time points, by the
rule the link network was trained on, each scored by it, calibrated. Tracks: the most likely lineages
through the positions (octrack.linking), from the probabilities where the steps before gave them, else from
displacement alone. Each network step appends its finished time points to a progress file, so an
interrupted run resumes where it stopped; the result files are written (atomically) only at the end.

Time points stream through: memory holds the frames of one time window (and the network's output for one
time point), never the movie. A long movie can also be split into shards (`--time-points A:B`, e.g. one per
job of a cluster), which `octrack merge` (octrack/merge.py) joins.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from octrack.cache import file_fingerprint, fingerprint
from octrack.config import Config
from octrack.dataset import Dataset, open_datasets
from octrack.errors import UserError
from octrack.frames import FrameReader
from octrack.calibration import Platt, penalty
from octrack.networks import detect, divide, link
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking

SECTION = "predict"
log = logging.getLogger(__name__)
STEPS = ("positions", "divisions", "links", "tracks")
NETWORK_OF_STEP = {"positions": detect.NAME, "divisions": divide.NAME, "links": link.NAME}
PROGRESS_FILES = {step: f".{step}_progress.jsonl" for step in NETWORK_OF_STEP}
CTC_RADIUS_UM = 3.0  # the sphere painted per position in the CTC masks


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


def model_folder(config: Config, network: str) -> Path:
    """`<network>_model_folder` of [predict], by default <output_folder>/model_<network>."""
    folder = config.get(SECTION, f"{network}_model_folder")
    return config.resolve(folder) if folder else config.output_folder(SECTION) / f"model_{network}"


def default_steps(config: Config, report: Callable[[str], None] = print) -> list[str]:
    """Everything there is a model for: positions (or the positions files), divisions and links where their
    model folders exist, and tracks."""
    from octrack.model_folder import MODEL_FILE

    steps = ["positions"]
    for step in ("divisions", "links"):
        folder = model_folder(config, NETWORK_OF_STEP[step])
        if (folder / MODEL_FILE).exists():
            steps.append(step)
        else:
            report(f"no {step} step: {folder / MODEL_FILE} does not exist (train it with `octrack "
                   f"train-{NETWORK_OF_STEP[step]}`, or set {NETWORK_OF_STEP[step]}_model_folder in [predict]); "
                   f"the tracker uses {'geometry' if step == 'divisions' else 'displacement'} instead")
    return steps + ["tracks"]


def load_detector(config: Config) -> Detector:
    from octrack.model_folder import MODEL_FILE, load_model_folder

    folder = model_folder(config, detect.NAME)
    model, settings = load_model_folder(folder, detect.NAME)
    threshold = config.get(SECTION, "peak_threshold") or settings.get("peak_threshold") or 0.5
    min_distance = (config.get(SECTION, "min_distance_um") if config.raw(SECTION, "min_distance_um")
                    else settings["min_distance_um"])
    return Detector(model, settings, float(threshold), float(min_distance), folder / MODEL_FILE)


def predictions_folder(config: Config, dataset: Dataset) -> Path:
    return dataset.config.predictions_folder or config.output_folder(SECTION) / "predictions" / str(
        dataset.config.number)


@dataclass(frozen=True)
class Classifier:
    """A division or link model with its settings and its calibration (Platt scaling from settings.json)."""

    model: Any
    settings: dict[str, Any]
    calibration: Platt
    model_file: Path

    @property
    def voxel_size(self) -> VoxelSize:
        return VoxelSize(*self.settings["voxel_size_um_xyz"])

    @property
    def patch_zyx(self) -> tuple[int, int, int]:
        x, y, z = self.settings["patch_shape_xyz"]
        return z, y, x

    def fingerprint(self) -> str:
        return fingerprint(file_fingerprint([self.model_file]), self.settings)


def load_classifier(config: Config, network: str) -> Classifier:
    """The model of `divide_model_folder` or `link_model_folder` (default <output_folder>/model_NETWORK)."""
    from octrack.model_folder import MODEL_FILE, load_model_folder

    folder = model_folder(config, network)
    model, settings = load_model_folder(folder, network)
    return Classifier(model, settings, Platt.from_json(settings.get("calibration")), folder / MODEL_FILE)


@dataclass
class Models:
    """The models of the steps asked for, loaded on first use (a dataset whose positions come from a file
    needs no detection model)."""

    config: Config
    loaded: dict[str, Any] = field(default_factory=dict)

    def get(self, network: str) -> Any:
        if network not in self.loaded:
            self.loaded[network] = (load_detector(self.config) if network == detect.NAME
                                    else load_classifier(self.config, network))
        return self.loaded[network]


TimeRange = tuple[int | None, int | None]  # first and last time point, both included; None leaves an end open


def run_predict(config: Config, steps: list[str] | None = None, report: Callable[[str], None] = print,
                time_range: TimeRange | None = None) -> list[Path]:
    """Runs the steps (by default all there are models for) on every [predict] dataset and writes, per
    dataset, positions.csv and positions.aut (positions with their metadata; with the links step also the
    candidate links with theirs), links.csv, and with the tracks step tracks.aut, tracks.csv and ctc/.

    With `time_range` only a shard: the dataset's time points in that range, written to a shard folder
    inside its predictions folder (see `shard_folder`), without ctc/ (a CTC result needs every time point
    from 0; `octrack merge` writes it)."""
    steps = default_steps(config, report) if steps is None else steps
    unknown = [step for step in steps if step not in STEPS]
    if unknown or not steps:
        raise UserError(f"--steps {','.join(steps)}: `{unknown[0] if unknown else ''}` is not a step; "
                        f"steps: {', '.join(STEPS)}")
    datasets = open_datasets(config, SECTION)
    models = Models(config)
    for network in (NETWORK_OF_STEP[step] for step in steps if step in ("divisions", "links")):
        models.get(network)  # a missing or wrong model stops the run before any work
    written = []
    for dataset in datasets:
        folder = predictions_folder(config, dataset)
        if time_range is not None:
            shard = in_time_range(dataset, time_range)
            if shard is None:
                report(f"{dataset.name}: no time points in --time-points {format_time_range(time_range)} (it has "
                       f"{dataset.time_points[0]}–{dataset.time_points[-1]}); nothing to do")
                continue
            dataset, folder = shard, shard_folder(folder, shard.time_points)
        report(dataset.describe())
        tracking = predict_dataset(config, dataset, steps, folder, models, report)
        write_predictions(tracking, folder, with_links="links" in steps)
        for progress in PROGRESS_FILES.values():
            (folder / progress).unlink(missing_ok=True)
        divisions = sum(1 for p in tracking.positions() if tracking.position_data(p).get("division_probability", 0) >= 0.5)
        report(f"  {len(tracking)} positions in {len(tracking.time_points())} time points"
               + (f", {divisions} with division probability >= 0.5" if "divisions" in steps else "")
               + (f", {tracking.link_count()} candidate links" if "links" in steps else "")
               + f" → {folder}")
        if "tracks" in steps:
            _track(config, dataset, tracking, folder, report, with_ctc=time_range is None)
        written.append(folder)
    return written


def in_time_range(dataset: Dataset, time_range: TimeRange) -> Dataset | None:
    """The dataset with only its time points in the range (None if it has none there). Time windows still
    reach the frames outside, so a shard's time points are predicted exactly as in a run over all of them."""
    first, last = time_range
    time_points = [t for t in dataset.time_points if (first is None or t >= first) and (last is None or t <= last)]
    return dataclasses.replace(dataset, time_points=time_points) if time_points else None


def format_time_range(time_range: TimeRange) -> str:
    first, last = time_range
    return f"{'' if first is None else first}:{'' if last is None else last}"


SHARD_PREFIX = "shard_"


def shard_folder(predictions: Path, time_points: list[int]) -> Path:
    """`shard_A-B` in the dataset's predictions folder: A and B are the first and last time point predicted."""
    return predictions / f"{SHARD_PREFIX}{time_points[0]}-{time_points[-1]}"


def _track(config: Config, dataset: Dataset, tracking: Tracking, folder: Path, report: Callable[[str], None], *,
           with_ctc: bool) -> None:
    """Links the positions into tracks and writes them (see `write_tracks`)."""
    from octrack.linking import link_tracks

    result = link_tracks(tracking, image_shape_zyx=dataset.images.shape_zyx,
                         candidate_factor=config.get(SECTION, "link_candidate_factor"))
    written = write_tracks(result.tracking, folder, dataset.images.shape_zyx if with_ctc else None)
    report(f"  tracks: {result.describe()} → {written}")


def write_tracks(tracking: Tracking, folder: Path, image_shape_zyx: tuple[int, int, int] | None) -> str:
    """Writes tracks.aut, tracks.csv and, given the image shape, ctc/ (Cell Tracking Challenge); returns what."""
    save_tracking(tracking, folder / "tracks.aut")
    save_tracking(tracking, folder / "tracks.csv")
    if image_shape_zyx is None:
        return f"{folder / 'tracks.aut'}, tracks.csv"
    save_tracking(tracking, folder / "ctc", image_shape_zyx=image_shape_zyx, radius_um=CTC_RADIUS_UM)
    return f"{folder / 'tracks.aut'}, tracks.csv, ctc/"


def predict_dataset(config: Config, dataset: Dataset, steps: list[str], folder: Path, models: Models | None = None,
                    report: Callable[[str], None] = print) -> Tracking:
    """The positions of a dataset (detected, or from its positions_file_N / tracking_file_N, or from an
    earlier run's positions.aut in `folder`), with `division_probability` and `division_penalty` per position
    and the candidate links with `link_probability` and `link_penalty`, as the steps ask. Each step resumes
    from its progress file in `folder`."""
    models = models or Models(config)
    tracking = dataset_positions(dataset, steps, models, folder, report)
    if "divisions" in steps:
        predict_divisions(dataset, tracking, models.get("divide"), folder)
    if "links" in steps:
        factor = (config.get(SECTION, "link_candidate_factor") if config.raw(SECTION, "link_candidate_factor")
                  else None)
        predict_links(dataset, tracking, models.get("link"), folder, factor)
    return tracking


def dataset_positions(dataset: Dataset, steps: list[str], models: Models, folder: Path,
                      report: Callable[[str], None]) -> Tracking:
    if dataset.tracking is not None:
        if "positions" in steps:
            report(f"  positions from {dataset.config.where('tracking_file')} (instead of detection)")
        return positions_only(dataset.tracking, dataset.time_points, dataset.voxel_size)
    if "positions" in steps:
        return predict_positions(dataset, models.get(detect.NAME), folder)
    earlier = folder / "positions.aut"
    if not earlier.exists():
        raise UserError(f"{earlier}: not found; run `octrack predict --steps positions` first, or give the "
                        f"positions in positions_file_{dataset.config.number} of [predict]")
    return positions_only(load_tracking(earlier), dataset.time_points, dataset.voxel_size)


def positions_only(tracking: Tracking, time_points: list[int], voxel_size: VoxelSize | None) -> Tracking:
    """The positions of a tracking at `time_points`, with their metadata and image offsets, without links."""
    result = Tracking(voxel_size or tracking.voxel_size, tracking.image_offsets)
    for time_point in time_points:
        for position in tracking.positions_at(time_point):
            result.add_position(position, **tracking.position_data(position))
    return result


def write_predictions(tracking: Tracking, folder: Path, *, with_links: bool) -> None:
    from octrack.tracking.csv_io import save_links_csv

    save_tracking(positions_only(tracking, tracking.time_points(), tracking.voxel_size), folder / "positions.csv")
    save_tracking(tracking, folder / "positions.aut")
    if with_links:
        save_links_csv(tracking, folder / "links.csv", ["link_probability"])


def predict_positions(dataset: Dataset, detector: Detector, folder: Path) -> Tracking:
    voxel_size = _voxel_size(dataset, detector.voxel_size)
    progress = _Progress(folder / PROGRESS_FILES["positions"], fingerprint(detector.fingerprint(), voxel_size),
                         dataset)
    reader, factor = model_frames(dataset, voxel_size, detector.voxel_size)
    before, after = detector.settings["time_window"]
    todo = [t for t in dataset.time_points if t not in progress.done]
    for time_point in tqdm(todo, desc=f"positions, dataset {dataset.config.number}", unit="time point"):
        progress.add(time_point, detect_in_frames(detector, reader.arrays(time_point, before, after), factor))
    tracking = Tracking(voxel_size)
    for time_point in dataset.time_points:
        for z, y, x, value in progress.done[time_point]:
            tracking.add_position(Position(x, y, z, time_point), detection_peak=round(float(value), 4))
    return tracking


def _voxel_size(dataset: Dataset, model_voxel_size: VoxelSize) -> VoxelSize:
    if dataset.voxel_size is not None:
        return dataset.voxel_size
    log.warning(f"{dataset.config.where('pixel_size_x_um')}: the voxel size of {dataset.name} is not known; "
                f"assuming the model's, {model_voxel_size.x_um:g} × {model_voxel_size.y_um:g} × "
                f"{model_voxel_size.z_um:g} µm")
    return model_voxel_size


def detect_in_frames(detector: Detector, frames: list[np.ndarray], factor: np.ndarray) -> np.ndarray:
    """Peaks (z, y, x, value) in frames at the model's voxel size, in the pixels of the images (`factor` per axis
    maps those to the frames' pixels; see `model_frames`)."""
    model_voxel = np.array(detector.voxel_size.zyx_um())
    centres = detect.predict_centres(detector.model, frames, tuple(detector.settings["tile_multiple_zyx"]),
                                     tuple(reversed(detector.settings["patch_shape_xyz"])))
    peaks = detect.find_peaks(centres, detector.threshold, tuple(detector.min_distance_um / model_voxel))
    peaks[:, :3] /= factor
    return peaks


def model_frames(dataset: Dataset, voxel_size: VoxelSize, model_voxel_size: VoxelSize
                 ) -> tuple[FrameReader, np.ndarray]:
    """A reader of the dataset's frames at the model's voxel size (rescaled as they are read, left as they are
    where it matches within 2 %), and per axis (z, y, x) the factor that maps pixel coordinates of the images
    to those of its frames."""
    shape = np.array(dataset.images.shape_zyx)
    zoom = np.array(voxel_size.zyx_um()) / np.array(model_voxel_size.zyx_um())
    zoom[shape == 1] = 1.0
    if np.allclose(zoom, 1.0, rtol=0.02):
        return FrameReader(dataset), np.ones(3)
    zoomed = np.round(shape * zoom)  # the shape ndimage.zoom gives; it maps the first and last voxels onto each other
    return FrameReader(dataset, tuple(zoom)), np.where(zoomed > 1, (zoomed - 1) / np.maximum(shape - 1, 1), 1.0)


def _image_zyx(tracking: Tracking, positions: list[Position], depth: int) -> np.ndarray:
    """(n, 3) the image pixels of positions (their time point's offset taken off; z = 0 in 2D images)."""
    images = [tracking.image_position(position) for position in positions]
    return np.array([(0.0 if depth == 1 else p.z, p.y, p.x) for p in images], dtype=np.float64).reshape(-1, 3)


def _positions_fingerprint(tracking: Tracking) -> str:
    return fingerprint([(round(p.x, 3), round(p.y, 3), round(p.z, 3), p.t) for p in tracking.positions()])


def predict_divisions(dataset: Dataset, tracking: Tracking, classifier: Classifier, folder: Path) -> None:
    """Sets `division_probability` (calibrated) and `division_penalty` on every position of the tracking."""
    voxel_size = _voxel_size(dataset, classifier.voxel_size)
    progress = _Progress(folder / PROGRESS_FILES["divisions"], fingerprint(
        classifier.fingerprint(), voxel_size, _positions_fingerprint(tracking)), dataset)
    reader, factor = model_frames(dataset, voxel_size, classifier.voxel_size)
    before, after = classifier.settings["time_window"]
    depth = dataset.images.shape_zyx[0]
    todo = [t for t in tracking.time_points() if t not in progress.done]
    for time_point in tqdm(todo, desc=f"divisions, dataset {dataset.config.number}", unit="time point"):
        centres = _image_zyx(tracking, tracking.positions_at(time_point), depth) * factor
        raw = divide.division_probabilities(classifier.model, reader.arrays(time_point, before, after), centres,
                                            classifier.patch_zyx)
        progress.add(time_point, classifier.calibration(raw))
    for time_point in tracking.time_points():
        for position, probability in zip(tracking.positions_at(time_point), progress.done[time_point]):
            tracking.position_data(position).update(_probability_data("division", probability))


def predict_links(dataset: Dataset, tracking: Tracking, classifier: Classifier, folder: Path,
                  factor: float | None = None) -> None:
    """Adds the candidate links between consecutive time points (the rule the link model was trained on;
    `factor` overrides its link_candidate_factor) with `link_probability` (calibrated) and `link_penalty`."""
    voxel_size = _voxel_size(dataset, classifier.voxel_size)
    factor = factor or classifier.settings["link_candidate_factor"]
    progress = _Progress(folder / PROGRESS_FILES["links"], fingerprint(
        classifier.fingerprint(), voxel_size, _positions_fingerprint(tracking), factor), dataset)
    reader, scale = model_frames(dataset, voxel_size, classifier.voxel_size)
    before, after = classifier.settings["time_window"]
    depth = dataset.images.shape_zyx[0]
    time_points = [t for t in tracking.time_points() if tracking.positions_at(t + 1)]
    todo = [t for t in time_points if t not in progress.done]
    for time_point in tqdm(todo, desc=f"links, dataset {dataset.config.number}", unit="time point"):
        sources, targets = tracking.positions_at(time_point), tracking.positions_at(time_point + 1)
        source_zyx, target_zyx = _image_zyx(tracking, sources, depth), _image_zyx(tracking, targets, depth)
        candidates = link.find_candidates(
            [(p, Position(x, y, z, time_point)) for p, (z, y, x) in zip(sources, source_zyx)],
            [(p, Position(x, y, z, time_point + 1)) for p, (z, y, x) in zip(targets, target_zyx)],
            voxel_size, factor)
        raw = link.link_probabilities(classifier.model, reader.arrays(time_point, before, after), candidates,
                                      np.concatenate([source_zyx, target_zyx]) * scale, voxel_size,
                                      classifier.patch_zyx)
        progress.add(time_point, np.column_stack([candidates.pairs, classifier.calibration(raw)]))
    for time_point in time_points:
        sources, targets = tracking.positions_at(time_point), tracking.positions_at(time_point + 1)
        for source, target, probability in progress.done[time_point]:
            tracking.add_link(sources[int(source)], targets[int(target)], **_probability_data("link", probability))


def _probability_data(name: str, probability: float) -> dict[str, float]:
    """OrganoidTracker's metadata: the probability and its penalty, −log10 of the odds."""
    return {f"{name}_probability": round(float(probability), 6),
            f"{name}_penalty": round(float(penalty(np.array([probability]))[0]), 6)}


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
