#!/usr/bin/env python3
"""octrack with OrganoidTracker's three models on OrganoidTracker's fixture movie, against OrganoidTracker's own
predictions (../shared/data/organoidtracker, run `ot_predictions/threshold_0.05`): prints, per time point, the
positions and the largest difference of the raw positions output, then the division and link probabilities and
penalties, and how long each step took. The figures are recorded in docs/benchmarks.md.

    .venv/bin/python scripts/organoidtracker_parity.py [--data ../shared/data/organoidtracker] [--time-points 0:4]

The positions are found exactly as `octrack predict` finds them (`find_positions`, which the positions step runs
per time point), with the raw output kept for the comparison; the division and link steps run through
`octrack predict` on those positions.
"""

from __future__ import annotations

import argparse
import configparser
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from octrack.cli import main  # noqa: E402
from octrack.config import Config, PredictSection  # noqa: E402
from octrack.dataset import open_datasets  # noqa: E402
from octrack.networks import NETWORKS  # noqa: E402
from octrack.networks.organoidtracker.frames import OTFrameReader  # noqa: E402
from octrack.networks.organoidtracker.positions import find_positions  # noqa: E402
from octrack.tracking import Position, Tracking, load_tracking, save_tracking  # noqa: E402

RUN = Path("ot_predictions") / "threshold_0.05"
THRESHOLD = 0.05


def write_ini(folder: Path, data: Path, positions: Path | None = None) -> Path:
    parser = configparser.ConfigParser(interpolation=None)
    parser["DEFAULTS"] = {"output_folder": str(folder / "out")}
    parser["predict"] = {
        "images_container_1": str(data / "movie" / "images"), "images_pattern_1": "nuclei_t{time:03}.tif",
        **({"tracking_file_1": str(positions)} if positions else {}), "pixel_size_x_um_1": "0.32", "pixel_size_y_um_1": "0.32",
        "pixel_size_z_um_1": "2.0", "time_point_duration_m_1": "12.0",
        "detect_model_folder": str(data / "models" / "positions"),
        "divide_model_folder": str(data / "models" / "division"),
        "link_model_folder": str(data / "models" / "link"), "peak_threshold": str(THRESHOLD)}
    ini = folder / "organoid_tracker.ini"
    with open(ini, "w") as file:
        parser.write(file)
    return ini


def key(position: Position) -> tuple[float, float, float, int]:
    return position.x, position.y, position.z, position.t


def positions(ini: Path, data: Path, time_points: list[int], theirs: Tracking) -> Tracking:
    """Runs the positions model on each time point; prints the comparison with OrganoidTracker's."""
    predict = Config(ini).section_of(PredictSection, "predict")
    model = NETWORKS["detect"].load(predict.model_folder("detect"), predict)
    dataset = open_datasets(Config(ini), "predict")[0]
    reader = OTFrameReader(dataset)
    found = Tracking(theirs.voxel_size)
    started, cpu = time.monotonic(), time.process_time()
    for t in time_points:
        raw = np.zeros(dataset.images.shape_zyx, dtype=np.float32)
        rows = find_positions(model.model, reader.frames(t, model.settings.time_window), THRESHOLD,
                              model.min_distance_px(0.32), raw)
        for z, y, x, _ in rows:
            found.add_position(Position(x, y, z, t))
        ours_t = {(x, y, z) for z, y, x, _ in rows}
        theirs_t = {(p.x, p.y, p.z) for p in theirs.positions_at(t)}
        theirs_raw = tifffile.imread(data / RUN / "Nucleus center predictions" / "1. images" / f"image_{t}.tif")
        print(f"  t = {t}: {len(ours_t)} positions, OrganoidTracker {len(theirs_t)}, the same {len(ours_t & theirs_t)};"
              f" raw output: max |difference| {np.abs(raw - theirs_raw).max():.1e} (its maximum "
              f"{theirs_raw.max():.3f})", flush=True)
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    print(f"positions: {seconds:.1f} s for {len(time_points)} time points ({seconds / len(time_points):.1f} s each, "
          f"{cpu / len(time_points):.1f} CPU s each; OrganoidTracker took 980 s for 5 on 2 shared cores)")
    return found


def step(ini: Path, name: str) -> tuple[Tracking, float]:
    started = time.monotonic()
    code = main(["predict", "--config", str(ini), "--steps", name, "-q"])
    if code != 0:
        raise SystemExit(f"octrack predict --steps {name} failed ({code})")
    seconds = time.monotonic() - started
    return load_tracking(Path(Config(ini).output_folder()) / "predictions" / "1" / "positions.aut"), seconds


def largest_difference(pairs: list[tuple[dict, dict]], name: str) -> float:
    return max(abs(ours[name] - theirs[name]) for ours, theirs in pairs)


def run(data: Path, time_points: list[int]) -> None:
    theirs = load_tracking(data / RUN / "Link predictions" / "1. images.aut")
    with tempfile.TemporaryDirectory() as folder:
        found = positions(write_ini(Path(folder), data), data, time_points, theirs)
        found_file = Path(folder) / "positions.aut"
        save_tracking(found, found_file)
        ini = write_ini(Path(folder), data, found_file)
        if sorted(map(key, found.positions())) != sorted(key(p) for p in theirs.positions() if p.t in time_points):
            print("the positions differ from OrganoidTracker's: the divisions and links are not compared")
            return
        ours, seconds = step(ini, "divisions")
        theirs_at = {key(p): p for p in theirs.positions()}
        pairs = [(ours.position_data(p), theirs.position_data(theirs_at[key(p)])) for p in ours.positions()]
        print(f"divisions: {seconds:.1f} s (with loading); {len(pairs)} positions; max |difference| of "
              f"division_probability {largest_difference(pairs, 'division_probability'):.1e}, of division_penalty "
              f"{largest_difference(pairs, 'division_penalty'):.1e} (OrganoidTracker: 26 s)")
        ours, seconds = step(ini, "links")
        theirs_links = {(key(a), key(b)): theirs.link_data(a, b) for a, b in theirs.links()
                        if a.t in time_points and b.t in time_points}
        ours_links = {(key(a), key(b)): ours.link_data(a, b) for a, b in ours.links()}
        common = set(ours_links) & set(theirs_links)
        pairs = [(ours_links[k], theirs_links[k]) for k in common]
        print(f"links: {seconds:.1f} s (with loading); {len(ours_links)} candidate links, OrganoidTracker "
              f"{len(theirs_links)}, the same {len(common)}; max |difference| of link_probability "
              f"{largest_difference(pairs, 'link_probability'):.1e}, of link_penalty "
              f"{largest_difference(pairs, 'link_penalty'):.1e} (OrganoidTracker: 48 s)")


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "organoidtracker")
    parser.add_argument("--time-points", default="0:4", help="first:last (default 0:4, the whole movie)")
    arguments = parser.parse_args()
    first, last = (int(part) for part in arguments.time_points.split(":"))
    run(arguments.data, list(range(first, last + 1)))


if __name__ == "__main__":
    main_()
