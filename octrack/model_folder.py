"""The model folder: `model.keras` and `settings.json`, everything prediction needs and nothing it must guess.

`settings.json` is written and read only here, through `ModelSettings` (each network adds its own fields in
a subclass). Its file format stays what it always was: sizes written x, y, z as OrganoidTracker writes them
(`patch_shape_xyz`, `voxel_size_um_xyz`), the time window as [frames before, frames after]; inside octrack
the same values are (z, y, x) and typed. Keys this version does not know are kept as they were.

OrganoidTracker's own model folders are a second format (`OrganoidTrackerSettings`): their settings.json names
the model's `type` (positions, divisions, links), the time window as signed frame offsets [first, last] and,
for divisions and links, `patch_shape_zyx`; octrack writes the same fields into the folders of the
OrganoidTracker models it trains further, next to its own, so that both programs load them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from octrack import __version__
from octrack.errors import UserError
from octrack.files import atomic_path
from octrack.time_window import TimeWindow
from octrack.tracking.model import VoxelSize

MODEL_FILE = "model.keras"
SETTINGS_FILE = "settings.json"
OT_TYPE_KEY = "type"  # the key that makes a settings.json OrganoidTracker's
SettingsT = TypeVar("SettingsT", bound="ModelSettings")


def stored(name: str | None = None, *, write: Callable[[Any], Any] | None = None,
           read: Callable[[Any], Any] | None = None, default: Any = dataclasses.MISSING,
           omitted_when_none: bool = False) -> Any:
    """A settings field stored in settings.json under `name` (default: the field's), converted by `write` and
    `read`; `omitted_when_none` leaves a None value out of the file (a value only some models have)."""
    metadata = {"json": name, "write": write, "read": read, "omitted_when_none": omitted_when_none}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _xyz(values: tuple[float, ...]) -> list[float]:
    return list(reversed(values))


def _zyx_ints(values: list[float]) -> tuple[int, ...]:
    return tuple(int(value) for value in reversed(values))


def _voxel_size_xyz(voxel_size: VoxelSize) -> list[float]:
    return [float(voxel_size.x_um), float(voxel_size.y_um), float(voxel_size.z_um)]


def _voxel_size(values: list[float]) -> VoxelSize:
    return VoxelSize(*(float(value) for value in values))


@dataclass(frozen=True, kw_only=True)
class TrainingRecord:
    """How the model of a folder was trained: its epoch, the run's length, and where it ran."""

    best_epoch: int
    epochs: int
    validation_loss: float
    distribution: str = "none"
    replicas: int = 1

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(values: dict[str, Any]) -> TrainingRecord:
        return TrainingRecord(**values)


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """What every network's settings.json holds; each network adds its own fields in a subclass."""

    NETWORK: ClassVar[str] = ""  # the network whose folders these settings describe

    network: str = stored()
    time_window: TimeWindow = stored(write=TimeWindow.to_json, read=TimeWindow.from_json)
    patch_shape: tuple[int, int, int] = stored("patch_shape_xyz", write=_xyz, read=_zyx_ints)  # (z, y, x)
    voxel_size: VoxelSize = stored("voxel_size_um_xyz", write=_voxel_size_xyz, read=_voxel_size)  # trained at
    mixed_precision: str = stored(default="float32")
    normalization: dict[str, Any] = stored(default={})
    augmentation: dict[str, Any] = stored(default={})
    validation_scores: dict[str, Any] | None = stored(default=None, omitted_when_none=True)
    # settings chosen from the data where the ini left them empty: key -> why, and the "spacing" (data_defaults.py)
    chosen_from_data: dict[str, str] | None = stored(default=None, omitted_when_none=True)
    training: TrainingRecord | None = stored(write=TrainingRecord.to_json, read=TrainingRecord.from_json,
                                             default=None, omitted_when_none=True)
    octrack_version: str | None = stored(default=None, omitted_when_none=True)
    unknown: dict[str, Any] = field(default_factory=dict)  # keys of settings.json this version does not know

    @classmethod
    def describes(cls, values: dict[str, Any]) -> bool:
        """Whether a settings.json's content is of this kind (its network's, and octrack's own format)."""
        return values.get("network") == cls.NETWORK and OT_TYPE_KEY not in values

    @classmethod
    def wanted(cls) -> str:
        """The kind of model folder these settings read, for messages."""
        return f"a {cls.NETWORK} model"

    def to_json(self) -> dict[str, Any]:
        """settings.json's content (before the version is added on saving)."""
        values: dict[str, Any] = {}
        for spec in fields(self):
            if "json" not in spec.metadata:
                continue
            value = getattr(self, spec.name)
            if value is None and spec.metadata["omitted_when_none"]:
                continue
            write = spec.metadata["write"]
            values[spec.metadata["json"] or spec.name] = write(value) if write and value is not None else value
        return _plain({**values, **self.unknown})

    @classmethod
    def from_json(cls: type[SettingsT], values: dict[str, Any], where: Path) -> SettingsT:
        """The settings of a settings.json (`where`, for messages)."""
        arguments, known = {}, set()
        for spec in fields(cls):
            if "json" not in spec.metadata:
                continue
            name = spec.metadata["json"] or spec.name
            known.add(name)
            if name not in values:
                if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                    raise UserError(f"{where}: no `{name}`; this is not a complete {cls.__name__} model folder, "
                                    f"train the model again")
                continue
            read, value = spec.metadata["read"], values[name]
            try:
                arguments[spec.name] = read(value) if read and value is not None else value
            except (TypeError, ValueError, KeyError) as error:
                raise UserError(f"{where}: `{name}` = {value!r} is not valid ({error}); train the model again") \
                    from None
        return cls(**arguments, unknown={key: value for key, value in values.items() if key not in known})

    def replace(self: SettingsT, **changes: Any) -> SettingsT:
        return dataclasses.replace(self, **changes)


def _signed_window(window: TimeWindow) -> list[int]:
    return [-window.before, window.after]


def _window_of_signed(values: list[int]) -> TimeWindow:
    first, last = (int(value) for value in values)
    if first > last:
        raise ValueError("the first frame offset is after the last")
    return TimeWindow(-first, last)


def _zyx(values: list[float]) -> tuple[int, ...]:
    return tuple(int(value) for value in values)


@dataclass(frozen=True, kw_only=True)
class OrganoidTrackerSettings(ModelSettings):
    """settings.json of an OrganoidTracker model folder, e.g. `{"type": "positions", "time_window": [0, 1]}`.

    The fields OrganoidTracker reads: `type`; `time_window` as signed offsets of the first and last frame
    ([-1, 1] = t-1, t, t+1), typed as a `TimeWindow` inside octrack; for divisions and links `patch_shape_zyx`
    (z, y, x as written) and the Platt fields of the subclasses. octrack's own fields (`network`, the voxel size
    of the data it was trained further on, the training record) are optional here: OrganoidTracker's folders
    lack them and OrganoidTracker ignores them. A subclass per type names OT_TYPE and octrack's NETWORK."""

    OT_TYPE: ClassVar[str] = ""

    ot_type: str = stored(OT_TYPE_KEY)
    network: str = stored(default="")  # octrack's name of the network; OrganoidTracker's folders have none
    time_window: TimeWindow = stored(write=_signed_window, read=_window_of_signed)
    patch_shape: tuple[int, int, int] | None = stored("patch_shape_zyx", write=list, read=_zyx, default=None,
                                                      omitted_when_none=True)  # (z, y, x)
    voxel_size: VoxelSize | None = stored("voxel_size_um_xyz", write=_voxel_size_xyz, read=_voxel_size,
                                          default=None, omitted_when_none=True)  # of the data it was trained on

    @classmethod
    def describes(cls, values: dict[str, Any]) -> bool:
        return values.get(OT_TYPE_KEY) == cls.OT_TYPE

    @classmethod
    def wanted(cls) -> str:
        return f"an octrack {cls.NETWORK} model or an OrganoidTracker {cls.OT_TYPE} model"

    @classmethod
    def from_json(cls: type[SettingsT], values: dict[str, Any], where: Path) -> SettingsT:
        return super().from_json({"network": cls.NETWORK, **values}, where)  # type: ignore[misc]


def is_organoid_tracker_folder(folder: Path) -> bool:
    """Whether a model folder is OrganoidTracker's (or one octrack trained further from one): its settings.json
    names a `type`. False where there is no readable settings.json (loading then says what is wrong)."""
    try:
        values = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and OT_TYPE_KEY in values


def _described(values: Any) -> str:
    """What a settings.json's content says its model is, for messages."""
    if not isinstance(values, dict):
        return "not a settings object"
    if OT_TYPE_KEY in values:
        return f"an OrganoidTracker {values[OT_TYPE_KEY]} model"
    return f"a {values.get('network')} model"


def save_model_folder(folder: Path, model: Any, settings: ModelSettings) -> None:
    """Writes the model and its settings (which name the octrack version) as one unit: a new folder that
    replaces the old one in one step, so that no interruption pairs a new model with old settings. Other files
    a user kept in the old folder are carried over."""
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        model.save(temporary / MODEL_FILE)
        (temporary / SETTINGS_FILE).write_text(
            json.dumps(settings.replace(octrack_version=__version__).to_json(), indent=2), encoding="utf-8")
        for kept in (folder.iterdir() if folder.is_dir() else ()):
            if kept.name not in (MODEL_FILE, SETTINGS_FILE):
                (shutil.copytree if kept.is_dir() else shutil.copy2)(kept, temporary / kept.name)


def load_settings(folder: Path, kind: type[SettingsT]) -> SettingsT:
    """The settings of a model folder, which must be of `kind`'s network."""
    network = kind.NETWORK
    path = folder / SETTINGS_FILE
    if not path.exists():
        raise UserError(f"{folder}: not a model folder (no {SETTINGS_FILE}); train one with "
                        f"`octrack train-{network}` or point {network}_model_folder at one")
    try:
        values = json.loads(path.read_text())
    except ValueError as error:
        raise UserError(f"{path}: unreadable ({error}); train the model again") from None
    if not isinstance(values, dict) or not kind.describes(values):
        raise UserError(f"{path}: {_described(values)}, but {kind.wanted()} is needed here")
    return kind.from_json(values, path)


def load_model_folder(folder: Path, kind: type[SettingsT]) -> tuple[Any, SettingsT]:
    settings = load_settings(folder, kind)
    model = load_keras_model(folder / MODEL_FILE, f"the model of a {settings.network} model folder; train it again")
    return model, settings


def load_keras_model(path: Path, what: str, *, custom_objects: dict[str, Any] | None = None,
                     compile: bool = False) -> Any:
    """A saved Keras model, or a UserError naming the file and what it should have been."""
    import keras

    if not path.is_file():
        raise UserError(f"{path}: not found; expected {what}")
    try:
        return keras.saving.load_model(path, custom_objects=custom_objects, compile=compile)
    except (ValueError, OSError, TypeError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path}: not a readable Keras model ({first_line}); expected {what}") from None


def _plain(value: Any) -> Any:
    """JSON-ready values: numpy numbers and arrays as Python numbers and lists, tuples as lists."""
    return json.loads(json.dumps(value, default=lambda item: item.tolist() if hasattr(item, "tolist") else str(item)))
