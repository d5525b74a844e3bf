"""`octrack prepare`: checks the training datasets and brings the HDF5 cache of each network up to date."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octrack.cache import CacheEntry, CacheReport, update_cache
from octrack.config import Config
from octrack.dataset import Dataset, open_datasets
from octrack.errors import UserError
from octrack.frames import FrameReader
from octrack.networks import detect, divide, link
from octrack.networks.classify import CropSettings, crop_settings

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


def prepare(config: Config, *, rebuild: bool = False, report: Callable[[str], None] = print,
            networks: list[str] | None = None) -> tuple[list[Dataset], list[CacheReport]]:
    """Checks every [prepare] dataset and updates the cache of each network (default: those the ini trains,
    as `octrack train` would: a [train_NAME] section each, else detection alone); prints what it used."""
    from octrack.training import networks_in_config

    config.validate()
    datasets = open_datasets(config, SECTION, check_all_files=True)
    names = networks if networks is not None else networks_in_config(config, report)
    fraction, seed = config.get(SECTION, "validation_fraction"), config.get(SECTION, "seed")
    splits = []
    for dataset in datasets:
        _require_annotations(dataset)
        splits.append(split_time_points(dataset, fraction, seed))
        report(dataset.describe())
        report(_split_summary(splits[-1], dataset))
    results = []
    for name in names:
        cache = _CACHES[name](config, datasets)
        entries = [entry for dataset, split in zip(datasets, splits)
                   for entry in cache.entries(dataset, split, FrameReader(dataset))]
        result = update_cache(cache_path(config, name), entries, {"network": name, **cache.attributes},
                              rebuild=rebuild, description=f"prepare {name}")
        report(cache.summary(result.path))
        report(f"cache {result.describe()}")
        results.append(result)
    return datasets, results


@dataclass
class NetworkCache:
    """How one network's cache is made: its entries per dataset, its file attributes, its printed summary."""

    entries: Callable[[Dataset, dict[int, str], FrameReader], list[CacheEntry]]
    attributes: dict[str, Any]
    summary: Callable[[Path], str]


def _detect_cache(config: Config, datasets: list[Dataset]) -> NetworkCache:
    settings = detect.CropSettings(config.get(detect.SECTION, "patch_shape"),
                                   config.get(detect.SECTION, "time_window_before"),
                                   config.get(detect.SECTION, "time_window_after"))
    return NetworkCache(lambda dataset, split, reader: detect.cache_entries(dataset, split, settings, reader),
                        {}, _crop_summary)


def _classifier_attributes(settings: CropSettings) -> dict[str, Any]:
    return {"patch_zyx": settings.patch_zyx, "extent_zyx": settings.extent_zyx,
            "window": settings.time_window_before + 1 + settings.time_window_after}


def _divide_cache(config: Config, datasets: list[Dataset]) -> NetworkCache:
    settings = crop_settings(config, divide.SECTION, max(dataset.images.shape_zyx[0] for dataset in datasets))
    multiplier = config.get(divide.SECTION, "division_multiplier")
    return NetworkCache(lambda dataset, split, reader: divide.cache_entries(dataset, split, settings, reader),
                        _classifier_attributes(settings), lambda path: divide.summary(path, multiplier))


def _link_cache(config: Config, datasets: list[Dataset]) -> NetworkCache:
    settings = crop_settings(config, link.SECTION, max(dataset.images.shape_zyx[0] for dataset in datasets))
    multiplier = config.get(link.SECTION, "division_multiplier")
    factor = config.get(link.SECTION, "link_candidate_factor")
    return NetworkCache(lambda dataset, split, reader: link.cache_entries(dataset, split, settings, reader, factor),
                        {**_classifier_attributes(settings), "link_candidate_factor": factor},
                        lambda path: link.summary(path, multiplier))


_CACHES: dict[str, Callable[[Config, list[Dataset]], NetworkCache]] = {
    detect.NAME: _detect_cache, divide.NAME: _divide_cache, link.NAME: _link_cache}


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
