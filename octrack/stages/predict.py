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
job of a cluster), which `octrack merge` (stages/merge.py) joins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from octrack.cache import file_fingerprint, fingerprint
from octrack.config import Config, PredictSection
from octrack.dataset import Dataset, open_datasets
from octrack.devices import log_device
from octrack.errors import UserError
from octrack.files import remove_leftovers
from octrack.lock import writing
from octrack.model_folder import MODEL_FILE
from octrack.networks import NETWORK_OF_STEP, NETWORKS
from octrack.networks.base import Predictor
from octrack.progress import Progress
from octrack.stages.common import TimeRange, format_time_range
from octrack.tracking import Tracking, load_tracking
from octrack.writers import (REVIEW_FILE, CtcOutput, positions_only, predictions_folder, shard_folder,
                             write_open_list, write_predictions, write_review, write_tracks)

SECTION = "predict"
POSITIONS, TRACKS = "positions", "tracks"
STEPS = (*NETWORK_OF_STEP, TRACKS)


def progress_file(step: str) -> str:
    return f".{step}_progress.jsonl"


def read_section(config: Config) -> PredictSection:
    return config.section_of(PredictSection, SECTION)


def default_steps(predict: PredictSection, report: Callable[[str], None] = print) -> list[str]:
    """Everything there is a model for: positions (or the positions files), the other network steps where their
    model folders exist, and tracks."""
    steps = [POSITIONS]
    for step, network in NETWORK_OF_STEP.items():
        if step == POSITIONS:
            continue
        folder = predict.model_folder(network.NAME)
        if (folder / MODEL_FILE).exists():
            steps.append(step)
        else:
            report(f"no {step} step: {folder / MODEL_FILE} does not exist (train it with `octrack "
                   f"train-{network.NAME}`, or set {network.NAME}_model_folder in [predict]); the tracker uses "
                   f"{network.FALLBACK} instead")
    return steps + [TRACKS]


@dataclass
class Models:
    """The models of the steps asked for, loaded on first use (a dataset whose positions come from a file
    needs no detection model)."""

    predict: PredictSection
    loaded: dict[str, Predictor] = field(default_factory=dict)

    def of_step(self, step: str) -> Predictor:
        if step not in self.loaded:
            log_device()
            network = NETWORK_OF_STEP[step]
            self.loaded[step] = network.load(self.predict.model_folder(network.NAME), self.predict)
        return self.loaded[step]


def run_predict(config: Config, steps: list[str] | None = None, report: Callable[[str], None] = print,
                time_range: TimeRange | None = None) -> list[Path]:
    """Runs the steps (by default all there are models for) on every [predict] dataset and writes, per
    dataset, positions.csv and positions.aut (positions with their metadata; with the links step also the
    candidate links with theirs), links.csv, and with the tracks step tracks.aut, tracks.csv, the filtered
    tracks, review.csv and ctc/; and an
    .autlist that opens the tracks (else the positions) with the images in OrganoidTracker. The .aut files keep
    what the dataset's tracking file holds besides positions (its name, image filters, ... see tracking/aut.py).

    With `time_range` only a shard: the dataset's time points in that range, written to a shard folder
    inside its predictions folder (see `octrack.writers.shard_folder`), without ctc/ (a CTC result needs every
    time point from 0; `octrack merge` writes it)."""
    predict = read_section(config)
    steps = default_steps(predict, report) if steps is None else steps
    unknown = [step for step in steps if step not in STEPS]
    if unknown or not steps:
        raise UserError(f"--steps {','.join(steps)}: `{unknown[0] if unknown else ''}` is not a step; "
                        f"steps: {', '.join(STEPS)}")
    datasets = open_datasets(config, SECTION)
    models = Models(predict)
    for step in steps:
        if step not in (POSITIONS, TRACKS):
            models.of_step(step)  # a missing or wrong model stops the run before any work
    written = []
    for dataset in datasets:
        folder = dataset_folder(predict, dataset)
        if time_range is not None:
            shard = in_time_range(dataset, time_range)
            if shard is None:
                report(f"{dataset.name}: no time points in --time-points {format_time_range(time_range)} (it has "
                       f"{dataset.time_points[0]}–{dataset.time_points[-1]}); nothing to do")
                continue
            dataset, folder = shard, shard_folder(folder, shard.time_points)
        with writing(folder, "predict", "predictions"):
            remove_leftovers(folder)
            report(dataset.describe())
            tracking = predict_dataset(dataset, steps, folder, models, report)
            write_predictions(tracking, folder, with_links=NETWORKS["link"].STEP in steps)
            for step in NETWORK_OF_STEP:
                (folder / progress_file(step)).unlink(missing_ok=True)
            report(_summary(tracking, steps, folder))
            if TRACKS in steps:
                _track(predict, dataset, tracking, folder, report, with_ctc=time_range is None,
                       calibration_folder=tracker_calibration_folder(predict, steps))
            write_open_list(folder, dataset, "tracks.aut" if TRACKS in steps else "positions.aut")
        written.append(folder)
    return written


def dataset_folder(predict: PredictSection, dataset: Dataset) -> Path:
    return predictions_folder(predict.output_folder, dataset.config.predictions_folder, dataset.config.number)


def _summary(tracking: Tracking, steps: list[str], folder: Path) -> str:
    divisions = sum(1 for p in tracking.positions()
                    if tracking.position_data(p).get("division_probability", 0) >= 0.5)
    tentative = sum(1 for p in tracking.positions() if tracking.is_tentative(p))
    return (f"  {len(tracking)} positions in {len(tracking.time_points())} time points"
            + (f" ({tentative} of them tentative: weak peaks that a track may take)" if tentative else "")
            + (f", {divisions} with division probability >= 0.5" if NETWORKS["divide"].STEP in steps else "")
            + (f", {tracking.link_count()} candidate links" if NETWORKS["link"].STEP in steps else "")
            + f" → {folder}")


def in_time_range(dataset: Dataset, time_range: TimeRange) -> Dataset | None:
    """The dataset with only its time points in the range (None if it has none there). Time windows still
    reach the frames outside, so a shard's time points are predicted exactly as in a run over all of them."""
    first, last = time_range
    time_points = [t for t in dataset.time_points if (first is None or t >= first) and (last is None or t <= last)]
    return dataclasses.replace(dataset, time_points=time_points) if time_points else None


def tracker_calibration_folder(predict: PredictSection, steps: list[str]) -> Path:
    """Where `octrack calibrate` stores the tracker's temperature and predict reads it: beside the link model
    where the links step gives the costs, else in the output folder (the network-free costs)."""
    return predict.model_folder(NETWORKS["link"].NAME) if NETWORKS["link"].STEP in steps else predict.output_folder


def _track(predict: PredictSection, dataset: Dataset, tracking: Tracking, folder: Path,
           report: Callable[[str], None], *, with_ctc: bool, calibration_folder: Path) -> None:
    """Links the positions into tracks, at the calibrated temperature, and writes them and the review list (see
    `octrack.writers.write_tracks`)."""
    from octrack.calibration import TRACKER_CALIBRATION_FILE, load_tracker_calibration
    from octrack.candidates import DEFAULT_FACTOR
    from octrack.linking import DEFAULT_TEMPERATURE, link_tracks

    calibration = load_tracker_calibration(calibration_folder)
    if calibration is None:
        report(f"  no {calibration_folder / TRACKER_CALIBRATION_FILE}: marginal probabilities at the default "
               f"temperature {DEFAULT_TEMPERATURE:g} (fit it with `octrack calibrate`)")
    result = link_tracks(tracking, image_shape_zyx=dataset.images.shape_zyx,
                         candidate_factor=predict.link_candidate_factor or DEFAULT_FACTOR,
                         temperature=calibration.temperature if calibration else DEFAULT_TEMPERATURE,
                         review_below=predict.min_marginal_probability)
    if calibration is not None and calibration.costs_from != result.costs_from:
        report(f"  warning: {calibration_folder / TRACKER_CALIBRATION_FILE} was fitted with {calibration.costs_from}, "
               f"these tracks have {result.costs_from}; calibrate again on these")
    written = write_tracks(result.tracking, folder, ctc_output(predict, dataset) if with_ctc else None,
                           predict.min_marginal_probability)
    write_review(result.review, result.tracking.voxel_size, folder / REVIEW_FILE)
    report(f"  tracks: {result.describe()} → {written}, {REVIEW_FILE}")


def ctc_output(predict: PredictSection, dataset: Dataset) -> CtcOutput:
    """The CTC result of a dataset: masks of its images' size for every frame of the movie."""
    return CtcOutput(dataset.images.shape_zyx, dataset.images.time_points[-1] + 1, predict.ctc_radius_um,
                     predict.ctc_radius_px)


def predict_dataset(dataset: Dataset, steps: list[str], folder: Path, models: Models,
                    report: Callable[[str], None] = print) -> Tracking:
    """The positions of a dataset (detected, or from its positions_file_N / tracking_file_N where that holds any,
    or from an earlier run's positions.aut in `folder`), with what each later network step adds (division probabilities
    per position, candidate links with their probabilities). Each step resumes from its progress file in
    `folder`."""
    tracking = _positions(dataset, steps, models, folder, report)
    for step in steps:
        if step not in (POSITIONS, TRACKS):
            run_step(step, models.of_step(step), dataset, tracking, folder)
    return tracking


def _positions(dataset: Dataset, steps: list[str], models: Models, folder: Path,
               report: Callable[[str], None]) -> Tracking:
    if dataset.tracking is not None and len(dataset.tracking):
        if POSITIONS in steps:
            report(f"  positions from {dataset.config.where('tracking_file')} (instead of detection)")
        return positions_only(dataset.tracking, dataset.time_points, dataset.voxel_size)
    if POSITIONS in steps:
        detector = models.of_step(POSITIONS)
        tracking = Tracking() if dataset.tracking is None else dataset.tracking.empty_copy()  # keeps its file data
        tracking.voxel_size = dataset.voxel_size or detector.settings.voxel_size  # (run_step warns of the latter)
        run_step(POSITIONS, detector, dataset, tracking, folder)
        return tracking
    earlier = folder / "positions.aut"
    if not earlier.exists():
        raise UserError(f"{earlier}: not found; run `octrack predict --steps positions` first, or give the "
                        f"positions in positions_file_{dataset.config.number} of [predict]")
    return positions_only(load_tracking(earlier), dataset.time_points, dataset.voxel_size)


def run_step(step: str, predictor: Predictor, dataset: Dataset, tracking: Tracking, folder: Path) -> None:
    """One network step over the dataset: each time point's rows are predicted (and saved in the progress file,
    unless an earlier run of the same step on the same inputs saved them), then added to the tracking."""
    frames = predictor.frames(dataset)
    inputs = fingerprint([(round(p.x, 3), round(p.y, 3), round(p.z, 3), p.t) for p in tracking.positions()])
    progress = Progress(folder / progress_file(step), {
        "model": fingerprint(predictor.fingerprint(), frames.voxel_size, inputs),
        "images": dataset.images.describe(), "channels": dataset.how_read(),
        "files": fingerprint(file_fingerprint(dataset.images.source_files(dataset.time_points)))})  # replaced files
    time_points = predictor.time_points(tracking, dataset)
    todo = [t for t in time_points if t not in progress.done]
    for time_point in tqdm(todo, desc=f"{step}, dataset {dataset.config.number}", unit="time point"):
        progress.add(time_point, predictor.predict(frames, tracking, time_point))
    for time_point in time_points:
        predictor.apply(tracking, time_point, progress.done[time_point])
