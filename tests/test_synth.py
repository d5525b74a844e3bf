"""The synthetic time lapse: deterministic, shaped like organoid data, and with ground truth that matches it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import tifffile

from octrack.config import Config
from octrack.errors import UserError
from octrack.synth import NUCLEUS_DIAMETER_UM, SynthResult, generate
from octrack.tracking import Tracking, load_tracking
from octrack.tracking.model import distance_um

SMALL = {"time_points": 3, "size_xyz": (64, 64, 8), "nuclei": 6}


@pytest.fixture(scope="module")
def default_3d(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    return generate(tmp_path_factory.mktemp("default_3d"), seed=5)


@pytest.fixture(scope="module")
def default_2d(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    return generate(tmp_path_factory.mktemp("default_2d"), two_d=True, seed=5)


def _image(result: SynthResult, time_point: int) -> np.ndarray:
    return tifffile.imread(result.images_folder / f"nuclei_t{time_point:03}.tif")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_same_seed_gives_the_same_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first = _files(generate(tmp_path / "a", seed=11, **SMALL).outdir)
    again = _files(generate(tmp_path / "b", seed=11, **SMALL).outdir)
    other = _files(generate(tmp_path / "c", seed=12, **SMALL).outdir)
    assert first == again
    assert "ground_truth.aut" in first and "images/nuclei_t002.tif" in first
    assert first["images/nuclei_t000.tif"] != other["images/nuclei_t000.tif"]
    assert first["ground_truth.csv"] != other["ground_truth.csv"]


def test_3d_images_are_zyx_uint16_with_imagej_voxel_size(default_3d: SynthResult) -> None:
    assert sorted(path.name for path in default_3d.images_folder.iterdir()) == [
        f"nuclei_t{t:03}.tif" for t in range(10)]
    with tifffile.TiffFile(default_3d.images_folder / "nuclei_t000.tif") as tiff:
        image = tiff.asarray()
        metadata = tiff.imagej_metadata
        axes = tiff.series[0].axes
        x_resolution = tiff.pages[0].tags["XResolution"].value
    assert image.shape == (16, 128, 128) and image.dtype == np.uint16
    assert axes == "ZYX" and metadata["spacing"] == 2.0 and metadata["unit"] == "um"
    assert x_resolution[0] / x_resolution[1] == pytest.approx(1 / 0.32, rel=1e-4)
    assert 0 < image.min() and image.max() < 65535  # realistic levels: nothing clipped


def test_2d_images_are_yx_with_z_zero_in_the_ground_truth(default_2d: SynthResult) -> None:
    with tifffile.TiffFile(default_2d.images_folder / "nuclei_t000.tif") as tiff:
        image = tiff.asarray()
        assert tiff.series[0].axes == "YX" and tiff.imagej_metadata["unit"] == "um"
    assert image.shape == (256, 256) and image.dtype == np.uint16
    tracking = load_tracking(default_2d.ground_truth_aut)
    assert {position.z for position in tracking.positions()} == {0.0}


@pytest.mark.parametrize("movie", ["default_3d", "default_2d"])
def test_ground_truth_lies_inside_the_image_on_bright_nuclei(movie: str, request: pytest.FixtureRequest) -> None:
    result: SynthResult = request.getfixturevalue(movie)
    tracking = load_tracking(result.ground_truth_aut)
    x_size, y_size, z_size = result.size_xyz
    ratios = []
    for time_point in range(result.time_points):
        image = _image(result, time_point).reshape(z_size, y_size, x_size).astype(float)
        median = np.median(image)
        for position in tracking.positions_at(time_point):
            assert 0 <= position.x <= x_size - 1 and 0 <= position.y <= y_size - 1 and 0 <= position.z <= z_size - 1
            x, y, z = (round(coordinate) for coordinate in position[:3])
            box = image[z, max(y - 3, 0):y + 4, max(x - 3, 0):x + 4]
            ratios.append(box.mean() / median)
    assert min(ratios) > 1.1
    assert np.median(ratios) > 1.5


def test_nuclei_cut_by_the_edge_are_annotated_at_their_visible_part() -> None:
    """Where the image edge cuts a nucleus, the annotation goes to the centre of what is visible, as a person
    would click it; a nucleus mostly outside the image is an uncertain annotation, a sliver none."""
    from octrack.synth import DEFAULT_VOXEL_SIZE, _draw_nucleus, _Nucleus, _Scene

    scene = _Scene((64, 64, 8), DEFAULT_VOXEL_SIZE, False, 1)
    radius = NUCLEUS_DIAMETER_UM / 2

    def annotated(x_um: float) -> tuple[np.ndarray, bool] | None:
        nucleus = _Nucleus(identity=0, mother=None, born_at=0, centre=np.array([x_um, 10.0, 7.0]),
                           own_step=np.zeros(3), axes=np.full(3, radius), angle=0.0, growth=1.0,
                           brightness=100.0, texture=np.zeros((24, 24, 24)), divides_after=np.inf)
        return _draw_nucleus(np.zeros(scene.shape_zyx, np.float32), nucleus, 0.0, scene)

    inside, inside_uncertain = annotated(10.0)
    np.testing.assert_allclose(inside, [10.0 / 0.32, 10.0 / 0.32, 3.5])
    on_the_edge, on_the_edge_uncertain = annotated(0.0)  # half visible: its visible half's centre is 3/8 of a radius in
    assert 0.3 * radius < on_the_edge[0] * 0.32 < 0.45 * radius
    np.testing.assert_allclose(on_the_edge[1:], inside[1:], atol=0.05)
    assert not inside_uncertain and not on_the_edge_uncertain
    assert annotated(0.2 * radius)[1] is False  # 65 % of a sphere is visible
    assert annotated(-0.3 * radius)[1] is True  # 28 %
    assert annotated(-0.5 * radius)[1] is True  # 16 %
    assert annotated(-0.8 * radius) is None  # 3 %


def test_uncertain_annotations_are_written_as_position_metadata(default_3d: SynthResult) -> None:
    tracking = load_tracking(default_3d.ground_truth_csv)
    uncertain = [p for p in tracking.positions() if tracking.is_uncertain(p)]
    assert 0 < len(uncertain) < 0.2 * len(tracking)
    width, height, _ = default_3d.size_xyz
    assert all(min(p.x, p.y, width - 1 - p.x, height - 1 - p.y) < 0.4 * NUCLEUS_DIAMETER_UM / 0.32
               for p in uncertain)


@pytest.mark.parametrize("movie, requested", [("default_3d", 30), ("default_2d", 40)])
def test_nuclei_per_time_point_stay_near_the_requested_number(movie: str, requested: int,
                                                              request: pytest.FixtureRequest) -> None:
    result: SynthResult = request.getfixturevalue(movie)
    tracking = load_tracking(result.ground_truth_aut)
    counts = [len(tracking.positions_at(t)) for t in range(result.time_points)]
    assert all(0.7 * requested <= count <= 1.3 * requested for count in counts), counts
    assert result.positions == sum(counts)


def test_divisions_have_two_daughters_near_the_mother(default_3d: SynthResult, default_2d: SynthResult) -> None:
    for result in (default_3d, default_2d):
        tracking = load_tracking(result.ground_truth_aut)
        mothers = tracking.divisions()
        assert len(mothers) == result.divisions >= 1
        assert result.positions / 100 * 0.3 <= len(mothers) <= result.positions / 100 * 4
        for mother in mothers:
            daughters = tracking.future(mother)
            assert len(daughters) == 2 and {daughter.t for daughter in daughters} == {mother.t + 1}
            assert mother.t < result.time_points - 1
            for daughter in daughters:
                assert distance_um(mother, daughter, tracking.voxel_size) < NUCLEUS_DIAMETER_UM
            assert distance_um(*daughters, tracking.voxel_size) > 0.5 * NUCLEUS_DIAMETER_UM


def test_nuclei_keep_their_distance(default_3d: SynthResult, default_2d: SynthResult) -> None:
    for result in (default_3d, default_2d):
        tracking = load_tracking(result.ground_truth_aut)
        for time_point in tracking.time_points():
            certain = [p for p in tracking.positions_at(time_point) if not tracking.is_uncertain(p)]
            pairs = itertools.combinations(certain, 2)
            closest = min(distance_um(a, b, tracking.voxel_size) for a, b in pairs)
            assert closest > 0.5 * NUCLEUS_DIAMETER_UM


def test_tracks_are_linked_over_consecutive_time_points(default_3d: SynthResult) -> None:
    tracking = load_tracking(default_3d.ground_truth_aut)
    assert all(later.t == earlier.t + 1 for earlier, later in tracking.links())
    assert len(tracking.tracks()) == default_3d.tracks
    lengths = [len(track) for track in tracking.tracks()]
    assert max(lengths) == default_3d.time_points  # nuclei that stay in view are followed all the way


def test_ground_truth_files_agree_and_carry_the_voxel_size(default_3d: SynthResult) -> None:
    aut, csv = load_tracking(default_3d.ground_truth_aut), load_tracking(default_3d.ground_truth_csv)
    assert _graph(aut) == _graph(csv)
    voxel = aut.voxel_size
    assert (voxel.x_um, voxel.y_um, voxel.z_um, voxel.t_minutes) == (0.32, 0.32, 2.0, 12.0)


def _graph(tracking: Tracking) -> tuple[set, set]:
    rounded = {position: tuple(round(value, 2) for value in position) for position in tracking.positions()}
    return set(rounded.values()), {(rounded[a], rounded[b]) for a, b in tracking.links()}


def test_ini_has_the_documented_layout_and_its_paths_exist(default_3d: SynthResult) -> None:
    assert default_3d.config_file.read_text() == """\
# Synthetic time lapse made by `octrack synth --seed 5 ...`; octrack prepare/train/predict/evaluate run from this folder.
[DEFAULTS]
output_folder = training_output
cache_folder = training_output/cache

[prepare]
images_container_1 = images
images_pattern_1 = nuclei_t{time:03}.tif
tracking_file_1 = ground_truth.aut
pixel_size_x_um_1 = 0.32
pixel_size_y_um_1 = 0.32
pixel_size_z_um_1 = 2.0
time_point_duration_m_1 = 12.0

[predict]
images_container_1 = images
images_pattern_1 = nuclei_t{time:03}.tif
pixel_size_x_um_1 = 0.32
pixel_size_y_um_1 = 0.32
pixel_size_z_um_1 = 2.0
time_point_duration_m_1 = 12.0
predictions_folder_1 = training_output/predictions/1
"""
    config = Config(default_3d.config_file)
    assert not config.warnings
    (dataset,) = config.datasets("prepare")
    assert dataset.images_container == default_3d.images_folder.resolve()
    assert dataset.tracking_file == default_3d.ground_truth_aut.resolve()


def test_describe_says_what_was_written_and_what_to_run_next(default_3d: SynthResult) -> None:
    text = default_3d.describe()
    assert str(default_3d.outdir) in text and "octrack prepare" in text
    assert f"{default_3d.positions} positions" in text and f"{default_3d.divisions} divisions" in text


def test_rewriting_a_folder_replaces_only_its_own_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    generate(tmp_path, seed=1, **SMALL)
    first = _files(tmp_path)
    generate(tmp_path, seed=2, **SMALL)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert _files(tmp_path).keys() == first.keys()  # no temporary files left behind


def test_no_divisions_at_rate_zero(tmp_path: Path) -> None:
    assert generate(tmp_path, seed=1, division_rate=0, **SMALL).divisions == 0


@pytest.mark.parametrize("arguments, message", [
    ({"time_points": 0}, "time points = 0"),
    ({"nuclei": 0}, "nuclei = 0"),
    ({"size_xyz": (20, 64, 8)}, "too small for a nucleus"),
    ({"size_xyz": (64, 64, 2)}, "too small for a nucleus"),
    ({"two_d": True, "size_xyz": (64, 64, 8)}, "a 2D time lapse has z = 1"),
    ({"nuclei": 500}, "at most"),
    ({"division_rate": 1.0}, "division rate"),
])
def test_bad_arguments_are_user_errors(tmp_path: Path, arguments: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as error:
        generate(tmp_path / "out", **arguments)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()
