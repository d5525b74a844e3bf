"""Defaults that follow the data: the sizes of detection that the ini leaves empty, from the voxel size and the
spacing of the annotated nuclei.

The spacing is the 10th percentile of the distances from each annotated nucleus to its nearest neighbour at the
same time point, over the [prepare] datasets that training uses: where nuclei touch (organoids, tissue) that is about a nucleus'
diameter; where they are sparse it is larger, which errs towards larger patches and a wider target. From it:

| key | default | measured (breast-cancer 2D: spacing 21 px) |
| --- | --- | --- |
| target_sigma_um | spacing / 7 | hand-tuned 3 px |
| min_distance_um | 0.3 × spacing | hand-tuned 6 px |
| match_distance_um | 0.4 × spacing (the validation scores that choose the peak threshold) | the data's 8 px |
| patch_shape | x, y: 6 × spacing in pixels, a multiple of 8 in 32–256, within the images and at most 64 × 64 × 16 voxels in all; z: the images' depth up to 16 | hand-tuned 128 × 128 × 1 |

A key the ini sets (in its section or in [DEFAULTS]) is used as it is. Candidate links need no data default: the
rule of `candidates.py` already scales with the data (a factor of the nearest distance).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from octrack.config import Config, DetectSection
from octrack.dataset import Dataset
from octrack.model_folder import is_organoid_tracker_folder
from octrack.tracking.model import coordinates_um

SIZE_KEYS = ("patch_shape", "target_sigma_um", "min_distance_um", "match_distance_um")
SPACING_PERCENTILE = 10
MIN_DISTANCES = 20  # nearest-neighbour distances needed to trust the spacing
SIGMA_PER_SPACING = 1 / 7
MIN_DISTANCE_PER_SPACING = 0.3
MATCH_DISTANCE_PER_SPACING = 0.4
PATCH_SPACINGS = 6  # a patch spans this many spacings in x and y
PATCH_XY_RANGE = (32, 256)
PATCH_MAX_VOXELS = 64 * 64 * 16  # the fixed default's volume: what a training step of the default network costs
PATCH_MAX_DEPTH = 16
# Defaults in µm that the spacing does not set: what to name where the data may be in pixels
MICROMETRE_DEFAULTS = ("ctc_radius_um = 7 (predict's CTC masks), the tracker's border zone of 5 µm, the link "
                       "network's displacement unit of 10 µm")


@dataclass(frozen=True)
class Spacing:
    """Nearest-neighbour distances (µm) between annotated nuclei of the same time point."""

    distances_um: np.ndarray

    @property
    def typical_um(self) -> float:
        return float(np.percentile(self.distances_um, SPACING_PERCENTILE))

    def describe(self) -> str:
        return (f"{len(self.distances_um)} nearest-neighbour distances between annotated nuclei: 10th percentile "
                f"{self.typical_um:.3g} µm, median {np.median(self.distances_um):.3g} µm")


def measure_spacing(datasets: list[Dataset]) -> Spacing:
    """Over the annotated time points of the datasets that training uses (`use_for_N` train or both)."""
    distances = []
    for dataset in datasets:
        if dataset.config.use_for == "validation":
            continue
        for time_point in dataset.annotated_time_points():
            points = coordinates_um(dataset.annotated_positions(time_point), dataset.voxel_size)
            if len(points) >= 2:
                distances.append(cKDTree(points).query(points, k=2)[0][:, 1])
    return Spacing(np.concatenate(distances) if distances else np.zeros(0))


def explicit_keys(config: Config, section: str) -> set[str]:
    """The keys that the ini sets for a section (in it or in [DEFAULTS]), with a value."""
    return {key for key in SIZE_KEYS if (found := config.raw(section, key)) is not None and found[0].strip()}


def with_data_defaults(config: Config, section: DetectSection, datasets: list[Dataset]
                       ) -> tuple[DetectSection, list[str]]:
    """The section with the sizes that the ini leaves empty chosen from the data, and the lines that say what
    was chosen and why (none where the ini sets them all, or where OrganoidTracker's model or section keeps its
    defaults)."""
    pretrained = section.pretrained_model_path
    if config.is_organoid_tracker_section("train_detect") or (pretrained and is_organoid_tracker_folder(pretrained)):
        return section, []
    left_empty = set(SIZE_KEYS) - explicit_keys(config, "train_detect")
    if not left_empty:
        return section, []
    spacing = measure_spacing(datasets)
    if len(spacing.distances_um) < MIN_DISTANCES:
        why = (f"the ini's default (only {len(spacing.distances_um)} nearest-neighbour distances between annotated "
               f"nuclei; {MIN_DISTANCES} are needed to choose it from the data)")
        # recorded too, so that fitting a default patch to the images is no warning (the user did not ask for it)
        return dataclasses.replace(section, chosen_from_data={key: why for key in left_empty}), \
            [f"[{section.name}] sizes: {why.replace('default', 'defaults', 1).replace('choose it', 'choose them')}"]
    chosen = {key: value for key, value in _chosen(spacing.typical_um, datasets).items() if key in left_empty}
    values = {key: value for key, (value, _) in chosen.items()}
    reasons = {key: why for key, (_, why) in chosen.items()}
    lines = [f"[{section.name}] sizes chosen from the data for keys the ini leaves empty ({spacing.describe()}; "
             f"'spacing' below):"]
    lines += [f"  {key} = {_shown(key, value)}: {reasons[key]}" for key, value in values.items()]
    if _maybe_pixels(datasets):
        lines.append(f"  the voxel size is 1 × 1 × 1 µm or unknown, perhaps pixels: the sizes above follow the "
                     f"annotations in the same units, but these defaults assume µm: {MICROMETRE_DEFAULTS}")
    return dataclasses.replace(section, **values, chosen_from_data={**reasons, "spacing": spacing.describe()}), lines


def _chosen(spacing_um: float, datasets: list[Dataset]) -> dict[str, tuple[object, str]]:
    return {
        "target_sigma_um": (_round(spacing_um * SIGMA_PER_SPACING), "a seventh of the spacing"),
        "min_distance_um": (_round(spacing_um * MIN_DISTANCE_PER_SPACING), "0.3 × the spacing"),
        "match_distance_um": (_round(spacing_um * MATCH_DISTANCE_PER_SPACING), "0.4 × the spacing"),
        "patch_shape": _patch_shape(spacing_um, datasets)}


def _patch_shape(spacing_um: float, datasets: list[Dataset]) -> tuple[tuple[int, int, int], str]:
    """(z, y, x): 6 spacings in y and x, in multiples of 8 within PATCH_XY_RANGE, no larger than the largest
    image and at most PATCH_MAX_VOXELS; z: the deepest images' depth, at most PATCH_MAX_DEPTH."""
    voxel = datasets[0].voxel_size
    pixel_um = min(voxel.y_um, voxel.x_um) if voxel else 1.0
    depth = min(PATCH_MAX_DEPTH, max(dataset.images.shape_zyx[0] for dataset in datasets))
    largest = max(max(dataset.images.shape_zyx[1:]) for dataset in datasets)
    wanted = PATCH_SPACINGS * spacing_um / pixel_um
    low, high = PATCH_XY_RANGE
    limit = min(high, _multiple_of_8(largest), 8 * int(math.sqrt(PATCH_MAX_VOXELS / depth) // 8))
    side = max(low, min(limit, _multiple_of_8(wanted)))
    why = (f"x, y: 6 × the spacing = {wanted:.0f} px, a multiple of 8 in {low}–{high}, within the images and "
           f"at most {PATCH_MAX_VOXELS} voxels; z: the images' depth, at most {PATCH_MAX_DEPTH}")
    return (depth, side, side), why


def _multiple_of_8(value: float) -> int:
    return 8 * max(1, math.ceil(value / 8))


def _round(value: float) -> float:
    """Two significant digits: a value that reads as chosen, not as measured to the last digit."""
    return float(f"{value:.2g}")


def _shown(key: str, value: object) -> str:
    if key == "patch_shape":
        z, y, x = value  # type: ignore[misc]
        return f"{x}, {y}, {z} (x, y, z)"
    return f"{value:g}"  # type: ignore[str-format]


def _maybe_pixels(datasets: list[Dataset]) -> bool:
    return any(dataset.voxel_size is None or tuple(dataset.voxel_size.zyx_um()) == (1.0, 1.0, 1.0) for dataset in datasets)
