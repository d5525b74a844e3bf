"""`octrack merge`: the shards that `octrack predict --time-points A:B` wrote, joined into one result per dataset.

Consecutive shards share their boundary time point (0:50, 50:100, ...). Its positions are in both shards, from
the same frames and models, so they agree: they are matched one to one (`match_time_point`, at most
JOIN_DISTANCE_UM apart), and the links of the earlier shard up to that time point and of the later one from it
are joined there. The positions (positions.aut, positions.csv, links.csv) join into exactly what one run over
all time points writes. The tracks join too, but the tracker saw each shard alone: near a join (and, through
the motion it estimates from the tracks, here and there elsewhere) it may have chosen other links than a run
over all time points. `octrack track` on the merged positions.aut optimises over the whole movie at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from octrack.config import Config, PredictSection
from octrack.dataset import Dataset, open_datasets
from octrack.errors import UserError
from octrack.matching import match_time_point
from octrack.stages.predict import SECTION, ctc_output, dataset_folder, read_section
from octrack.tracking import Tracking, load_tracking
from octrack.writers import SHARD_PREFIX, write_open_list, write_predictions, write_tracks

JOIN_DISTANCE_UM = 1.0  # pixels where the voxel size is unknown
_SHARD_NAME = re.compile(rf"^{SHARD_PREFIX}(\d+)-(\d+)$")


@dataclass(frozen=True)
class Shard:
    folder: Path
    first: int
    last: int

    def rerun(self) -> str:
        return f"`octrack predict --time-points {self.first}:{self.last}`"


def run_merge(config: Config, report: Callable[[str], None] = print) -> list[Path]:
    """Checks the shards of every [predict] dataset (all there, finished, each starting where the one before
    ends, the same steps run), then writes each dataset's joined result into its predictions folder."""
    predict = read_section(config)
    plans = [(dataset, shards_of(predict, dataset)) for dataset in open_datasets(config, SECTION)]
    written = []
    for dataset, shards in plans:
        folder = dataset_folder(predict, dataset)
        report(f"{dataset.name}: {len(shards)} shard(s), time points "
               + ", ".join(f"{shard.first}–{shard.last}" for shard in shards))
        positions, unmatched = join([load_tracking(shard.folder / "positions.aut") for shard in shards], shards)
        if unmatched:
            report(f"  warning: {unmatched} position(s) of the boundary time points differ between shards (more "
                   f"than {JOIN_DISTANCE_UM:g} µm apart); were the shards predicted with different models or "
                   f"settings? Predict them again with the same ones")
        write_predictions(positions, folder, with_links=(shards[0].folder / "links.csv").exists())
        report(f"  {len(positions)} positions in {len(positions.time_points())} time points, "
               f"{positions.link_count()} candidate links → {folder}")
        with_tracks = (shards[0].folder / "tracks.aut").exists()
        if with_tracks:
            tracks, _ = join([load_tracking(shard.folder / "tracks.aut") for shard in shards], shards)
            described = write_tracks(tracks, folder, ctc_output(predict, dataset), predict.min_marginal_probability)
            report(f"  tracks: {len(tracks)} positions, {tracks.link_count()} links, {len(tracks.divisions())} "
                   f"divisions → {described}")
        write_open_list(folder, dataset, "tracks.aut" if with_tracks else "positions.aut")
        written.append(folder)
    return written


def shards_of(predict: PredictSection, dataset: Dataset) -> list[Shard]:
    """The dataset's shards in time order; a UserError where they do not cover its time points as a chain
    (each shard beginning at the last time point of the one before), one is unfinished, or they ran
    different steps."""
    folder = dataset_folder(predict, dataset)
    found = [(path, _SHARD_NAME.match(path.name)) for path in sorted(folder.iterdir())] if folder.is_dir() else []
    shards = sorted((Shard(path, int(match[1]), int(match[2])) for path, match in found if match and path.is_dir()),
                    key=lambda shard: (shard.first, shard.last))
    first, last = dataset.time_points[0], dataset.time_points[-1]
    if not shards:
        raise UserError(f"{folder}: no shards ({SHARD_PREFIX}A-B folders) of {dataset.name}; run `octrack predict "
                        f"--time-points A:B` for ranges that share their ends, e.g. {first}:{(first + last) // 2} "
                        f"and {(first + last) // 2}:{last}")
    _check_chain(shards, first, last, dataset)
    for shard in shards:
        if not (shard.folder / "positions.aut").exists():
            raise UserError(f"{shard.folder}: unfinished (no positions.aut); run {shard.rerun()} again (it "
                            f"resumes)")
    for output in ("links.csv", "tracks.aut"):
        having = [(shard.folder / output).exists() for shard in shards]
        if any(having) and not all(having):
            lacking = shards[having.index(False)]
            raise UserError(f"{lacking.folder}: has no {output}, unlike other shards of {dataset.name}; run "
                            f"{lacking.rerun()} with the same --steps as the others")
    return shards


def _check_chain(shards: list[Shard], first: int, last: int, dataset: Dataset) -> None:
    if shards[0].first > first:
        raise UserError(f"{shards[0].folder.parent}: time points {first}–{shards[0].first} of {dataset.name} are "
                        f"in no shard; run `octrack predict --time-points {first}:{shards[0].first}`")
    for earlier, later in zip(shards, shards[1:]):
        if later.first > earlier.last:
            raise UserError(f"{later.folder.parent}: time points {earlier.last}–{later.first} are in no shard, so "
                            f"{earlier.folder.name} and {later.folder.name} cannot be joined; run `octrack predict "
                            f"--time-points {earlier.last}:{later.first}` (shards share their boundary time point)")
        if later.first < earlier.last:
            raise UserError(f"{later.folder.parent}: shards {earlier.folder.name} and {later.folder.name} overlap "
                            f"by more than one time point; shards must share exactly their boundary time point "
                            f"(0:50, 50:100): remove the one that does not belong")
    if shards[-1].last < last:
        raise UserError(f"{shards[-1].folder.parent}: time points {shards[-1].last}–{last} of {dataset.name} are "
                        f"in no shard; run `octrack predict --time-points {shards[-1].last}:{last}`")


def join(trackings: list[Tracking], shards: list[Shard]) -> tuple[Tracking, int]:
    """The trackings of consecutive shards joined at their shared time points, and how many positions of
    those time points found no partner in the other shard (each kept with its own links)."""
    joined, unmatched = trackings[0], 0
    for tracking, shard in zip(trackings[1:], shards[1:]):
        unmatched += _append(joined, tracking, shard.first)
    return joined, unmatched


def _append(joined: Tracking, later: Tracking, boundary: int) -> int:
    """Adds to `joined` (up to `boundary`) the positions and links of `later` (from `boundary`): a position of
    `boundary` that matches one of `joined` becomes that one (keeping its metadata, gaining what only the
    later shard knows). Returns the positions of `boundary` that found no partner."""
    before, after = joined.positions_at(boundary), later.positions_at(boundary)
    pairs = match_time_point(before, after, JOIN_DISTANCE_UM, joined.voxel_size or later.voxel_size)
    same = {after[j]: before[i] for i, j in pairs}
    for position in later.positions():
        data = later.position_data(position)
        if position in same:
            known = joined.position_data(same[position])
            for key, value in data.items():
                known.setdefault(key, value)
        else:
            joined.add_position(position, **data)
    for a, b in later.links():
        joined.add_link(same.get(a, a), same.get(b, b), **later.link_data(a, b))
    joined.image_offsets = {**later.image_offsets, **joined.image_offsets}
    joined.file_data = {**later.file_data, **joined.file_data}
    return len(before) + len(after) - 2 * len(pairs)
