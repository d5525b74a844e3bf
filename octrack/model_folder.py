"""The model folder: `model.keras` and `settings.json`, everything prediction needs and nothing it must guess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from octrack import __version__
from octrack.errors import UserError
from octrack.files import atomic_path, write_text_atomic

MODEL_FILE = "model.keras"
SETTINGS_FILE = "settings.json"


def save_model_folder(folder: Path, model: Any, settings: dict[str, Any]) -> None:
    """Writes the model, then its settings (each atomically); settings name the octrack version."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / MODEL_FILE) as temporary:
        model.save(temporary)
    write_text_atomic(folder / SETTINGS_FILE,
                      json.dumps({**settings, "octrack_version": __version__}, indent=2, default=_plain))


def load_settings(folder: Path, network: str) -> dict[str, Any]:
    path = folder / SETTINGS_FILE
    if not path.exists():
        raise UserError(f"{folder}: not a model folder (no {SETTINGS_FILE}); train one with "
                        f"`octrack train-{network}` or point {network}_model_folder at one")
    try:
        settings = json.loads(path.read_text())
    except ValueError as error:
        raise UserError(f"{path}: unreadable ({error}); train the model again") from None
    if settings.get("network") != network:
        raise UserError(f"{path}: a {settings.get('network')} model, but a {network} model is needed here")
    return settings


def load_model_folder(folder: Path, network: str) -> tuple[Any, dict[str, Any]]:
    settings = load_settings(folder, network)
    return load_keras_model(folder / MODEL_FILE, f"the model of a {network} model folder; train it again"), settings


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
    """JSON for numpy numbers and tuples inside settings."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {value!r}")
