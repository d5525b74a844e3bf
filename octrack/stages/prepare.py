"""`octrack prepare`: checks the training datasets and brings the HDF5 cache of each network up to date."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from octrack.cache import CacheReport, update_cache
from octrack.config import Config, DetectSection, PrepareSection
from octrack.data_defaults import with_data_defaults
from octrack.dataset import Dataset, open_datasets
from octrack.errors import UserError
from octrack.networks import NETWORKS

SECTION = "prepare"
log = logging.getLogger(__name__)


def split_time_points(dataset: Dataset, fraction: float, seed: int) -> dict[int, str]:
    """`train` or `validation` per annotated time point, by `use_for_N`, else `validation_fraction`.

    With `both`, a seeded random share of the annotated time points (at least one, where there are two or
    more and the fraction is above 0) is held out, so that adding a dataset does not reshuffle another's.
    """
    time_points = dataset.annotated_time_points()
    if dataset.config.use_for != "both":
        return dict.fromkeys(time_points, dataset.config.use_for)
    count = int(round(fraction * len(time_points)))
    if fraction > 0 and len(time_points) >= 2:
        count = min(max(count, 1), len(time_points) - 1)
    rng = np.random.default_rng([seed, dataset.config.number])
    held_out = set(rng.choice(time_points, size=count, replace=False).tolist()) if count else set()
    return {t: "validation" if t in held_out else "train" for t in time_points}


def read_section(config: Config) -> PrepareSection:
    return config.section_of(PrepareSection, SECTION)


def cache_path(prepare_section: PrepareSection, network: str) -> Path:
    return prepare_section.cache_folder / f"{network}.h5"


def section_for_data(config: Config, name: str, datasets: list[Dataset]) -> tuple[Any, list[str]]:
    """A network's typed section, detection's with the sizes the ini leaves empty chosen from the datasets, and
    the lines that say what was chosen and why (`data_defaults.py`)."""
    section = NETWORKS[name].read_section(config)
    if isinstance(section, DetectSection):
        return with_data_defaults(config, section, datasets)
    return section, []


def networks_in_config(config: Config) -> list[str]:
    """The networks whose [train_NAME] section the ini has (detection where it names none)."""
    return [name for name, network in NETWORKS.items() if config.has_section(network.SECTION)] or ["detect"]


def prepare(config: Config, *, rebuild: bool = False, report: Callable[[str], None] = print,
            networks: list[str] | None = None) -> tuple[list[Dataset], list[CacheReport]]:
    """Checks every [prepare] dataset and updates the cache of each network (default: those the ini trains,
    as `octrack train` would: a [train_NAME] section each, else detection alone); prints what it used."""
    config.validate()
    section = read_section(config)
    datasets = open_datasets(config, SECTION, check_all_files=True)
    names = networks if networks is not None else networks_in_config(config)
    splits = []
    for dataset in datasets:
        _require_annotations(dataset)
        splits.append(split_time_points(dataset, section.validation_fraction, section.seed))
        report(dataset.describe())
        report(_split_summary(splits[-1], dataset))
    results = []
    for name in names:
        network = NETWORKS[name]
        network_section, chosen = section_for_data(config, name, datasets)
        for line in chosen:
            report(line)
        cache = network.cache(network_section, datasets)
        entries = [entry for dataset, split in zip(datasets, splits)
                   for entry in cache.entries(dataset, split, cache.reader(dataset))]
        result = update_cache(cache_path(section, name), entries, {"network": name, **cache.attributes},
                              rebuild=rebuild, description=f"prepare {name}")
        report(cache.summary(result.path))
        report(f"cache {result.describe()}")
        results.append(result)
    return datasets, results


def _require_annotations(dataset: Dataset) -> None:
    where = dataset.config.where("tracking_file")
    if dataset.tracking is None:
        raise UserError(f"{where}: missing; training data need annotations (an .aut file, a CTC TRA folder or "
                        f"a CSV of positions)")
    outside = sum(dataset.outside_positions(t) for t in dataset.time_points)
    if outside:
        log.warning(f"{where}: {outside} annotated position(s) lie outside the images "
                    f"(z, y, x = {', '.join(map(str, dataset.images.shape_zyx))} pixels) and are left out")
    if not dataset.annotated_time_points():
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
