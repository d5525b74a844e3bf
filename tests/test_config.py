"""organoid_tracker.ini: lookup order, numbered datasets, defaults, and the example file."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from octrack.config import (DATASET_KEYS, KEYS, ClassifierSection, Config, DetectSection, LinkSection,
                            PredictSection, PrepareSection)
from octrack.errors import UserError
from octrack.stages.init import render_example
from octrack.time_window import TimeWindow

ROOT = Path(__file__).resolve().parents[1]


def write_ini(tmp_path: Path, text: str) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    ini = tmp_path / "organoid_tracker.ini"
    ini.write_text(text)
    return ini


def test_section_first_then_defaults(tmp_path):
    ini = write_ini(tmp_path, "[DEFAULTS]\nepochs = 7\nbatch_size = 3\n[train_detect]\nepochs = 9\n")
    config = Config(ini)
    assert config.get("train_detect", "epochs") == 9
    assert config.get("train_link", "epochs") == 7
    assert config.get("train_detect", "batch_size") == 3
    assert config.get("train_detect", "validation_fraction") == 0.2


def test_documented_defaults(tmp_path):
    config = Config(write_ini(tmp_path, "[DEFAULTS]\n"))
    assert config.get("train_detect", "epochs") == 50
    assert config.get("train_detect", "steps_per_epoch") is None
    assert config.get("train_detect", "patch_shape") == (64, 64, 16)
    assert config.get("train_link", "time_window_before") == 0
    assert config.cache_folder() == tmp_path / "training_output" / "cache"


def test_numbered_datasets_end_at_stop_and_refuse_a_gap(tmp_path):
    ini = write_ini(tmp_path, "[DEFAULTS]\nimages_pattern_1 = a{time}.tif\n"
                              "[prepare]\nimages_container_1 = images\nimages_container_2 = images\n"
                              "images_channels_2 = 3,4\npositions_file_2 = images\nimages_container_3 = <stop>\n"
                              "images_container_4 = images\n"
                              "[predict]\nimages_container_1 = images\nimages_container_3 = images\n")
    config = Config(ini)
    prepare = config.datasets("prepare")
    assert [dataset.number for dataset in prepare] == [1, 2]
    assert prepare[0].images_pattern == "a{time}.tif"  # from [DEFAULTS]
    assert prepare[0].images_container == tmp_path / "images"  # relative to the ini's folder
    assert prepare[1].image_channels == (3, 4)  # OrganoidTracker's spelling
    assert prepare[1].tracking_file == tmp_path / "images"  # positions_file_N alias
    with pytest.raises(UserError, match=r"\[predict\] images_container_3: there is no images_container_2"):
        config.datasets("predict")  # a gap would silently drop dataset 3


def test_patch_shape_written_x_y_z(tmp_path):
    config = Config(write_ini(tmp_path, "[train_detect]\npatch_shape = 96, 80, 1\n"))
    assert config.get("train_detect", "patch_shape") == (96, 80, 1)


def test_unknown_section_warns(tmp_path):
    config = Config(write_ini(tmp_path, "[train_detekt]\nepochs = 3\n"))
    assert any("unknown section [train_detekt]" in w and "train_detect" in w for w in config.warnings)


def test_dataset_key_in_training_section_warns(tmp_path):
    config = Config(write_ini(tmp_path, "[train_detect]\nimages_container_1 = images\n"))
    assert any("dataset keys belong in" in warning for warning in config.warnings)


def test_example_documents_every_key_with_its_default():
    example = (ROOT / "organoid_tracker.ini.example").read_text()
    assert example == render_example(), "run: python -c 'from octrack.stages.init import render_example; " \
                                        "open(\"organoid_tracker.ini.example\", \"w\").write(render_example())'"
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.read_string(example)
    for key in KEYS.values():
        assert parser.has_option("DEFAULTS", key.name)
    for key in DATASET_KEYS.values():
        assert parser.has_option("prepare" if "prepare" in key.sections else "predict", f"{key.name}_1")


def test_example_parses_without_warnings(tmp_path):
    ini = tmp_path / "organoid_tracker.ini"
    ini.write_text((ROOT / "organoid_tracker.ini.example").read_text())
    assert Config(ini).warnings == []


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.ini")), ids=lambda p: p.name)
def test_shipped_configs_parse_without_warnings(path):
    config = Config(path)
    assert config.warnings == []
    for section in ("DEFAULTS", "train_detect", "train_divide", "train_link"):
        config.section(section)


def test_key_in_a_section_that_does_not_read_it_warns(tmp_path):
    config = Config(write_ini(tmp_path, "[prepare]\npatch_shape = 32, 32, 8\n[predict]\nepochs = 3\n"))
    assert any("[prepare] patch_shape: read from [DEFAULTS], [train_detect]" in w for w in config.warnings)
    assert any("[predict] epochs: read from" in w for w in config.warnings)


@pytest.mark.parametrize("name, kind", [("prepare", PrepareSection), ("train_detect", DetectSection),
                                        ("train_divide", ClassifierSection), ("train_link", LinkSection),
                                        ("predict", PredictSection)])
def test_each_typed_section_reads_exactly_the_keys_declared_for_it(tmp_path, monkeypatch, name, kind):
    """The typed object of a section is built from the keys that KEYS says the section reads: no more (a key
    read where it is declared not to be read would not warn), no fewer (a declared key would do nothing)."""
    config = Config(write_ini(tmp_path, "[DEFAULTS]\n"))
    read = set()
    original = Config.get

    def recording(self, section, key):
        read.add(key)
        return original(self, section, key)

    monkeypatch.setattr(Config, "get", recording)
    config.section_of(kind, name)
    assert read == {key.name for key in KEYS.values() if name in key.sections}


def test_typed_sections_convert_at_the_surface(tmp_path):
    config = Config(write_ini(tmp_path, "[DEFAULTS]\noutput_folder = out\n[train_detect]\npatch_shape = 96, 80, 1\n"
                                        "time_window_before = 0\naugment_noise = false\n[predict]\n"
                                        "detect_model_folder = models/d\n"))
    detect = config.section_of(DetectSection, "train_detect")
    assert detect.patch_shape == (1, 80, 96)  # written x, y, z; (z, y, x) inside
    assert detect.time_window == TimeWindow(0, 1) and detect.augment.gaussian_noise == 0
    assert detect.output_folder == tmp_path / "out" and detect.config_file == config.path
    predict = config.section_of(PredictSection, "predict")
    assert predict.model_folder("detect") == tmp_path / "models" / "d"
    assert predict.model_folder("link") == tmp_path / "out" / "model_link"
    assert predict.min_distance_um is None and predict.link_candidate_factor is None  # the model's
