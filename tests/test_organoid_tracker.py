"""Coming from OrganoidTracker: its training folders, .autlist, lossless .aut and GEFF files."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from octrack.config import ClassifierSection, Config, DetectSection, LinkSection, PredictSection
from octrack.dataset import open_datasets
from octrack.errors import UserError
from octrack.time_window import TimeWindow
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking, save_tracking

from tests.helpers import octrack, real_data, set_keys

OT = "organoidtracker"
MODEL_NAMES = {"positions": "positions", "divisions": "divisions", "links": "links"}
# What makes training tiny, set in a copy of the folder (the folder as OrganoidTracker wrote it is checked first,
# unchanged): section, keys
TINY = {"positions": ("train_position_network", dict(steps_per_epoch=1, batch_size=2, patch_shape="32, 32, 8",
                                                     unet_levels=1, unet_filters=2)),
        "divisions": ("train_division_network", dict(steps_per_epoch=1, batch_size=4, patch_shape="16, 16, 4",
                                                     encoder_levels=1, encoder_filters=2)),
        "links": ("train_link_network", dict(steps_per_epoch=1, batch_size=4, patch_shape="16, 16, 4",
                                             encoder_levels=1, encoder_filters=2))}


def _training_folder(tmp_path: Path, kind: str) -> Path:
    """A copy of OrganoidTracker's training folder, beside a link to the movie's images (its .autlist names
    ../../movie/images)."""
    source = real_data(f"{OT}/training_folders/{kind}")
    folder = Path(shutil.copytree(source, tmp_path / "training_folders" / kind))
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (tmp_path / "movie").mkdir()
    (tmp_path / "movie" / "images").symlink_to(real_data(f"{OT}/movie/images"))
    return folder


def write_ini(tmp_path: Path, text: str) -> Path:
    ini = tmp_path / "organoid_tracker.ini"
    ini.write_text(text)
    return ini


# OrganoidTracker's training folders
@pytest.mark.parametrize("kind", ["positions", "divisions", "links"])
def test_organoid_trackers_training_folders_train_as_they_are(capsys, tmp_path, kind):
    folder = _training_folder(tmp_path, kind)
    ini = folder / "organoid_tracker.ini"
    config = Config(ini)
    assert config.warnings == []
    config.validate()
    datasets = open_datasets(config, "prepare")
    assert len(datasets) == 1 and datasets[0].config.list_file == folder / "Dataset.autlist"
    assert datasets[0].time_points == [0, 1, 2, 3, 4] and len(datasets[0].tracking) == 189
    assert datasets[0].voxel_size == VoxelSize(0.32, 0.32, 2.0, 12.0)
    section, keys = TINY[kind]
    set_keys(ini, section, **keys)
    out = octrack(capsys, "train", "--config", str(ini), "--epochs", "1")
    model = folder / "output" / f"model_{MODEL_NAMES[kind]}"  # where OrganoidTracker writes it
    assert (model / "model.keras").is_file() and (model / "settings.json").is_file()
    assert str(model) in out
    predict = config.section_of(PredictSection, "predict")
    network = {"positions": "detect", "divisions": "divide", "links": "link"}[kind]
    assert predict.model_folder(network) == model  # predict finds what this ini trained


def test_organoid_tracker_sections_use_its_defaults_sign_and_names(tmp_path):
    config = Config(write_ini(tmp_path, "[train_position_network]\n[train_division_network]\n"
                                        "time_window_before = -1\n[train_link_network]\ntime_window_before = 0\n"))
    detect = config.section_of(DetectSection, "train_detect")
    assert (detect.patience, detect.learning_rate, detect.batch_size) == (1, 0.0005, 64)
    assert detect.patch_shape == (32, 64, 64) and detect.time_window == TimeWindow(1, 1)  # OT's default: -1
    assert detect.output_folder == tmp_path / "training_output_folder" and detect.model_name == "positions"
    assert detect.name == "train_position_network"
    divide = config.section_of(ClassifierSection, "train_divide")
    assert divide.time_window == TimeWindow(1, 1) and divide.learning_rate == 0.0003
    link = config.section_of(LinkSection, "train_link")
    assert link.time_window == TimeWindow(0, 1) and link.patch_shape == (16, 32, 32) and link.model_name == "links"
    assert config.has_section("train_detect") and config.warnings == []


def test_octrack_sections_keep_their_own_defaults_and_read_a_negative_window_as_an_offset(tmp_path):
    config = Config(write_ini(tmp_path, "[train_detect]\ntime_window_before = -2\n[train_divide]\n"))
    detect = config.section_of(DetectSection, "train_detect")
    assert detect.time_window == TimeWindow(2, 1) and detect.model_name == "detect" and detect.patience == 10
    assert config.section_of(ClassifierSection, "train_divide").time_window == TimeWindow(1, 1)


def test_a_positive_time_window_before_in_organoid_trackers_section_is_refused(tmp_path):
    config = Config(write_ini(tmp_path, "[train_division_network]\ntime_window_before = 1\n"))
    with pytest.raises(UserError, match=r"\[train_division_network\] time_window_before = 1: .*frame offset.*"
                                        r"write -1 for 1 frame\(s\) before t"):
        config.section_of(ClassifierSection, "train_divide")


def test_both_forms_of_one_network_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"\[train_detect\] and \[train_position_network\] both configure"):
        Config(write_ini(tmp_path, "[train_detect]\n[train_position_network]\n"))


def test_unknown_and_unsupported_organoid_tracker_keys(tmp_path, caplog):
    config = Config(write_ini(tmp_path, "[train_division_network]\nidentify full division window = True\n"
                                        "epoks = 3\n[train_detect]\ndataset_file = a.autlist\n"))
    assert any("[train_division_network] epoks: unknown key" in warning and "epochs" in warning
               for warning in config.warnings)
    assert any("[train_detect] dataset_file: read from" in warning for warning in config.warnings)
    with caplog.at_level(logging.WARNING):
        config.validate()
    assert "identify full division window = True: not supported, ignored" in caplog.text


def _autlist(tmp_path: Path, entries: list) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    path = tmp_path / "lists" / "data.autlist"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(entries))
    return path


def test_autlist_entries_become_datasets_with_paths_relative_to_the_list(tmp_path):
    _autlist(tmp_path, [{"images_container": "../images", "images_pattern": "a{time}.tif", "min_time_point": 2,
                         "max_time_point": 7},
                        {"images_original": {"images_container": "../images", "images_pattern": "c{channel}.tif"},
                         "images_channel_summing": [[1, 3]]}])
    config = Config(write_ini(tmp_path, "[DEFAULTS]\ndataset_file = lists/data.autlist\n"))
    first, second = config.datasets("prepare")
    assert first.images_container == tmp_path / "images" and first.images_pattern == "a{time}.tif"
    assert (first.min_time_point, first.max_time_point, first.tracking_file) == (2, 7, None)
    assert second.image_channels == (1, 3) and second.images_pattern == "c{channel}.tif"
    assert second.where("tracking_file") == f"{tmp_path / 'lists' / 'data.autlist'} entry 2 experiment_file"
    assert [dataset.number for dataset in config.datasets("predict")] == [1, 2]  # [DEFAULTS] serves predict too


def test_numbered_datasets_win_over_a_dataset_file(tmp_path, caplog):
    _autlist(tmp_path, [{"images_container": "../images", "images_pattern": "a{time}.tif"}])
    config = Config(write_ini(tmp_path, "[prepare]\ndataset_file = lists/data.autlist\nimages_container_1 = images\n"
                                        "images_pattern_1 = b{time}.tif\n"))
    with caplog.at_level(logging.WARNING):
        assert [dataset.images_pattern for dataset in config.datasets("prepare")] == ["b{time}.tif"]
    assert "dataset_file: ignored, because [prepare] lists numbered datasets" in caplog.text


@pytest.mark.parametrize("entries, fragment", [
    ([{"images_time_appending": [{}]}], "images_time_appending (image series joined by OrganoidTracker) is not"),
    ([{"images_original": {"images_container": "x"}, "images_channel_summing": [[0]]}], "channel groups numbered"),
    ([{"min_time_point": 3}], "names neither an experiment_file nor images_container"),
    ({"experiment_file": "a.aut"}, "not an OrganoidTracker .autlist"),
])
def test_bad_autlists_name_the_list_and_entry(tmp_path, entries, fragment):
    _autlist(tmp_path, entries)
    config = Config(write_ini(tmp_path, "[prepare]\ndataset_file = lists/data.autlist\n"))
    with pytest.raises(UserError) as error:
        config.datasets("prepare")
    assert fragment in str(error.value) and "data.autlist" in str(error.value)


def test_training_sections_must_name_the_same_dataset_file(tmp_path):
    config = Config(write_ini(tmp_path, "[train_position_network]\ndataset_file = a.autlist\n"
                                        "[train_link_network]\ndataset_file = b.autlist\n"))
    with pytest.raises(UserError, match="octrack trains every network on the same datasets"):
        config.datasets("prepare")


def test_init_writes_organoid_trackers_training_folder(capsys, movie_3d, tmp_path):
    ini = tmp_path / "ot" / "organoid_tracker.ini"
    ini.parent.mkdir()
    octrack(capsys, "init", "--images", str(movie_3d / "images"), "--tracking", str(movie_3d / "ground_truth.aut"),
            "--output", str(ini), "--format", "organoidtracker")
    listed = json.loads((ini.parent / "Dataset.autlist").read_text())
    assert listed == [{"experiment_file": "../movie/ground_truth.aut", "images_container": "../movie/images",
                       "images_pattern": "nuclei_t{time:03}.tif"}]
    config = Config(ini)
    assert config.warnings == []
    assert all(config.is_organoid_tracker_section(section) for section in ("train_detect", "train_divide",
                                                                             "train_link"))
    assert config.section_of(ClassifierSection, "train_divide").time_window == TimeWindow(1, 1)
    assert config.section_of(DetectSection, "train_detect").patch_shape == (32, 96, 96)
    (dataset,) = open_datasets(config, "prepare")
    assert len(dataset.tracking) == len(load_tracking(movie_3d / "ground_truth.aut"))
    assert [d.images_container for d in config.datasets("predict")] == [movie_3d / "images"]


# Lossless .aut
def _canonical(data: dict) -> dict:
    """An .aut's JSON tree with the order of tracks, and of the tracks before each track, left out: they mean
    nothing (OrganoidTracker writes tracks in the order it keeps them)."""
    data = dict(data)
    tracks = []
    for track in data.get("tracks", ()):
        track = dict(track)
        if "coords_xyz_px_before" in track:
            meta = track.get("link_meta_before", {})
            order = sorted(range(len(track["coords_xyz_px_before"])), key=lambda i: track["coords_xyz_px_before"][i])
            track["coords_xyz_px_before"] = [track["coords_xyz_px_before"][i] for i in order]
            track["link_meta_before"] = {key: [values[i] for i in order] + values[len(order):]
                                         for key, values in meta.items()}
        tracks.append(track)
    if tracks:
        data["tracks"] = sorted(tracks, key=lambda track: json.dumps(track, sort_keys=True))
    return data


def _ot_written_files() -> list[Path]:
    return sorted(real_data(OT).glob("**/*.aut"))


def test_convert_keeps_every_key_of_organoid_tracker_files(capsys, tmp_path):
    files = _ot_written_files()
    assert len(files) >= 10
    for index, source in enumerate(files):
        original = json.loads(source.read_text())
        via_aut, via_geff, back = (tmp_path / f"{index}.aut", tmp_path / f"{index}.geff", tmp_path / f"{index}b.aut")
        octrack(capsys, "convert", str(source), str(via_aut))
        octrack(capsys, "convert", str(via_aut), str(via_geff))
        octrack(capsys, "convert", str(via_geff), str(back))
        for written in (via_aut, back):
            data = json.loads(written.read_text())
            assert list(data) == list(original), source  # every key, in OrganoidTracker's order
            assert _canonical(data) == _canonical(original), source


def test_ground_truth_keeps_its_metadata_through_track_and_predict_outputs(capsys, tmp_path):
    source = real_data(f"{OT}/training_folders/positions/Ground truth files/1. images.aut")
    original = json.loads(source.read_text())
    tracks = tmp_path / "tracks.aut"
    octrack(capsys, "track", str(source), "--output", str(tracks))
    data = json.loads(tracks.read_text())
    for key in ("name", "name_is_automatic", "warning_limits", "image_resolution", "image_channel_descriptions",
                "color"):
        assert data[key] == original[key], key


def _tracking_with_everything() -> Tracking:
    tracking = Tracking(VoxelSize(0.32, 0.4, 2.0, 12.0), {1: (2.0, 0.0, 1.0)})
    a, b, c = Position(10, 12, 3, 0), Position(11, 13, 3, 1), Position(12.5, 13, 4, 1)
    d = Position(30, 5, 1, 0)
    tracking.add_position(a, name="mother", division_probability=0.9)
    tracking.add_position(b, division_probability=0.1)
    tracking.add_position(c)
    tracking.add_position(d, uncertain=True)
    tracking.add_link(a, b, link_probability=0.8)
    tracking.add_link(a, c, link_probability=0.7)
    tracking.lineage_data[a] = {"lineage_name": "A"}
    tracking.file_data = {"name": "movie 1", "other_data": {"experimenter": "me", "dose_um": 3.5},
                          "image_filters": {"channel_0": [{"type": "threshold", "min": 0.08}]}}
    return tracking


def test_aut_keeps_lineage_and_file_data(tmp_path):
    save_tracking(_tracking_with_everything(), tmp_path / "a.aut")
    data = json.loads((tmp_path / "a.aut").read_text())
    assert list(data)[:2] == ["version", "positions"] and data["name"] == "movie 1"
    first = next(track for track in data["tracks"] if track["time_point_start"] == 0)
    assert first["lineage_meta"] == {"lineage_name": "A"}
    again = load_tracking(tmp_path / "a.aut")
    assert again.lineage_data == {Position(10, 12, 3, 0): {"lineage_name": "A"}}
    assert again.file_data == _tracking_with_everything().file_data


@pytest.mark.parametrize("time_points, key", [(2, "octrack_spatial_resolution"), (1, "image_resolution")])
def test_unknown_time_step_is_written_as_organoid_tracker_expects(tmp_path, time_points, key):
    tracking = Tracking(VoxelSize(0.5, 0.5, 2.0, None))
    for t in range(time_points):
        tracking.add_position(Position(1, 2, 3, t))
    save_tracking(tracking, tmp_path / "a.aut")
    data = json.loads((tmp_path / "a.aut").read_text())
    assert list(data) == ["version", "positions", key, "image_offsets"]
    if key == "image_resolution":  # a single time point needs no time step: OrganoidTracker writes t_m 0
        assert data[key] == {"x_um": 0.5, "y_um": 0.5, "z_um": 2.0, "t_m": 0.0}
    assert load_tracking(tmp_path / "a.aut").voxel_size == VoxelSize(0.5, 0.5, 2.0, None)


def test_aut_without_positions_is_read(tmp_path):
    source = real_data(f"{OT}/ot_predictions/threshold_0.05/Input files/1. images.aut")
    tracking = load_tracking(source)
    assert len(tracking) == 0 and tracking.voxel_size == VoxelSize(0.32, 0.32, 2.0, 12.0)


# GEFF
def _same_content(a: Tracking, b: Tracking) -> None:
    assert sorted(a.positions()) == sorted(b.positions())
    assert sorted(a.links()) == sorted(b.links())
    assert {p: a.position_data(p) for p in a.positions()} == {p: b.position_data(p) for p in b.positions()}
    assert {link: a.link_data(*link) for link in a.links()} == {link: b.link_data(*link) for link in b.links()}
    assert a.divisions() == b.divisions()


def test_geff_follows_organoid_trackers_convention_without_swapping_scales(tmp_path):
    import zarr

    tracking = _tracking_with_everything()
    save_tracking(tracking, tmp_path / "a.geff")
    attributes = dict(zarr.open_group(str(tmp_path / "a.geff"), mode="r").attrs)["geff"]
    axes = {axis["name"]: axis for axis in attributes["axes"]}
    assert list(axes) == ["t", "z", "y", "x"]
    assert axes["t"]["unit"] == "frame" and axes["t"]["scale"] == 12.0 and axes["t"]["scaled_unit"] == "minute"
    assert [axes[name]["scale"] for name in "zyx"] == [2.0, 0.4, 0.32]  # each axis its own scale
    assert {axes[name]["unit"] for name in "zyx"} == {"pixel"}
    assert attributes["extra"]["experimenter"] == "me"  # OrganoidTracker's global data, key by key
    again = load_tracking(tmp_path / "a.geff")
    _same_content(tracking, again)
    assert again.voxel_size == tracking.voxel_size and again.image_offsets == tracking.image_offsets
    assert again.file_data == tracking.file_data and again.lineage_data == tracking.lineage_data


def test_geff_nodes_are_in_image_pixels(tmp_path):
    import networkx  # noqa: F401 (the geff package reads into networkx)
    import geff

    save_tracking(_tracking_with_everything(), tmp_path / "a.geff")
    graph, _ = geff.read(tmp_path / "a.geff")
    shifted = next(data for _, data in graph.nodes(data=True) if data["t"] == 1 and data.get("division_probability"))
    assert (float(shifted["x"]), float(shifted["y"]), float(shifted["z"])) == (9.0, 13.0, 2.0)  # minus the offset


def test_aut_geff_csv_chain_keeps_positions_links_divisions_metadata(capsys, tmp_path):
    original = load_tracking(real_data(f"{OT}/training_folders/links/Ground truth files/1. images.aut"))
    assert original.divisions()
    for index, position in enumerate(original.positions()):
        original.set_position_data(position, "division_probability", round(index / 300, 4))
    for index, link in enumerate(original.links()):
        original.link_data(*link)["link_probability"] = round(1 - index / 300, 4)
    source = tmp_path / "source.aut"
    save_tracking(original, source)
    chain = [tmp_path / "a.geff", tmp_path / "b.csv", tmp_path / "c.geff", tmp_path / "d.aut"]
    previous = source
    for target in chain:
        options = ["--voxel-size", "2.0", "0.32", "0.32"] if previous.suffix == ".csv" else []
        octrack(capsys, "convert", str(previous), str(target), *options)
        previous = target
    for path in chain:
        tracking = load_tracking(path)
        _same_content(original, tracking)
    assert load_tracking(chain[0]).voxel_size == original.voxel_size
    assert load_tracking(chain[-1]).voxel_size == VoxelSize(0.32, 0.32, 2.0)  # CSV has no voxel size: given


def test_geff_in_micrometres_needs_the_voxel_size(tmp_path):
    import geff
    import networkx as nx
    from geff_spec import Axis

    graph = nx.DiGraph()
    graph.add_node(0, t=0, z=4.0, y=1.0, x=2.0)
    graph.add_node(1, t=1, z=4.0, y=1.5, x=2.0)
    graph.add_edge(0, 1)
    axes = [Axis(name="t", type="time", unit="frame")] + [Axis(name=name, type="space", unit="micrometer")
                                                          for name in "zyx"]
    metadata = geff.GeffMetadata(directed=True, axes=axes, node_props_metadata={}, edge_props_metadata={})
    geff.write(graph, tmp_path / "um.geff", metadata=metadata)
    with pytest.raises(UserError, match="positions are in micrometers and the voxel size is unknown"):
        load_tracking(tmp_path / "um.geff")
    tracking = load_tracking(tmp_path / "um.geff", VoxelSize(0.5, 0.5, 2.0))
    assert sorted(tracking.positions()) == [Position(4.0, 2.0, 2.0, 0), Position(4.0, 3.0, 2.0, 1)]
    assert tracking.link_count() == 1


def test_predictions_folder_gets_a_list_that_opens_tracks_with_images(movie_3d, tmp_path):
    from octrack.writers import OPEN_LIST, write_open_list

    config = Config(movie_3d / "organoid_tracker.ini")
    (dataset,) = open_datasets(config, "predict")
    folder = tmp_path / "predictions" / "1"
    folder.mkdir(parents=True)
    written = write_open_list(folder, dataset, "tracks.aut")
    assert written == folder / OPEN_LIST
    (entry,) = json.loads(written.read_text())
    assert entry["experiment_file"] == "tracks.aut" and entry["images_pattern"] == dataset.config.images_pattern
    assert (folder / entry["images_container"]).resolve() == (movie_3d / "images").resolve()
    assert (entry["min_time_point"], entry["max_time_point"]) == (dataset.time_points[0], dataset.time_points[-1])
    assert written.read_text().startswith("[\n    {\n")  # as OrganoidTracker writes it: indent 4, sorted keys


# Image filters
def test_image_filters_apply_as_organoid_tracker_applies_them():
    from octrack.image_filters import ImageFilters

    frame = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5) * 10
    threshold = ImageFilters({"channel_0": [{"type": "threshold", "min": 0.5}]})
    kept = threshold.apply(frame, 0, 0)
    assert (kept[frame < 0.5 * frame.max()] == 0).all() and (kept[frame >= 0.5 * frame.max()] > 0).all()
    assert threshold.apply(frame, 0, 1) is frame  # other channels have no filters
    doubled = ImageFilters({"channel_0": [{"type": "multiply", "factor": 2}]}).apply(frame, 0, 0)
    assert doubled.max() == 390 - 390 % 2 and doubled[0, 0, 1] == 20  # clipped at max / 2, then doubled
    stretched = ImageFilters({"channel_0": [{"type": "interpolated_min_max",
                                             "points": [{"t": 0, "z": 0, "min": 100, "max": 200}]}]})
    result = stretched.apply(frame, 3, 0)
    assert result.min() == 0 and result.max() == 65535 and result.dtype == np.uint16
    blurred = ImageFilters({"channel_0": [{"type": "gaussian", "radius_px": 2}]}).apply(
        np.pad(np.full((1, 1, 1), 1000.0, dtype=np.float32), ((0, 0), (3, 3), (3, 3))), 0, 0)
    assert blurred[0, 3, 3] < 1000 and blurred[0, 3, 4] > 0 and abs(blurred.sum() - 1000) < 1


def test_training_images_pass_through_the_tracking_files_filters(movie_3d, caplog):
    tracking = load_tracking(movie_3d / "ground_truth.aut")
    tracking.file_data["image_filters"] = {"channel_0": [{"type": "threshold", "min": 0.9}]}
    save_tracking(tracking, movie_3d / "ground_truth.aut")
    config = Config(movie_3d / "organoid_tracker.ini")
    with caplog.at_level(logging.INFO):
        (dataset, *_) = open_datasets(config, "prepare")
    assert "applying OrganoidTracker's image filters (channel 1: threshold)" in caplog.text
    frame = dataset.read(dataset.time_points[0])
    raw = dataset.images.read(dataset.time_points[0])
    assert (frame[raw < 0.9 * raw.max()] == 0).all() and (frame == raw)[raw >= 0.9 * raw.max()].all()
    assert dataset.how_read()[2] == tracking.file_data["image_filters"]  # part of the cache's fingerprints
