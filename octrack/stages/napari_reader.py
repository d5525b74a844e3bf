"""napari reader (npe2 manifest `octrack/napari.yaml`): octrack's results as napari layers in µm.

Opens, each with its physical scale (the voxel size; time in time points):
- an octrack ini (`organoid_tracker.ini`): per [predict] dataset its images (read lazily, one time point at a
  time, the configured channels summed) and the tracks, positions and candidate links in its predictions folder;
- a tracking file (.aut, .csv with t, y, x columns), an octrack predictions folder, or a CTC folder (its labels
  too): a tracks layer (track ids = `octrack.lineage` segments, divisions as its graph, coloured by each link's
  `marginal_probability` where the file has it) and a points layer with the positions' metadata as features
  (`division_probability`, ...).

The functions return napari's layer data tuples `(data, keyword arguments, layer type)` and never import napari,
so they are tested without it.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from octrack.errors import UserError
from octrack.lineage import track_tree
from octrack.tracking import Tracking, VoxelSize, load_tracking
from octrack.tracking.ctc import is_ctc_folder

LayerData = tuple[Any, dict[str, Any], str]
RESULT_FILES = ("tracks.aut", "positions.aut")  # what a predictions folder holds, best first


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: a reader function for the paths octrack understands, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    return read if paths and all(_kind(Path(one)) for one in paths) else None


def read(path: str | list[str]) -> list[LayerData]:
    paths = [path] if isinstance(path, str) else list(path)
    return [layer for one in paths for layer in read_path(Path(one))]


def read_path(path: Path) -> list[LayerData]:
    kind = _kind(path)
    if kind == "ini":
        return ini_layers(path)
    if kind == "ctc":
        return ctc_layers(path)
    if kind == "predictions":
        path = next(path / name for name in RESULT_FILES if (path / name).is_file())
    if kind is None:
        raise UserError(f"{path}: octrack opens .aut and .csv tracking files, CTC folders, predictions folders and "
                        f"octrack ini files")
    return tracking_layers(load_tracking(path), path.stem)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".ini" and path.is_file():
        return "ini" if _is_octrack_ini(path) else None
    if suffix == ".aut" and path.is_file():
        return "tracking"
    if suffix == ".csv" and path.is_file():
        header = path.open(encoding="utf-8-sig").readline().strip().split(",")
        return "tracking" if {"t", "y", "x"} <= {name.strip() for name in header} else None
    if path.is_dir():
        if is_ctc_folder(path):
            return "ctc"
        if any((path / name).is_file() for name in RESULT_FILES):
            return "predictions"
    return None


def _is_octrack_ini(path: Path) -> bool:
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return False
    return parser.has_section("predict")


def scale_zyx(voxel_size: VoxelSize | None) -> tuple[float, float, float]:
    return voxel_size.zyx_um() if voxel_size else (1.0, 1.0, 1.0)


def tracking_layers(tracking: Tracking, name: str, *, two_d: bool | None = None) -> list[LayerData]:
    """A tracks layer (where there are links) and a points layer, in µm (pixels where the voxel size is unknown).
    2D trackings (every z = 0) leave z out, so that they lie on 2D+time images."""
    two_d = all(position.z == 0 for position in tracking.positions()) if two_d is None else two_d
    spatial = slice(1, 3) if two_d else slice(0, 3)
    scale = (1.0, *scale_zyx(tracking.voxel_size)[spatial])
    metadata = {"voxel_size_um": None if tracking.voxel_size is None else tracking.voxel_size.zyx_um(),
                "axes": "t" + "zyx"[spatial]}
    layers = []
    if tracking.link_count():
        layers.append(_tracks_layer(tracking, name, scale, spatial, metadata))
    positions = list(tracking.positions())
    points = np.array([(p.t, p.z, p.y, p.x) for p in positions], dtype=float).reshape(-1, 4)
    columns = [0, *range(1, 4)[spatial]]
    features = _features(tracking, positions)
    features["division"] = np.array([tracking.is_division(p) for p in positions], dtype=bool)
    layers.append((points[:, columns], {"name": f"{name} positions", "scale": scale, "features": features,
                                        "size": 6 * min(scale[1:]), "face_color": "transparent",
                                        "border_color": "yellow", "metadata": metadata}, "points"))
    return layers


def _tracks_layer(tracking: Tracking, name: str, scale: tuple[float, ...], spatial: slice,
                  metadata: dict[str, Any]) -> LayerData:
    tree = track_tree(tracking)
    rows, confidence = [], []
    for segment, positions in tree.segments.items():
        for index, position in enumerate(positions):
            rows.append((segment, position.t, position.z, position.y, position.x))
            before = positions[index - 1] if index else next(iter(tracking.past(position)), None)
            confidence.append(tracking.link_data(before, position).get("marginal_probability", np.nan)
                              if before is not None else np.nan)
    data = np.array(rows, dtype=float)[:, [0, 1, *range(2, 5)[spatial]]]
    options: dict[str, Any] = {"name": f"{name} tracks", "scale": scale, "metadata": metadata,
                               "graph": {segment: parents for segment, parents in tree.parents.items() if parents},
                               "tail_length": 5}
    confidence = np.array(confidence, dtype=float)
    if np.isfinite(confidence).any():
        options["features"] = {"marginal_probability": np.nan_to_num(confidence, nan=1.0)}
        options["color_by"] = "marginal_probability"
        options["colormap"] = "inferno"
    return data, options, "tracks"


def _features(tracking: Tracking, positions: list) -> dict[str, np.ndarray]:
    """The positions' metadata as columns: numbers as float (NaN where missing), anything else as text."""
    features = {}
    for key in tracking.position_data_keys():
        values = [tracking.position_data(p).get(key) for p in positions]
        numeric = all(value is None or isinstance(value, (int, float)) for value in values)
        features[key] = (np.array([np.nan if value is None else float(value) for value in values])
                         if numeric else np.array(["" if value is None else str(value) for value in values]))
    return features


def ctc_layers(folder: Path) -> list[LayerData]:
    """The label images of a CTC folder (lazily) and its tracks, in µm."""
    from octrack.tracking.ctc import ctc_geometry, label_image_paths, read_label_image

    tracking = load_tracking(folder)
    shape, frames, voxel_size = ctc_geometry(folder)
    voxel_size = voxel_size or tracking.voxel_size
    paths = label_image_paths(folder)
    two_d = shape[0] == 1
    labels = lazy_stack([(lambda t=t: read_label_image(paths[t])) for t in range(frames)],
                        shape[1:] if two_d else shape, np.uint32, squeeze_z=two_d, missing=set(range(frames)) - set(paths))
    tracking.voxel_size = voxel_size
    layers = tracking_layers(tracking, folder.name, two_d=two_d)
    scale = (1.0, *scale_zyx(voxel_size)[1 if two_d else 0:])
    return [(labels, {"name": f"{folder.name} labels", "scale": scale}, "labels"), *layers]


def ini_layers(ini: Path) -> list[LayerData]:
    """Per [predict] dataset of an octrack ini: its images and what predict wrote for it."""
    from octrack.config import Config, PredictSection
    from octrack.dataset import open_datasets
    from octrack.writers import predictions_folder

    config = Config(ini)
    predict = config.section_of(PredictSection, "predict")
    layers: list[LayerData] = []
    for dataset in open_datasets(config, "predict"):
        name = f"dataset {dataset.config.number}"
        two_d = dataset.images.shape_zyx[0] == 1
        layers.append(image_layer(dataset.read, dataset.images.time_points, dataset.images.shape_zyx,
                                  dataset.voxel_size, name))
        folder = predictions_folder(predict.output_folder, dataset.config.predictions_folder, dataset.config.number)
        result = next((folder / file for file in RESULT_FILES if (folder / file).is_file()), None)
        if result is not None:
            tracking = load_tracking(result, dataset.voxel_size)
            layers += tracking_layers(tracking, f"{name} {result.stem}", two_d=two_d)
    return layers


def image_layer(read_frame: Callable[[int], np.ndarray], time_points: list[int], shape_zyx: tuple[int, int, int],
                voxel_size: VoxelSize | None, name: str) -> LayerData:
    """A lazy (t, z, y, x) image layer (t, y, x for 2D) that reads a time point when napari shows it; contrast
    from the first time point."""
    two_d = shape_zyx[0] == 1
    data = lazy_stack([(lambda t=t: read_frame(t)) for t in range(time_points[-1] + 1)],
                      shape_zyx[1:] if two_d else shape_zyx, np.float32, squeeze_z=two_d,
                      missing=set(range(time_points[-1] + 1)) - set(time_points))
    first = read_frame(time_points[0])
    low, high = np.percentile(first, [1, 99.8])
    scale = (1.0, *scale_zyx(voxel_size)[1 if two_d else 0:])
    return data, {"name": f"{name} images", "scale": scale, "contrast_limits": [float(low), float(max(high, low + 1))],
                  "colormap": "gray", "blending": "additive"}, "image"


def lazy_stack(readers: list[Callable[[], np.ndarray]], shape: tuple[int, ...], dtype: Any, *,
               squeeze_z: bool = False, missing: set[int] = frozenset()) -> Any:
    """A dask array of the frames the readers return, each read only when needed (napari brings dask); time
    points in `missing` (gaps in the movie) are zeros."""
    import dask
    import dask.array as da

    def frame(index: int) -> np.ndarray:
        if index in missing:
            return np.zeros(shape, dtype)
        array = np.asarray(readers[index](), dtype=dtype)
        return array[0] if squeeze_z and array.ndim == len(shape) + 1 else array.reshape(shape)

    return da.stack([da.from_delayed(dask.delayed(frame)(index), shape=shape, dtype=dtype)
                     for index in range(len(readers))])
