"""`octrack init`: a starting ini for the user's images; and `octrack init --example` (also kept in the checkout as
`organoid_tracker.ini.example`): every key, from the key declarations.

Both are rendered from `octrack.config.KEYS` / `DATASET_KEYS`, so the documentation of a key cannot
drift from its parser and default.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from octrack.autlist import autlist_entry, write_autlist
from octrack.config import DATASET_FILE, DATASET_KEYS, DEFAULTS, KEYS, OT_TRAIN_SECTIONS, Key
from octrack.errors import UserError
from octrack.files import write_text_atomic

FORMATS = ("octrack", "organoidtracker")
OT_LIST_FILE = "Dataset.autlist"
# What OrganoidTracker's GUI writes into a training folder's ini ("Train a neural network"), per section
_OT_GUI_VALUES = {
    "train_position_network": {"learning_rate": "0.0005", "patch_shape": "96, 96, 32", "batch_size": "16",
                               "time_window_before": "0"},
    "train_division_network": {"learning_rate": "0.0003", "patch_shape": "64, 64, 12", "batch_size": "16",
                               "time_window_before": "-1"},
    "train_link_network": {"learning_rate": "0.00003", "patch_shape": "64, 64, 16", "batch_size": "8",
                           "time_window_before": "0"},
}

EXAMPLE_HEADER = """\
# organoid_tracker.ini: drives every octrack command (prepare, train, predict, evaluate).
#
# Sections: [DEFAULTS] is shared by all commands; a key is looked up in the command's own section
# ([prepare], [train_detect], [train_divide], [train_link], [predict]) first, then in [DEFAULTS].
# Relative paths are relative to the folder of this file. Every key below shows its default;
# an empty value means the default too.
#
# OrganoidTracker's training folders work as they are: its sections [train_position_network],
# [train_division_network] and [train_link_network] configure the detect, divide and link networks
# (one or the other form per network), with OrganoidTracker's defaults (listed per key below), its
# time_window_before (-1 = one frame before t), its dataset_file (.autlist) and its model folders
# (output_folder/model_positions, model_divisions, model_links). `octrack init --format organoidtracker`
# writes such a folder.
"""


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return str(value)


def _comment(key: Key) -> str:
    return _wrapped(key.help)


def _wrapped(text: str) -> str:
    return "\n".join(textwrap.wrap(text, 100, initial_indent="# ", subsequent_indent="# ")) + "\n"


def _global_keys_block() -> str:
    lines = []
    for key in KEYS.values():
        differing = "".join(f"# Default in [{section}]: {format_value(value) or 'empty'}\n"
                            for section, value in key.section_defaults)
        if key.from_data:  # written empty, so that the data choose it (data_defaults.py)
            differing += _wrapped(f"Empty = chosen from the data in [train_detect]: {key.from_data}, the spacing "
                                  f"being the 10th percentile of the annotated nuclei's nearest-neighbour "
                                  f"distances; {format_value(key.default)} elsewhere and where there are too few "
                                  f"annotations.")
        value = "" if key.from_data else format_value(key.default)
        lines.append(f"{_comment(key)}{differing}{key.name} = {value}\n")
    return "\n".join(lines)


def _dataset_block(section: str, number: int, values: dict[str, Any], with_comments: bool) -> str:
    lines = []
    for key in (key for key in DATASET_KEYS.values() if section in key.sections):
        value = values.get(key.name, key.default)
        comment = _comment(key) if with_comments else ""
        lines.append(f"{comment}{key.name}_{number} = {format_value(value)}")
    return "\n".join(lines) + "\n"


def render_example() -> str:
    """The text of organoid_tracker.ini.example: every key, commented, with its default."""
    example_dataset = {"images_container": "images", "images_pattern": "nd799xy08t{time:03}c{channel}.tif",
                       "tracking_file": "annotations.aut"}
    return (f"{EXAMPLE_HEADER}\n[{DEFAULTS}]\n{_global_keys_block()}\n"
            f"[prepare]\n# Training data: numbered datasets 1, 2, … up to the first missing number or a "
            f"value <stop>.\n{_dataset_block('prepare', 1, example_dataset, True)}\n"
            f"# Or, instead of numbered datasets:\n{_comment(DATASET_FILE)}{DATASET_FILE.name} = \n\n"
            f"[train_detect]\n\n[train_divide]\n\n[train_link]\n\n"
            f"[predict]\n# Time lapses to track: the same numbered keys; tracking_file_N is not needed.\n"
            f"{_dataset_block('predict', 1, {**example_dataset, 'tracking_file': None}, False)}")


def write_initial_config(images: Path, tracking: Path | None, output: Path, *, force: bool = False,
                         form: str = "octrack") -> str:
    """Writes a starting ini for the user's images (pattern guessed from the file names); returns a report.

    Only the keys that apply and have a value are written: the images and what their metadata say (voxel size,
    time between time points), and the annotations; `octrack init --example` lists every key. `form` octrack:
    the datasets as numbered keys of [prepare] and [predict]. organoidtracker: the training folder that
    OrganoidTracker's GUI writes (its three [train_*_network] sections with the GUI's values, and the training
    dataset in Dataset.autlist beside the ini), with octrack's [predict]."""
    from octrack.images import is_container, open_images
    from octrack.patterns import guess_pattern

    if form not in FORMATS:
        raise UserError(f"--format {form}: choose one of {', '.join(FORMATS)}")
    list_file = output.parent / OT_LIST_FILE
    for path in (output, list_file) if form == "organoidtracker" else (output,):
        if path.exists() and not force:
            raise UserError(f"{path} exists already; choose another --output or add --force to overwrite it")
    if not images.exists():
        raise UserError(f"--images {images}: no such file or folder")
    if tracking is not None and not tracking.exists():
        raise UserError(f"--tracking {tracking}: no such file or folder")
    pattern = guess_pattern(images)[0] if images.is_dir() and not is_container(images) else None
    source = open_images(images, pattern)
    dataset = {"images_container": _relative(images, output), "images_pattern": pattern}
    if source.voxel_size:
        dataset.update(pixel_size_x_um=source.voxel_size.x_um, pixel_size_y_um=source.voxel_size.y_um,
                       pixel_size_z_um=source.voxel_size.z_um, time_point_duration_m=source.voxel_size.t_minutes)
    header = (f"# Written by `octrack init` for {images}. Every key with its meaning and default: "
              f"`octrack init --example`.\n")
    if form == "organoidtracker":
        write_autlist(list_file, [autlist_entry(list_file, experiment_file=tracking, images_container=images,
                                                images_pattern=pattern)])
        text = (f"{header}[{DEFAULTS}]\n\n{_organoid_tracker_sections(list_file.name)}"
                f"[predict]\noutput_folder = ./output\n{_set_keys('predict', 1, dataset)}")
        written = f"wrote {output} and {list_file}"
    else:
        training = {**dataset, "tracking_file": _relative(tracking, output) if tracking else None}
        text = (f"{header}[{DEFAULTS}]\noutput_folder = training_output\n\n"
                f"[prepare]\n{_set_keys('prepare', 1, training)}\n[predict]\n{_set_keys('predict', 1, dataset)}")
        written = f"wrote {output}"
    write_text_atomic(output, text)
    return (f"{written}\n  images: {source.describe()}\n  pattern: {dataset['images_pattern'] or '(none)'}\n"
            f"  voxel size: {_voxel_text(source.voxel_size)}\n"
            f"  next: check the ini, then run `octrack prepare --config {output}`")


def _organoid_tracker_sections(list_name: str) -> str:
    """The three training sections as OrganoidTracker's GUI writes them (same keys, order and values)."""
    text = ""
    for section in OT_TRAIN_SECTIONS:
        values = {DATASET_FILE.name: list_name, "epochs": "50", "learning_rate": None, "patience": "2",
                  "patch_shape": None, "output_folder": "./output", "batch_size": None, "time_window_before": None,
                  "time_window_after": "1"}
        values.update(_OT_GUI_VALUES[section])
        text += f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in values.items()) + "\n"
    return text


def _set_keys(section: str, number: int, values: dict[str, Any]) -> str:
    """`key_N = value` lines of the dataset keys that `section` reads and that have a value."""
    return "".join(f"{key.name}_{number} = {format_value(values[key.name])}\n" for key in DATASET_KEYS.values()
                   if section in key.sections and values.get(key.name) is not None)


def _relative(path: Path, ini: Path) -> str:
    """Paths in the ini are relative to its folder where that is possible."""
    try:
        return str(path.resolve().relative_to(ini.resolve().parent))
    except ValueError:
        return str(path.resolve())


def _voxel_text(voxel_size: Any) -> str:
    if voxel_size is None:
        return "not in the image metadata: set pixel_size_x_um_1, pixel_size_y_um_1 and pixel_size_z_um_1"
    interval = f", {voxel_size.t_minutes:g} min per time point" if voxel_size.t_minutes else ""
    return (f"z, y, x = {voxel_size.z_um:g}, {voxel_size.y_um:g}, {voxel_size.x_um:g} µm{interval} (from the image "
            f"metadata)")
