"""`octrack prepare`: checks the training datasets and brings their HDF5 cache up to date."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from octrack.cache import CacheReport, update_cache
from octrack.config import Config
from octrack.dataset import Dataset, open_datasets
from octrack.errors import UserError
from octrack.frames import FrameReader
from octrack.networks import detect

SECTION = "prepare"
log = logging.getLogger(__name__)


def split_time_points(dataset: Dataset, fraction: float, seed: int) -> dict[int, str]:
    """`train` or `validation` per annotated time point, by `use_for_N`, else `validation_fraction`.

    With `both`, a seeded random share of the annotated time points (at least one, where there are two or
    more and the fraction is above 0) is held out, so that adding a dataset does not reshuffle another's.
    """
    time_points = detect.annotated_time_points(dataset)
    if dataset.config.use_for != "both":
        return dict.fromkeys(time_points, dataset.config.use_for)
    count = int(round(fraction * len(time_points)))
    if fraction > 0 and len(time_points) >= 2:
        count = min(max(count, 1), len(time_points) - 1)
    rng = np.random.default_rng([seed, dataset.config.number])
    held_out = set(rng.choice(time_points, size=count, replace=False).tolist()) if count else set()
    return {t: "validation" if t in held_out else "train" for t in time_points}


def cache_path(config: Config, network: str) -> Path:
    return config.cache_folder(SECTION) / f"{network}.h5"


def prepare(config: Config, *, rebuild: bool = False, report: Callable[[str], None] = print
            ) -> tuple[list[Dataset], CacheReport]:
    """Checks every [prepare] dataset and updates the detection cache; prints what it used."""
    config.validate()
    datasets = open_datasets(config, SECTION, check_all_files=True)
    settings = detect.CropSettings(config.get(detect.SECTION, "patch_shape"),
                                   config.get(detect.SECTION, "time_window_before"),
                                   config.get(detect.SECTION, "time_window_after"))
    fraction, seed = config.get(SECTION, "validation_fraction"), config.get(SECTION, "seed")
    entries = []
    for dataset in datasets:
        _require_annotations(dataset)
        split = split_time_points(dataset, fraction, seed)
        dataset_entries = detect.cache_entries(dataset, split, settings, FrameReader(dataset))
        entries += dataset_entries
        report(dataset.describe())
        report(_split_summary(split, dataset))
    result = update_cache(cache_path(config, detect.NAME), entries, {"network": detect.NAME},
                          rebuild=rebuild, description="prepare detect")
    report(_crop_summary(result.path))
    report(f"cache {result.describe()}")
    return datasets, result


def _require_annotations(dataset: Dataset) -> None:
    where = dataset.config.where("tracking_file")
    if dataset.tracking is None:
        raise UserError(f"{where}: missing; training data need annotations (an .aut file, a CTC TRA folder or "
                        f"a CSV of positions)")
    outside = sum(dataset.outside_positions(t) for t in dataset.time_points)
    if outside:
        log.warning(f"{where}: {outside} annotated position(s) lie outside the images "
                    f"(x,y,z = {','.join(map(str, reversed(dataset.images.shape_zyx)))} pixels) and are left out")
    if not detect.annotated_time_points(dataset):
        raise UserError(f"{where}: no annotated positions in time points {dataset.time_points[0]}–"
                        f"{dataset.time_points[-1]}; check min_time_point_{dataset.config.number} and "
                        f"max_time_point_{dataset.config.number}")


def _split_summary(split: dict[int, str], dataset: Dataset) -> str:
    positions = {name: sum(len(dataset.annotated_positions(t)) for t, use in split.items() if use == name)
                 for name in ("train", "validation")}
    validation = [t for t, use in split.items() if use == "validation"]
    return (f"  {len(split)} annotated time points: {len(split) - len(validation)} train "
            f"({positions['train']} positions), {len(validation)} validation ({positions['validation']} "
            f"positions{': time points ' + ', '.join(map(str, validation)) if validation else ''})")


def _crop_summary(path: Path) -> str:
    """Crop sizes per dataset, read back from the cache that was just written."""
    import h5py

    lines = []
    with h5py.File(path, "r") as cache:
        for dataset_name in cache:
            shapes = [cache[dataset_name][t]["image"].shape for t in cache[dataset_name]]
            voxels = [np.prod(shape[:3]) for shape in shapes]
            z, y, x, window = shapes[int(np.argmax(voxels))]
            lines.append(f"  {dataset_name}: {len(shapes)} crops, largest x,y,z = {x},{y},{z} with {window} "
                         f"frame(s) each, {sum(voxels) / 1e6:.1f} M voxels in all")
    return "\n".join(lines)
