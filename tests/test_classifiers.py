"""The division and link networks: sample labels, calibration maths, tiny trainings in 3D and 2D, resume,
predict's metadata and links.csv, and bad inputs."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from octrack.calibration import (Platt, average_precision, expected_calibration_error, fit_platt, penalty,
                                 reliability_table, roc_auc, sigmoid)
from octrack.cli import main
from octrack.networks import divide, link
from octrack.synth import generate
from octrack.tracking import Position, Tracking, VoxelSize, load_tracking
from octrack.model_folder import load_settings
from tests.helpers import interrupted_after_epoch, octrack, set_keys

TINY = {"steps_per_epoch": 2, "batch_size": 4, "encoder_levels": 2, "encoder_filters": 4, "patience": 0,
        "epochs": 2}


# Sample labels on hand-made trackings
def chain(tracking: Tracking, points: list[tuple[float, float, int]]) -> list[Position]:
    positions = [tracking.add_position(Position(x, y, 0, t)) for x, y, t in points]
    for earlier, later in zip(positions, positions[1:]):
        tracking.add_link(earlier, later)
    return positions


def test_mother_is_positive_and_hard_negatives_surround_it():
    tracking = Tracking(VoxelSize(1, 1, 1))
    mother_track = chain(tracking, [(10, 10, t) for t in range(5)])  # divides at t = 4
    daughters = [tracking.add_position(Position(x, 10, 0, 5)) for x in (7, 13)]
    for daughter in daughters:
        tracking.add_link(mother_track[-1], daughter)
    bystander = chain(tracking, [(50, 50, t) for t in range(6)])
    kinds = divide.division_kinds(tracking)
    assert kinds[mother_track[-1]] == divide.MOTHER
    assert [kinds.get(p, divide.OTHER) for p in mother_track[:-1]] == [divide.OTHER] + [divide.HARD_NEGATIVE] * 3
    assert all(kinds[daughter] == divide.HARD_NEGATIVE for daughter in daughters)
    assert all(kinds.get(p, divide.OTHER) == divide.OTHER for p in bystander)


def drifting_positions(shift_yx: tuple[float, float], steps: int, seed: int = 0) -> dict[int, np.ndarray]:
    """(n, 3) z, y, x of 30 scattered cells at each time point, the whole picture moved by `shift_yx` per step,
    each cell jittered by a pixel."""
    rng = np.random.default_rng(seed)
    cells = np.c_[np.zeros(30), rng.uniform(0, 300, (30, 2))]
    return {t: cells + [0, *(np.array(shift_yx) * t)] + np.c_[np.zeros(30), rng.normal(0, 1, (30, 2))]
            for t in range(steps)}


def test_window_offsets_follow_the_drift_and_extrapolate_past_the_positions():
    positions = drifting_positions((-16, -3), 3)
    offsets = divide.window_offsets(lambda t: positions.get(t, np.zeros((0, 3))), [0, 1, 2], 1)
    np.testing.assert_allclose(offsets, [[0, 16, 3], [0, 0, 0], [0, -16, -3]], atol=1.5)
    before_the_first = divide.window_offsets(lambda t: positions.get(t, np.zeros((0, 3))), [-1, 0, 1], 0)
    first_step = -offsets[0]
    np.testing.assert_allclose(before_the_first, [-first_step, [0, 0, 0], first_step], atol=1e-9)  # mirrored
    at_the_movie_end = divide.window_offsets(lambda t: positions.get(t, np.zeros((0, 3))), [1, 2, 2], 2)
    np.testing.assert_allclose(at_the_movie_end[1:], 0)  # the repeated frame is the frame itself
    alone = divide.window_offsets(lambda t: np.zeros((0, 3)), [4, 5, 6], 5)
    np.testing.assert_array_equal(alone, 0)  # no positions: crops in place


def test_crops_follow_the_frame_offsets():
    frames = [np.zeros((1, 40, 40), np.float32) for _ in range(2)]
    frames[0][0, 10, 10] = 1  # a cell at (10, 10) that the next frame shows at (20, 15)
    frames[1][0, 20, 15] = 2
    crops = divide.cut_crops(frames, np.array([[0, 10, 10]]), (1, 5, 5), frame_offsets_zyx=[[0, 0, 0], [0, 10, 5]])
    assert crops[0, 0, 2, 2, 0] == 1 and crops[0, 0, 2, 2, 1] == 2
    in_place = divide.cut_crops(frames, np.array([[0, 10, 10]]), (1, 5, 5))
    assert in_place[0, ..., 1].sum() == 0


def test_link_candidates_labels_and_kinds():
    tracking = Tracking(VoxelSize(1, 1, 1))
    mother = tracking.add_position(Position(10, 10, 0, 0))
    walker = tracking.add_position(Position(25, 10, 0, 0))
    loner = tracking.add_position(Position(100, 100, 0, 0))
    daughters = [tracking.add_position(Position(x, 10, 0, 1)) for x in (6, 14)]
    walker_next = tracking.add_position(Position(37, 10, 0, 1))
    loner_next = tracking.add_position(Position(101, 100, 0, 1))
    for daughter in daughters:
        tracking.add_link(mother, daughter)
    tracking.add_link(walker, walker_next)
    tracking.add_link(loner, loner_next)

    def with_image(positions):
        return [(p, p) for p in positions]

    candidates = link.find_candidates(with_image(tracking.positions_at(0)), with_image(tracking.positions_at(1)),
                                      tracking.voxel_size, factor=2)
    pairs = {(candidates.sources[a], candidates.targets[b]) for a, b in candidates.pairs}
    assert all(pair in pairs for pair in tracking.links())  # every annotated link is a candidate
    assert (loner, daughters[0]) not in pairs  # far beyond twice the nearest distance
    labels = link.link_labels(tracking, candidates)
    kinds = link.link_kinds(tracking, candidates, tracking.voxel_size)
    by_pair = {(candidates.sources[a], candidates.targets[b]): (label, kind)
               for (a, b), label, kind in zip(candidates.pairs, labels, kinds)}
    assert by_pair[(mother, daughters[0])] == (1, link.NEXT_TO_DIVISION)
    assert by_pair[(loner, loner_next)] == (1, link.PLAIN)
    assert by_pair[(walker, walker_next)] == (1, link.AMBIGUOUS)  # 12 µm; to the daughter 11 µm
    assert by_pair[(walker, daughters[1])] == (0, link.NEXT_TO_DIVISION)
    ordered = [(candidates.sources[a], candidates.targets[b]) for a, b in candidates.pairs]
    displacement = candidates.displacement_px[ordered.index((walker, walker_next))]
    np.testing.assert_allclose(displacement, [0, 0, 12])


def test_ambiguous_links_are_those_with_a_competitor_of_similar_length():
    tracking = Tracking(VoxelSize(1, 1, 1))
    source = tracking.add_position(Position(0, 0, 0, 0))
    near = tracking.add_position(Position(10, 0, 0, 1))
    tracking.add_position(Position(0, 12, 0, 1))  # 12 µm: similar to the 10 µm of the true link
    tracking.add_link(source, near)
    pairs = [(p, p) for p in tracking.positions_at(1)]
    candidates = link.find_candidates([(source, source)], pairs, tracking.voxel_size, factor=2)
    assert list(link.link_kinds(tracking, candidates, tracking.voxel_size)) == [link.AMBIGUOUS] * 2


# Calibration maths
def test_platt_recovers_a_known_sigmoid():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=50_000)
    labels = rng.random(50_000) < sigmoid(2 * scores - 1)
    platt = fit_platt(sigmoid(scores), labels)
    assert platt.a == pytest.approx(2, abs=0.05) and platt.b == pytest.approx(-1, abs=0.05)
    assert Platt.from_json(platt.to_json()) == platt
    assert fit_platt(np.array([0.2, 0.7]), np.array([1, 1])) == Platt()  # one class: identity


def test_scores_on_hand_checkable_cases():
    probabilities, labels = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    assert roc_auc(probabilities, labels) == pytest.approx(0.75)  # 3 of 4 positive-negative pairs in order
    assert average_precision(probabilities, labels) == pytest.approx((1 + 2 / 3) / 2)  # P at each positive
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)  # a tie counts half
    assert math.isnan(roc_auc(np.array([0.3]), np.array([1])))
    assert expected_calibration_error(np.full(4, 0.25), np.array([1, 0, 0, 0])) == pytest.approx(0)
    assert expected_calibration_error(np.array([0.9, 0.9, 0.05, 0.05]), np.array([1, 0, 0, 0])) == \
        pytest.approx(0.5 * 0.4 + 0.5 * 0.05)
    table = reliability_table(np.array([0.05, 0.95, 1.0]), np.array([0, 1, 1]))
    assert [row.count for row in table] == [1] + [0] * 8 + [2]
    assert penalty(np.array([0.5]))[0] == pytest.approx(0)
    assert penalty(np.array([0.9]))[0] == pytest.approx(-math.log10(9))


# Tiny runs of the whole pipeline
@pytest.fixture(scope="module")
def _dividing_movies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small movies with divisions in the training time points (0–3) and the validation ones (4–5)."""
    folders = {}
    for name, two_d, size, nuclei in (("3d", False, (48, 48, 8), 6), ("2d", True, (96, 96, 1), 8)):
        folder = tmp_path_factory.mktemp(f"dividing_{name}")
        generate(folder, seed=4, two_d=two_d, time_points=6, size_xyz=size, nuclei=nuclei, division_rate=0.3)
        ini = folder / "organoid_tracker.ini"
        dataset = {key: value for key, value in _section(ini, "prepare").items()}
        set_keys(ini, "prepare", max_time_point_1=3, use_for_1="train",
                 **{key[:-1] + "2": value for key, value in dataset.items()}, min_time_point_2=4,
                 use_for_2="validation")
        set_keys(ini, "predict", positions_file_1="ground_truth.aut")
        folders[name] = folder
    return folders


def _section(ini: Path, section: str) -> dict[str, str]:
    import configparser

    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.read(ini)
    return dict(parser.items(section))


@pytest.fixture
def dividing_3d(_dividing_movies, tmp_path) -> Path:
    return Path(shutil.copytree(_dividing_movies["3d"], tmp_path / "movie"))


@pytest.fixture
def dividing_2d(_dividing_movies, tmp_path) -> Path:
    return Path(shutil.copytree(_dividing_movies["2d"], tmp_path / "movie2d"))


def tiny(movie: Path, patch: str, **extra: object) -> str:
    ini = movie / "organoid_tracker.ini"
    for section in ("train_divide", "train_link"):
        set_keys(ini, section, patch_shape=patch, **{**TINY, **extra})
    return str(ini)


@pytest.mark.parametrize("movie_name, patch", [("dividing_3d", "16, 16, 8"), ("dividing_2d", "24, 24, 1")])
def test_train_both_and_predict_divisions_and_links(capsys, request, movie_name, patch):
    movie: Path = request.getfixturevalue(movie_name)
    ini = tiny(movie, patch)
    out = octrack(capsys, "train", "--config", ini)
    assert "mothers drawn ×10" in out and "links next to a division drawn ×10" in out
    assert "average precision" in out and "ece after calibration" in out and "0.9–1.0" in out
    for network, kind in (("divide", divide.DivideSettings), ("link", link.LinkSettings)):
        settings = load_settings(movie / "training_output" / f"model_{network}", kind)
        assert settings.network == network and settings.calibration is not None
        assert {"before_calibration", "after_calibration", "reliability_after"} <= set(settings.validation_scores)
        assert settings.patch_shape[0] == (8 if movie_name == "dividing_3d" else 1)
    assert load_settings(movie / "training_output" / "model_link", link.LinkSettings).link_candidate_factor == 2
    assert load_settings(movie / "training_output" / "model_divide", divide.DivideSettings).crops_follow_drift
    assert "0 entries built" in octrack(capsys, "prepare", "--config", ini)  # reused: nothing changed

    octrack(capsys, "predict", "--config", ini, "--steps", "positions,divisions,links")
    folder = movie / "training_output" / "predictions" / "1"
    truth = load_tracking(movie / "ground_truth.aut")
    aut = load_tracking(folder / "positions.aut")
    assert len(aut) == len(truth)
    for position in aut.positions():
        data = aut.position_data(position)
        assert 0 <= data["division_probability"] <= 1
        assert data["division_penalty"] == pytest.approx(-math.log10(data["division_probability"] /
                                                                    (1 - data["division_probability"])), abs=1e-4)
    assert aut.link_count() >= truth.link_count()
    assert all(aut.has_link(a, b) for a, b in truth.links())  # candidates cover the true links here
    assert set(aut.link_data_keys()) == {"link_probability", "link_penalty"}
    positions = list(csv.DictReader(open(folder / "positions.csv")))
    links = list(csv.DictReader(open(folder / "links.csv")))
    assert "division_probability" in positions[0] and {row["parent_id"] for row in positions} == {"-1"}
    assert len(links) == aut.link_count() and set(links[0]) == {"source_id", "target_id", "link_probability"}
    by_id = {row["node_id"]: row for row in positions}
    for row in links:
        assert int(by_id[row["target_id"]]["t"]) == int(by_id[row["source_id"]]["t"]) + 1
    assert not list(folder.glob(".*progress*"))


@pytest.mark.parametrize("network", ["divide", "link"])
def test_interrupted_training_resumes_and_matches(capsys, dividing_2d, tmp_path, monkeypatch, network):
    import keras

    other = Path(shutil.copytree(dividing_2d, tmp_path / "other"))
    for movie in (dividing_2d, other):
        tiny(movie, "24, 24, 1", epochs=3)
    octrack(capsys, f"train-{network}", "--config", str(dividing_2d / "organoid_tracker.ini"))
    with interrupted_after_epoch(monkeypatch, 2):
        assert main([f"train-{network}", "--config", str(other / "organoid_tracker.ini")]) == 130
    assert f"resuming {network}" in octrack(capsys, f"train-{network}", "--config", str(other / "organoid_tracker.ini"))

    def history(movie: Path) -> list[dict[str, str]]:
        return list(csv.DictReader(open(movie / "training_output" / f"training_{network}" / "log.csv")))

    assert [row["epoch"] for row in history(other)] == ["1", "2", "3"]
    for a, b in zip(history(dividing_2d), history(other)):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-3)
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-3)

    def weights(movie: Path) -> list[np.ndarray]:
        return keras.saving.load_model(movie / "training_output" / f"model_{network}" / "model.keras",
                                       compile=False).get_weights()

    for a, b in zip(weights(dividing_2d), weights(other)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


# Bad inputs
def test_predict_without_or_with_the_wrong_model(capsys, dividing_2d):
    ini = tiny(dividing_2d, "24, 24, 1")
    assert main(["predict", "--config", ini, "--steps", "divisions"]) == 2
    assert "model_divide" in capsys.readouterr().err
    octrack(capsys, "train-link", "--config", ini)
    set_keys(dividing_2d / "organoid_tracker.ini", "predict", divide_model_folder="training_output/model_link")
    assert main(["predict", "--config", ini, "--steps", "divisions"]) == 2
    assert "a link model, but a divide model is needed" in capsys.readouterr().err
    assert main(["predict", "--config", ini, "--steps", "positions,tracklets"]) == 2
    assert "`tracklets` is not a step" in capsys.readouterr().err
    set_keys(dividing_2d / "organoid_tracker.ini", "predict", positions_file_1=None)
    assert main(["predict", "--config", ini, "--steps", "links"]) == 2
    assert "--steps positions" in capsys.readouterr().err


def test_training_without_divisions_says_what_is_missing(capsys, movie_2d):
    """The conftest movie has no division in its training time points."""
    ini = movie_2d / "organoid_tracker.ini"
    set_keys(ini, "train_divide", patch_shape="24, 24, 1", **TINY)
    if load_tracking(movie_2d / "ground_truth.aut").divisions():
        pytest.skip("the fixture movie has divisions")
    assert main(["train-divide", "--config", str(ini)]) == 2
    assert "no divide training samples with a positive label" in capsys.readouterr().err
