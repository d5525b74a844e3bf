"""organoid_tracker.ini → typed, validated settings.

Every key is declared once, in `KEYS` (global keys) or `DATASET_KEYS` (numbered `key_N` keys), with its
parser, default, meaning and the sections that read it; `organoid_tracker.ini.example` documents the same
keys and a test keeps the two in step. A key is looked up in the command's own section first, then in
`[DEFAULTS]`; a key set in a section that does not read it gives a warning.

The rest of octrack reads the ini through one typed object per section (`PrepareSection`, `TrainSection`
and its subclasses for each network, `PredictSection`), built by `Config.section_of`. Sizes written x, y, z
in the ini (as OrganoidTracker writes them) are (z, y, x) in those objects, as everywhere inside octrack.

OrganoidTracker's training folders run unchanged: its sections `[train_position_network]`,
`[train_division_network]` and `[train_link_network]` (`OT_TRAIN_SECTIONS`) configure the detect, divide and
link networks in place of `[train_detect]`, `[train_divide]` and `[train_link]`, with OrganoidTracker's
defaults (`Key.section_defaults` under the OrganoidTracker section's name), its sign of `time_window_before`
(a frame offset, -1 = one frame before t) and its model folder names (`model_positions`, ...). Its
`dataset_file` (an `.autlist`, `octrack.autlist`) gives the datasets of [prepare] (and of [predict]) where
the ini lists no numbered ones.
"""

from __future__ import annotations

import configparser
import difflib
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from octrack.augment import AugmentSettings
from octrack.autlist import ListEntry, read_autlist
from octrack.errors import UserError
from octrack.time_window import TimeWindow

log = logging.getLogger(__name__)

DEFAULTS = "DEFAULTS"
TRAIN_SECTIONS = ("train_detect", "train_divide", "train_link")
COMMAND_SECTIONS = ("prepare", *TRAIN_SECTIONS, "predict")
SECTIONS = (DEFAULTS, *COMMAND_SECTIONS)
DATASET_SECTIONS = ("prepare", "predict")
STOP = "<stop>"
# OrganoidTracker's training sections, each standing for the octrack section of the same network
OT_TRAIN_SECTIONS = {"train_position_network": "train_detect", "train_division_network": "train_divide",
                     "train_link_network": "train_link"}
# The model folder of a network is output_folder/model_NAME: octrack's names, or OrganoidTracker's where its
# section configures the network
OT_MODEL_NAMES = {"train_detect": "positions", "train_divide": "divisions", "train_link": "links"}


class InvalidValue(ValueError):
    """Raised by a parser with a description of what is allowed."""


# Parsers: str -> value, raising InvalidValue("what is allowed").
Parser = Callable[[str], Any]

# Upper limits of values that would otherwise exhaust memory or time instead of failing with a message: far above
# anything useful, far below what breaks (a U-Net of 40 levels, a patch of 894 GiB, batches of 1e23)
_MAX_PATCH_SIDE = 4096
_MAX_PATCH_VOXELS = 256 ** 3
_MIN_ZOOM, _MAX_ZOOM = 0.1, 10.0
_MAX_LEVELS = 8
_MAX_FILTERS = 1024
_MAX_BATCH = 65536
_MAX_UM = 1000.0  # distances and sizes in µm


def whole_number(minimum: int | None = None, maximum: int | None = None) -> Parser:
    """A whole number; `maximum` keeps out values that would exhaust memory or time rather than fail."""
    allowed = "must be a whole number" + (
        f" from {minimum} to {maximum}" if minimum is not None and maximum is not None
        else f" >= {minimum}" if minimum is not None else f" <= {maximum}" if maximum is not None else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise InvalidValue(allowed)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise InvalidValue(allowed)
        return value
    return parse


def number(minimum: float | None = None, above: float | None = None, below: float | None = None,
           maximum: float | None = None) -> Parser:
    """A finite number within the limits given (inf and nan never pass)."""
    def parse(text: str) -> float:
        limits = [f"{word} {limit:g}" for word, limit in (("above", above), (">=", minimum), ("below", below),
                                                          ("at most", maximum)) if limit is not None]
        allowed = " ".join(["must be a finite number", " and ".join(limits)]).strip()
        try:
            value = float(text)
        except ValueError:
            raise InvalidValue(allowed)
        if ((minimum is not None and value < minimum) or (above is not None and value <= above)
                or (below is not None and value >= below) or (maximum is not None and value > maximum)
                or not math.isfinite(value)):
            raise InvalidValue(allowed)
        return value
    return parse


def optional(parser: Parser) -> Parser:
    """Empty or `auto` means None (the documented automatic choice)."""
    def parse(text: str) -> Any:
        return None if text.strip().lower() in ("", "auto", "none") else parser(text)
    return parse


def choice(*allowed: str) -> Parser:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise InvalidValue("must be one of " + ", ".join(allowed))
        return value
    return parse


def text_value(text: str) -> str:
    return text.strip()


def path_value(text: str) -> str:
    """Paths are resolved against the ini file's folder by `Config`, not here."""
    if not text.strip():
        raise InvalidValue("must be a path")
    return text.strip()


def boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise InvalidValue("must be true or false")


def number_range(text: str) -> tuple[float, float]:
    allowed = (f"must be two finite numbers from {_MIN_ZOOM:g} to {_MAX_ZOOM:g}, lowest first (e.g. 0.8, 1.2; "
               f"1, 1 = off)")
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise InvalidValue(allowed)
    if not _MIN_ZOOM <= low <= high <= _MAX_ZOOM:
        raise InvalidValue(allowed)
    return low, high


def patch_shape(text: str) -> tuple[int, int, int]:
    """Written `x, y, z` as OrganoidTracker writes it; returned in the same order."""
    parts = [part.strip() for part in text.split(",")]
    allowed = (f"must be three whole numbers from 1 to {_MAX_PATCH_SIDE} written x, y, z, at most "
               f"{_MAX_PATCH_VOXELS:,} voxels in all (e.g. 64, 64, 16; z = 1 for 2D)")
    if len(parts) != 3:
        raise InvalidValue(allowed)
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        raise InvalidValue(allowed)
    if min(values) < 1 or max(values) > _MAX_PATCH_SIDE or math.prod(values) > _MAX_PATCH_VOXELS:
        raise InvalidValue(allowed)
    return values  # type: ignore[return-value]


def channel_list(text: str) -> tuple[int, ...]:
    allowed = "must be channel numbers from 1, separated by commas (e.g. 1 or 3,4 to sum channels 3 and 4)"
    try:
        channels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidValue(allowed)
    if not channels or min(channels) < 1:
        raise InvalidValue(allowed)
    return channels


def axes_value(text: str) -> str:
    axes = text.strip().upper()
    if not re.fullmatch(r"[TZCYX]+", axes) or len(set(axes)) != len(axes) or not {"Y", "X"} <= set(axes):
        raise InvalidValue("must be distinct letters from T, Z, C, Y, X that include Y and X (e.g. TZCYX)")
    return axes


@dataclass(frozen=True)
class Key:
    name: str
    parser: Parser
    default: Any
    sections: tuple[str, ...]
    help: str
    section_defaults: tuple[tuple[str, Any], ...] = ()
    from_data: str = ""  # how [train_detect] chooses the value from the data where the ini leaves it empty

    def default_for(self, section: str) -> Any:
        return dict(self.section_defaults).get(section, self.default)


# Where each key is read (a key set elsewhere is ignored, with a warning): [DEFAULTS] always counts.
_EVERYWHERE = SECTIONS
_TRAINING = (DEFAULTS, *TRAIN_SECTIONS)
_SPLIT = (DEFAULTS, "prepare", *TRAIN_SECTIONS)
_CACHE = (DEFAULTS, "prepare")
_DECODING = (DEFAULTS, "train_detect", "predict")
_PREDICT = (DEFAULTS, "predict")
_CLASSIFIERS = (DEFAULTS, "train_divide", "train_link")
_DETECT = (DEFAULTS, "train_detect")

KEYS: dict[str, Key] = {key.name: key for key in [
    Key("epochs", whole_number(1, 1_000_000), 50, _TRAINING, "Passes over the training data."),
    Key("steps_per_epoch", optional(whole_number(1, 10_000_000)), None, _TRAINING,
        "Batches per epoch; empty = one pass over the training samples."),
    Key("batch_size", whole_number(1, _MAX_BATCH), 8, _TRAINING, "Samples per training step.",
        (("train_divide", 32), ("train_link", 32), ("train_position_network", 64), ("train_division_network", 64),
         ("train_link_network", 64))),
    Key("patch_shape", patch_shape, (64, 64, 16), _TRAINING,
        "Size of a training patch in pixels, written x, y, z (z = 1 for 2D+time).",
        (("train_divide", (32, 32, 8)), ("train_link", (32, 32, 8)), ("train_position_network", (64, 64, 32)),
         ("train_division_network", (32, 32, 16)), ("train_link_network", (32, 32, 16))),
        from_data="x, y: 6 × the spacing (32–256 px, at most 64 × 64 × 16 voxels in all), z: the images' depth "
                  "up to 16"),
    Key("max_training_minutes", optional(number(above=0, maximum=10_000_000)), None, _TRAINING,
        "Stop training before the epoch that would end after this many minutes of this run; empty = no limit."),
    Key("learning_rate", number(above=0, maximum=1), 0.001, _TRAINING, "Learning rate of the Adam optimizer.",
        (("train_position_network", 0.0005), ("train_division_network", 0.0003), ("train_link_network", 0.00003))),
    Key("mixed_precision", choice("auto", "float32", "mixed_float16", "mixed_bfloat16"), "auto", _TRAINING,
        "Number format of the network's computations: auto (mixed_float16 on a GPU, float32 on the CPU; "
        "`octrack doctor` says which), float32, or mixed_bfloat16 / mixed_float16 (weights and outputs stay "
        "float32; faster where the hardware computes in 16 bits, e.g. CPUs with AVX512_BF16 and most GPUs)."),
    Key("distribution", choice("none", "mirrored", "multi_worker"), "none", _TRAINING,
        "Training on several devices: none; mirrored = every GPU of this machine; multi_worker = several "
        "machines (each worker reads the standard TF_CONFIG environment variable). batch_size stays the batch "
        "of a whole step, split evenly among the devices; learning_rate is used as it is (scale it with "
        "batch_size). Needs the tensorflow backend (mirrored: or jax)."),
    Key("patience", whole_number(0, 1_000_000), 10, _TRAINING,
        "Stop after this many epochs without a better validation loss; 0 = never stop early.",
        (("train_position_network", 1), ("train_division_network", 2), ("train_link_network", 2))),
    Key("time_window_before", whole_number(-100, 100), 1, _TRAINING,
        "Time points before t that a sample sees: a count (1 = one frame before t). OrganoidTracker writes a "
        "frame offset instead (-1 = one frame before t): a negative value is read that way, and in "
        "OrganoidTracker's [train_*_network] sections only that way (0 or negative).",
        (("train_link", 0), ("train_position_network", -1), ("train_division_network", -1),
         ("train_link_network", -1))),
    Key("time_window_after", whole_number(0, 100), 1, _TRAINING, "Time points after t that a sample sees."),
    Key("validation_fraction", number(minimum=0, below=1), 0.2, _CACHE,
        "Share of the time points of a `use_for_N = both` dataset held out for validation."),
    Key("seed", whole_number(0, 2 ** 32 - 1), 1, _SPLIT, "Seed of every random choice (split, shuffling, augmentation)."),
    Key("output_folder", path_value, "training_output", _EVERYWHERE,
        "Where models, logs and predictions go (relative paths: from the ini file's folder). A network's model "
        "goes to model_detect, model_divide, model_link in it; to model_positions, model_divisions, "
        "model_links where OrganoidTracker's section configures it.",
        tuple((section, "training_output_folder") for section in OT_TRAIN_SECTIONS)),
    Key("cache_folder", optional(path_value), None, _CACHE,
        "Where prepare writes its HDF5 cache; empty = <output_folder>/cache."),
    Key("pretrained_model_path", optional(path_value), None, _TRAINING,
        "A model folder to start training from instead of random weights; empty = none. An OrganoidTracker "
        "model folder (model.keras + settings.json with a `type`) is trained further as it is: its "
        "architecture, time window and conventions, into a folder that OrganoidTracker loads too."),
    Key("unet_levels", whole_number(1, _MAX_LEVELS), 3, _DETECT, "Detection U-Net: number of poolings."),
    Key("unet_filters", whole_number(1, _MAX_FILTERS), 8, _DETECT,
        "Detection U-Net: filters of the first level (doubled at every level). 8 matched 16 on held-out "
        "breast-cancer data (F1 0.963 against 0.961) at a quarter of the computation (docs/benchmarks.md)."),
    Key("target_sigma_um", number(above=0, maximum=_MAX_UM), 1.5, _DETECT,
        "Detection target: standard deviation in µm of the Gaussian dot at each nucleus centre (1.5 suits "
        "nuclei of 6–10 µm; about a fifth of a nucleus diameter).", from_data="a seventh of the spacing"),
    Key("min_distance_um", number(above=0, maximum=_MAX_UM), 3.0, _DECODING,
        "Detection: two nucleus centres closer than this (µm) count as one; predict uses the detection "
        "model's value unless set in [predict] (OrganoidTracker's positions models: 6 pixels).",
        (("predict", None),), from_data="0.3 × the spacing"),
    Key("peak_threshold", optional(number(above=0, below=1)), None, _DECODING,
        "Detection: lowest peak height that counts as a nucleus; empty = the value that gave the best F1 "
        "on the validation data, stored in the model folder (OrganoidTracker's positions models: 0.1)."),
    Key("division_patch_share", number(minimum=0, maximum=1), 0.15, _DETECT,
        "Detection training: share of patches centred near a newborn daughter (a nucleus in the time point "
        "after its mother divided), whose weak peaks detection misses most; 0 = as often as any nucleus. 0.15 "
        "found more divisions on breast cancer and synthetic 3D data (docs/benchmarks.md, session 23)."),
    Key("match_distance_um", number(above=0, maximum=_MAX_UM), 5.0, _DETECT,
        "Largest distance (µm) at which a detection matches an annotated nucleus when scoring.",
        from_data="0.4 × the spacing"),
    Key("augment_flip", boolean, True, _TRAINING, "Augmentation: random flips in x and y."),
    Key("augment_rotate", boolean, True, _TRAINING, "Augmentation: rotation in xy by any angle."),
    Key("augment_scale", number_range, (0.8, 1.2), _TRAINING,
        "Augmentation: zoom range in xy (for the divide and link networks prepare caches crops large enough "
        "for the smallest zoom).", (("train_divide", (0.9, 1.1)), ("train_link", (0.9, 1.1)))),
    Key("augment_intensity", boolean, True, _TRAINING, "Augmentation: brightness, contrast and gamma."),
    Key("augment_noise", boolean, True, _TRAINING, "Augmentation: Gaussian and Poisson-like noise."),
    Key("augment_depth_dimming", boolean, True, _TRAINING, "Augmentation: dimming with depth (3D only)."),
    Key("detect_model_folder", optional(path_value), None, _PREDICT,
        "Detection model used by predict (octrack's, or an OrganoidTracker positions model folder); empty = the "
        "one this ini trains ([train_detect] or [train_position_network]), else <output_folder>/model_detect or "
        "model_positions, whichever exists."),
    Key("encoder_levels", whole_number(1, _MAX_LEVELS), 3, _CLASSIFIERS,
        "Divide and link networks: poolings of the convolutional encoder."),
    Key("encoder_filters", whole_number(1, _MAX_FILTERS), 16, _CLASSIFIERS,
        "Divide and link networks: filters of the encoder's first level (doubled at every level)."),
    Key("division_multiplier", number(minimum=1, maximum=1_000_000), 10.0, _CLASSIFIERS,
        "Training draws the rare division samples (mothers; for the link network, links from a mother or to a "
        "daughter) this many times as often as their share of the data."),
    Key("link_candidate_factor", number(minimum=1, maximum=100), 2.0, (DEFAULTS, "train_link", "predict"),
        "Candidate links of a position: the positions of the next time point within this factor times the "
        "nearest one's distance (at most 5, searched both ways); predict uses the link model's value unless "
        "set in [predict].", (("predict", None),)),
    Key("divide_model_folder", optional(path_value), None, _PREDICT,
        "Division model used by predict (octrack's, or an OrganoidTracker divisions model folder); empty = as for "
        "detect_model_folder (model_divide, model_divisions)."),
    Key("link_model_folder", optional(path_value), None, _PREDICT,
        "Link model used by predict (octrack's, or an OrganoidTracker links model folder); empty = as for "
        "detect_model_folder (model_link, model_links)."),
    Key("ctc_radius_um", optional(number(minimum=0, maximum=_MAX_UM)), None, _PREDICT,
        "Radius in µm of the ball painted per position in the Cell Tracking Challenge result (ctc/); empty = 7 "
        "(OrganoidTracker's) where the voxel size is known, else ctc_radius_px."),
    Key("ctc_radius_px", optional(number(minimum=0, maximum=_MAX_UM)), None, _PREDICT,
        "The same radius in pixels, for images without a voxel size; empty = 10 (with a warning)."),
    Key("tentative_peak_fraction", number(minimum=0, below=1), 0.9, _PREDICT,
        "Detection: peaks from this fraction of the peak threshold up to it are kept as tentative detections "
        "(`detection_tentative` in positions.aut and .csv, not counted as detections): the tracker takes one "
        "only where its links and division pay for it, such as a newborn daughter's weak peak; 0 = none. 0.9 "
        "found more divisions on breast cancer and synthetic 3D data (docs/benchmarks.md, session 23)."),
    Key("min_marginal_probability", number(minimum=0, below=1), 0.99, _PREDICT,
        "Links with a lower marginal probability are left out of tracks_filtered.aut and .csv, and they and "
        "divisions below it are listed in review.csv (OrganoidTracker's default: 0.99)."),
]}

DATASET_KEYS: dict[str, Key] = {key.name: key for key in [
    Key("images_container", path_value, None, (DEFAULTS, *DATASET_SECTIONS),
        "Folder of the images, a single multi-dimensional TIFF file, or (with octrack[formats]) an OME-Zarr "
        "folder or a .nd2, .lif or .czi file. Ends the list of datasets when missing or `<stop>`."),
    Key("images_pattern", optional(text_value), None, (DEFAULTS, *DATASET_SECTIONS),
        "File name pattern with {time} (or {time:03} for zero padding) and optional {channel}; empty when "
        "images_container is a TIFF file; for a .nd2, .lif, .czi file or OME-Zarr folder the scene (series): a "
        "number from 1 or its name, empty = the first."),
    Key("image_channels", channel_list, (1,), (DEFAULTS, *DATASET_SECTIONS),
        "Channel(s) to use, from 1; several are summed per voxel in floating point (3,4 = channel 3 + 4). "
        "OrganoidTracker's spelling images_channels_N is accepted too."),
    Key("tracking_file", optional(path_value), None, (DEFAULTS, *DATASET_SECTIONS),
        "Annotations: an OrganoidTracker .aut file, a Cell Tracking Challenge TRA folder, or a CSV. "
        "positions_file_N is accepted too."),
    Key("annotated_region", optional(choice("box", "image")), None, (DEFAULTS, *DATASET_SECTIONS),
        "Where every nucleus of an annotated time point is annotated, so that anything else found there is wrong: "
        "box = the cuboid around the annotations (plus half a patch), for images annotated in part; image = "
        "the whole image. Empty = image for a Cell Tracking Challenge folder (its ground truth marks every "
        "nucleus), box otherwise."),
    Key("min_time_point", optional(whole_number(0)), None, (DEFAULTS, *DATASET_SECTIONS),
        "First time point to use; empty = the first there is."),
    Key("max_time_point", optional(whole_number(0)), None, (DEFAULTS, *DATASET_SECTIONS),
        "Last time point to use; empty = the last there is."),
    Key("use_for", choice("train", "validation", "both"), "both", (DEFAULTS, "prepare"),
        "train, validation, or both (time points split by validation_fraction)."),
    Key("images_axes", optional(axes_value), None, (DEFAULTS, *DATASET_SECTIONS),
        "Axes of a multi-dimensional image file (e.g. TZYX), one letter per dimension, when its metadata are "
        "wrong; empty = trust the file."),
    Key("pixel_size_x_um", optional(number(above=0, maximum=_MAX_UM)), None, (DEFAULTS, *DATASET_SECTIONS),
        "Voxel size in µm; empty = from the TIFF metadata, else from the tracking file."),
    Key("pixel_size_y_um", optional(number(above=0, maximum=_MAX_UM)), None, (DEFAULTS, *DATASET_SECTIONS), "See pixel_size_x_um."),
    Key("pixel_size_z_um", optional(number(above=0, maximum=_MAX_UM)), None, (DEFAULTS, *DATASET_SECTIONS), "See pixel_size_x_um."),
    Key("time_point_duration_m", optional(number(above=0, maximum=1_000_000)), None, (DEFAULTS, *DATASET_SECTIONS),
        "Minutes between time points; empty = from the image metadata, else from the tracking file."),
    Key("predictions_folder", optional(path_value), None, (DEFAULTS, "predict"),
        "Where predict writes this dataset's results; empty = <output_folder>/predictions/N."),
]}

DATASET_KEY_ALIASES = {"images_channels": "image_channels", "positions_file": "tracking_file"}

DATASET_FILE = Key(
    "dataset_file", optional(path_value), None, (DEFAULTS, *DATASET_SECTIONS, *OT_TRAIN_SECTIONS),
    "An OrganoidTracker .autlist naming the datasets, used where a section lists no numbered datasets: per "
    "experiment its experiment_file (the tracking file), images_container, images_pattern, channel summing and "
    "min/max_time_point, with paths relative to the list. [prepare] also finds it in OrganoidTracker's "
    "[train_*_network] sections.")
# Keys of OrganoidTracker's training scripts that octrack has no use for: (value it accepts, what it does instead)
OT_ONLY_KEYS = {"identify full division window": (
    "false", "octrack's division network labels the mother's last time point only (OrganoidTracker's default)")}
_NUMBERED = re.compile(r"^(?P<key>[a-z_]+?)_(?P<number>\d+)$")


@dataclass(frozen=True)
class DatasetConfig:
    """One numbered dataset of a section, with paths resolved against the ini's folder."""

    number: int
    section: str
    images_container: Path
    images_pattern: str | None
    image_channels: tuple[int, ...]
    tracking_file: Path | None
    annotated_region: str | None
    min_time_point: int | None
    max_time_point: int | None
    use_for: str
    images_axes: str | None
    pixel_size_x_um: float | None
    pixel_size_y_um: float | None
    pixel_size_z_um: float | None
    time_point_duration_m: float | None
    predictions_folder: Path | None
    config_file: Path
    key_sections: dict[str, str]  # key name -> section it was read from, for error messages
    list_file: Path | None = None  # the .autlist of `dataset_file` that named this dataset

    def where(self, key: str) -> str:
        """`file [section] key_N` (or `list entry N key`) for a message about this dataset's key."""
        if self.list_file is not None:
            return f"{self.list_file} entry {self.number} {_LIST_KEY_NAMES.get(key, key)}"
        section = self.key_sections.get(key, self.section)
        return f"{self.config_file} [{section}] {key}_{self.number}"


# What the keys of a dataset are called in an .autlist, for messages about a dataset from one
_LIST_KEY_NAMES = {"tracking_file": "experiment_file", "image_channels": "images_channel_summing"}


class Config:
    """A parsed organoid_tracker.ini. Unknown keys and sections give warnings, bad values a UserError."""

    def __init__(self, path: str | Path, *, must_exist: bool = True):
        self.path = Path(path)
        self.folder = self.path.resolve().parent
        self._parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
        if not self.path.is_file():
            if must_exist:
                raise UserError(f"{self.path}: config file not found; write one with `octrack init --images "
                                f"FOLDER` or pass its path with --config")
        else:
            self._read()
        self._ini_sections = self._organoid_tracker_sections()
        self.warnings = self._check_unknown()
        for warning in self.warnings:
            log.warning(warning)

    def _read(self) -> None:
        try:
            self._parser.read(self.path, encoding="utf-8-sig")  # -sig: skips a byte order mark (Notepad)
        except (configparser.Error, UnicodeDecodeError) as error:
            first_line = str(error).splitlines()[0]
            raise UserError(f"{self.path}: not a valid ini file ({first_line}); expected [section] headers "
                            f"and `key = value` lines")

    def _organoid_tracker_sections(self) -> dict[str, str]:
        """octrack section -> the OrganoidTracker section of the ini that stands for it."""
        standing_in = {}
        for ot_section, section in OT_TRAIN_SECTIONS.items():
            if self._parser.has_section(ot_section):
                if self._parser.has_section(section):
                    raise UserError(f"{self.path}: [{section}] and [{ot_section}] both configure the {section[6:]} "
                                    f"network; keep one of them")
                standing_in[section] = ot_section
        return standing_in

    def ini_section(self, section: str) -> str:
        """The ini's section for an octrack section: OrganoidTracker's where that stands for it."""
        return self._ini_sections.get(section, section)

    def is_organoid_tracker_section(self, section: str) -> bool:
        """Whether OrganoidTracker's section configures this octrack section (its defaults, sign, names)."""
        return section in self._ini_sections

    def raw(self, section: str, key: str) -> tuple[str, str] | None:
        """(value, section it came from), looking in `section` (or OrganoidTracker's section that stands for it)
        first and then in [DEFAULTS]."""
        for candidate in (self.ini_section(section), DEFAULTS):
            if self._parser.has_option(candidate, key):
                return self._parser.get(candidate, key), candidate
        return None

    def get(self, section: str, key: str) -> Any:
        """The typed value of a global key for a command's section, or its default (OrganoidTracker's where its
        section stands for the command's)."""
        spec = KEYS[key]
        found = self.raw(section, key)
        if found is None or not found[0].strip():
            return spec.default_for(self.ini_section(section))
        return self._parse(spec, found[0], f"{self.path} [{found[1]}] {key}")

    def validate(self) -> None:
        """Parses every global key of every section now, so that a bad value stops a command before long work;
        says what becomes of OrganoidTracker's keys that octrack has no use for."""
        for section in SECTIONS:
            self.section(section)
        for section in self._ini_sections.values():
            for key, (accepted, instead) in OT_ONLY_KEYS.items():
                value = self._parser.get(section, key, fallback=accepted)
                if value.strip().lower() != accepted:
                    log.warning(f"{self.path} [{section}] {key} = {value.strip()}: not supported, ignored; {instead}")

    def has_section(self, section: str) -> bool:
        return self._parser.has_section(self.ini_section(section))

    def section(self, section: str) -> dict[str, Any]:
        """Every global key with its value for this section."""
        return {key: self.get(section, key) for key in KEYS}

    def section_of(self, kind: type[SectionT], section: str) -> SectionT:
        """The typed object of a section: every field of `kind` read as the key of its name (section first,
        then [DEFAULTS], else the default), or as its `derived` reader says; its `name` is the ini's section
        (OrganoidTracker's where that stands for it), for messages."""
        values = {}
        for spec in fields(kind):
            read = spec.metadata.get("derived")
            values[spec.name] = self.ini_section(section) if spec.name == "name" else read(self, section) \
                if read else self.get(section, spec.name)
        return kind(**values)

    def resolve(self, path: str | None) -> Path | None:
        if path is None:
            return None
        resolved = Path(path).expanduser()
        return Path(os.path.normpath(resolved if resolved.is_absolute() else self.folder / resolved))

    def output_folder(self, section: str = DEFAULTS) -> Path:
        """`output_folder` of a section; for [prepare] (its cache) without one of its own or in [DEFAULTS], that of
        OrganoidTracker's training section, where OrganoidTracker's training folders set it."""
        if section == "prepare" and self._ini_sections and self.raw(section, "output_folder") is None:
            section = next(iter(self._ini_sections))
        return self.resolve(self.get(section, "output_folder"))

    def cache_folder(self, section: str = DEFAULTS) -> Path:
        cache = self.get(section, "cache_folder")
        return self.resolve(cache) if cache else self.output_folder(section) / "cache"

    def datasets(self, section: str) -> list[DatasetConfig]:
        """Numbered datasets of `section`, from 1 up to the first missing number or `<stop>`; where there are none,
        the experiments of the `.autlist` that `dataset_file` names."""
        datasets = []
        number = 1
        while True:
            container = self.raw(section, f"images_container_{number}")
            if container is None or container[0].strip() in ("", STOP):
                break
            datasets.append(self._dataset(section, number))
            number += 1
        if container is None:
            self._check_no_dataset_after(section, number)
        list_file = self.dataset_file(section)
        if datasets and list_file is not None:
            log.warning(f"{list_file[1]}: ignored, because [{section}] lists numbered datasets; remove one of "
                        f"the two")
        elif list_file is not None:
            datasets = [self._listed_dataset(section, list_file[0], entry) for entry in read_autlist(list_file[0])]
        return datasets

    def _check_no_dataset_after(self, section: str, missing: int) -> None:
        """Refuses numbered keys beyond the first missing dataset number, which would be ignored unseen (a list
        ends early on purpose with `images_container_N = <stop>`)."""
        for place in (self.ini_section(section), DEFAULTS):
            for key in self._parser.options(place) if self._parser.has_section(place) else ():
                match = _NUMBERED.match(key)
                base = match and DATASET_KEY_ALIASES.get(match["key"], match["key"])
                if match and base in DATASET_KEYS and int(match["number"]) > missing:
                    raise UserError(f"{self.path} [{place}] {key}: there is no images_container_{missing}, so "
                                    f"the datasets would end at {missing - 1} and this one be ignored; number the "
                                    f"datasets 1, 2, 3, ... without gaps (or end the list on purpose with "
                                    f"images_container_{missing} = {STOP})")

    def dataset_file(self, section: str) -> tuple[Path, str] | None:
        """The `.autlist` of `dataset_file` for a section's datasets and where the key is: the section, then (for
        [prepare]) OrganoidTracker's training sections, then [DEFAULTS]. Those training sections must agree, as
        octrack trains every network on the same datasets."""
        places = [section] + (list(self._ini_sections.values()) if section == "prepare" else []) + [DEFAULTS]
        found = {}
        for place in places:
            value = self._parser.get(place, DATASET_FILE.name, fallback="").strip()
            if value:
                found[place] = value
                if place in (section, DEFAULTS):
                    break
        if not found:
            return None
        training = {place: value for place, value in found.items() if place in OT_TRAIN_SECTIONS}
        if len({self.resolve(value) for value in training.values()}) > 1:
            listed = ", ".join(f"[{place}] dataset_file = {value}" for place, value in training.items())
            raise UserError(f"{self.path}: {listed}: octrack trains every network on the same datasets; name one "
                            f".autlist in all of them (or list the datasets in [prepare])")
        place, value = next(iter(found.items()))
        return self.resolve(self._parse(DATASET_FILE, value, f"{self.path} [{place}] dataset_file")), \
            f"{self.path} [{place}] dataset_file"

    def _listed_dataset(self, section: str, list_file: Path, entry: ListEntry) -> DatasetConfig:
        where = f"{list_file} entry {entry.number}"
        if entry.images_container is None:
            raise UserError(f"{where}: names no images (images_container); training and prediction need them")
        if len(entry.channel_groups) > 1:
            log.warning(f"{where}: images_channel_summing has {len(entry.channel_groups)} groups; octrack uses the "
                        f"first, {list(entry.channel_groups[0])}, as OrganoidTracker's networks use the first channel")
        dataset = DatasetConfig(
            number=entry.number, section=section, images_container=entry.images_container,
            images_pattern=entry.images_pattern, image_channels=(entry.channel_groups or ((1,),))[0],
            tracking_file=entry.experiment_file, annotated_region=None, min_time_point=entry.min_time_point,
            max_time_point=entry.max_time_point, use_for="both", images_axes=None, pixel_size_x_um=None,
            pixel_size_y_um=None, pixel_size_z_um=None, time_point_duration_m=None, predictions_folder=None,
            config_file=self.path, key_sections={}, list_file=list_file)
        self._check_dataset(dataset)
        return dataset

    def _dataset(self, section: str, number: int) -> DatasetConfig:
        values: dict[str, Any] = {}
        key_sections: dict[str, str] = {}
        for key, spec in DATASET_KEYS.items():
            names = [key] + [alias for alias, target in DATASET_KEY_ALIASES.items() if target == key]
            found = next((self.raw(section, f"{name}_{number}") for name in names
                          if self.raw(section, f"{name}_{number}") is not None), None)
            if found is None:
                values[key] = spec.default
                continue
            key_sections[key] = found[1]
            where = f"{self.path} [{found[1]}] {key}_{number}"
            values[key] = self._parse(spec, found[0], where) if found[0].strip() else spec.default
        dataset = DatasetConfig(
            number=number, section=section, config_file=self.path, key_sections=key_sections,
            **{**values, **{key: self.resolve(values[key])
                            for key in ("images_container", "tracking_file", "predictions_folder")}})
        self._check_dataset(dataset)
        return dataset

    def _check_dataset(self, dataset: DatasetConfig) -> None:
        first, last = dataset.min_time_point, dataset.max_time_point
        if first is not None and last is not None and first > last:
            raise UserError(f"{dataset.where('min_time_point')} = {first} is after "
                            f"max_time_point_{dataset.number} = {last}; swap them or correct one")
        if not dataset.images_container.exists():
            raise UserError(f"{dataset.where('images_container')}: {dataset.images_container} does not exist; "
                            f"give the folder of the images or a TIFF file")
        if dataset.tracking_file is not None and not dataset.tracking_file.exists():
            raise UserError(f"{dataset.where('tracking_file')}: {dataset.tracking_file} does not exist; give an "
                            f".aut file, a Cell Tracking Challenge TRA folder or a CSV file")

    @staticmethod
    def _parse(spec: Key, text: str, where: str) -> Any:
        try:
            return spec.parser(text)
        except InvalidValue as error:
            default = spec.default if not isinstance(spec.default, tuple) else ", ".join(map(str, spec.default))
            shown_default = "" if spec.default is None else f" (default {default})"
            raise UserError(f"{where} = {text.strip()!r}: {error}{shown_default}") from None

    def _check_unknown(self) -> list[str]:
        warnings = []
        known = (*SECTIONS, *OT_TRAIN_SECTIONS)
        for section in self._parser.sections():
            if section not in known:
                suggestion = _suggest(section, known)
                warnings.append(f"{self.path}: unknown section [{section}] is ignored{suggestion}")
                continue
            for key in self._parser.options(section):
                problem = _unknown_key_problem(key, section)
                if problem:
                    warnings.append(f"{self.path} [{section}] {key}: {problem}")
        return warnings


def _unknown_key_problem(key: str, section: str) -> str | None:
    if section in OT_TRAIN_SECTIONS and key in OT_ONLY_KEYS:
        return None
    if key in KEYS or key == DATASET_FILE.name:
        spec = KEYS.get(key, DATASET_FILE)
        if section in spec.sections or OT_TRAIN_SECTIONS.get(section) in spec.sections:
            return None
        places = ", ".join(f"[{name}]" for name in spec.sections)
        return f"read from {places} only; ignored here"
    match = _NUMBERED.match(key)
    if match:
        base = DATASET_KEY_ALIASES.get(match["key"], match["key"])
        if base in DATASET_KEYS:
            if section not in DATASET_KEYS[base].sections:
                places = ", ".join(f"[{name}]" for name in DATASET_KEYS[base].sections)
                return f"dataset keys belong in {places}; ignored here"
            return None
        known = [f"{name}_{match['number']}" for name in (*DATASET_KEYS, *DATASET_KEY_ALIASES)]
        return "unknown key, ignored" + _suggest(key, [*known, *KEYS])
    numbered_forms = [f"{name}_1" for name in DATASET_KEYS]
    return "unknown key, ignored" + _suggest(key, [*KEYS, DATASET_FILE.name, *numbered_forms])


def _suggest(word: str, candidates: Any) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


# Typed sections: what the rest of octrack reads instead of keys by name.
SectionT = TypeVar("SectionT")


def derived(read: Callable[[Config, str], Any]) -> Any:
    """A section field read from several keys, or converted: `read(config, section)` gives its value."""
    return field(metadata={"derived": read})


def _resolved(key: str) -> Any:
    return derived(lambda config, section: config.resolve(config.get(section, key)))


def _time_window(config: Config, section: str) -> TimeWindow:
    """Frames before and after t, as counts. `time_window_before` is a count in octrack's sections and a frame
    offset (-1 = one frame before) in OrganoidTracker's; a negative value can only be an offset, so it is read as
    one anywhere. A positive value in OrganoidTracker's section could be either, and is refused."""
    before, after = config.get(section, "time_window_before"), config.get(section, "time_window_after")
    found = config.raw(section, "time_window_before")
    if before > 0 and config.is_organoid_tracker_section(section):
        where = f"{config.path} [{found[1] if found else config.ini_section(section)}] time_window_before"
        raise UserError(f"{where} = {before}: in OrganoidTracker's [{config.ini_section(section)}] this is a frame "
                        f"offset, so {before} would start the window after t; write -{before} for {before} frame(s) "
                        f"before t, or 0 for none")
    return TimeWindow(abs(before), after)


def _trained_model_folders(config: Config, section: str) -> dict[str, Path]:
    """network name -> the model folder that this ini's training section of the network writes."""
    return {train_section.removeprefix("train_"): config.output_folder(train_section) /
            f"model_{_model_name(config, train_section)}"
            for train_section in TRAIN_SECTIONS if config.has_section(train_section)}


def _model_name(config: Config, section: str) -> str:
    """`NAME` of the model folder output_folder/model_NAME: OrganoidTracker's where its section is used."""
    return OT_MODEL_NAMES[section] if config.is_organoid_tracker_section(section) else section.removeprefix("train_")


def _patch_shape_zyx(config: Config, section: str) -> tuple[int, int, int]:
    x, y, z = config.get(section, "patch_shape")
    return z, y, x


def _augment(config: Config, section: str) -> AugmentSettings:
    """The augmentation keys as AugmentSettings: each part on by default, at the strength AugmentSettings sets."""
    intensity, noise = config.get(section, "augment_intensity"), config.get(section, "augment_noise")
    defaults = AugmentSettings()
    return AugmentSettings(
        flip=config.get(section, "augment_flip"), rotate=config.get(section, "augment_rotate"),
        scale=config.get(section, "augment_scale"),
        brightness=defaults.brightness if intensity else 0.0,
        contrast=defaults.contrast if intensity else (1.0, 1.0),
        gamma=defaults.gamma if intensity else (1.0, 1.0),
        gaussian_noise=defaults.gaussian_noise if noise else 0.0,
        poisson_noise=defaults.poisson_noise if noise else 0.0,
        depth_dimming=defaults.depth_dimming if config.get(section, "augment_depth_dimming") else 0.0)


@dataclass(frozen=True, kw_only=True)
class PrepareSection:
    """[prepare]: where the cache goes and how time points are held out for validation."""

    name: str
    config_file: Path = derived(lambda config, section: config.path)
    validation_fraction: float
    seed: int
    output_folder: Path = derived(lambda config, section: config.output_folder(section))
    cache_folder: Path = derived(lambda config, section: config.cache_folder(section))


@dataclass(frozen=True, kw_only=True)
class TrainSection:
    """The keys of a [train_NAME] section that every network reads; each network's own keys in a subclass."""

    name: str
    config_file: Path = derived(lambda config, section: config.path)
    epochs: int
    steps_per_epoch: int | None
    batch_size: int
    max_training_minutes: float | None
    learning_rate: float
    mixed_precision: str
    distribution: str
    patience: int
    seed: int
    patch_shape: tuple[int, int, int] = derived(_patch_shape_zyx)  # (z, y, x)
    time_window: TimeWindow = derived(_time_window)
    output_folder: Path = _resolved("output_folder")
    model_name: str = derived(_model_name)  # the model folder is output_folder/model_<model_name>
    pretrained_model_path: Path | None = _resolved("pretrained_model_path")
    augment: AugmentSettings = derived(_augment)


@dataclass(frozen=True, kw_only=True)
class DetectSection(TrainSection):
    """[train_detect]."""

    unet_levels: int
    unet_filters: int
    target_sigma_um: float
    min_distance_um: float
    peak_threshold: float | None
    match_distance_um: float
    division_patch_share: float
    # key -> why, for the sizes the ini leaves empty and data_defaults.py chose from the data ("spacing": the measure)
    chosen_from_data: dict[str, str] = derived(lambda config, section: {})


@dataclass(frozen=True, kw_only=True)
class ClassifierSection(TrainSection):
    """[train_divide], and the part of [train_link] that the two classifier networks share."""

    encoder_levels: int
    encoder_filters: int
    division_multiplier: float


@dataclass(frozen=True, kw_only=True)
class LinkSection(ClassifierSection):
    """[train_link]."""

    link_candidate_factor: float


@dataclass(frozen=True, kw_only=True)
class PredictSection:
    """[predict]: the model folders, and decoding values that replace a model's own where set (None: the
    model's)."""

    name: str
    config_file: Path = derived(lambda config, section: config.path)
    min_distance_um: float | None
    peak_threshold: float | None
    tentative_peak_fraction: float
    link_candidate_factor: float | None
    output_folder: Path = _resolved("output_folder")
    detect_model_folder: Path | None = _resolved("detect_model_folder")
    divide_model_folder: Path | None = _resolved("divide_model_folder")
    link_model_folder: Path | None = _resolved("link_model_folder")
    ctc_radius_um: float | None
    ctc_radius_px: float | None
    min_marginal_probability: float
    trained_model_folders: dict[str, Path] = derived(_trained_model_folders)

    def tentative_threshold(self, threshold: float) -> float | None:
        """The lowest peak kept, as a tentative detection, under a detection threshold; None: none kept."""
        return threshold * self.tentative_peak_fraction if self.tentative_peak_fraction else None

    def model_folder(self, network: str) -> Path:
        """`<network>_model_folder`; by default the first that exists of: the folder this ini's training section
        of the network writes, <output_folder>/model_<network> and OrganoidTracker's name for it
        (model_positions, ...); none existing, the first of them."""
        chosen = getattr(self, f"{network}_model_folder")
        if chosen is not None:
            return chosen
        candidates = [self.output_folder / f"model_{name}" for name in (network, OT_MODEL_NAMES[f"train_{network}"])]
        if network in self.trained_model_folders:
            candidates.insert(0, self.trained_model_folders[network])
        return next((folder for folder in candidates if folder.exists()), candidates[0])
