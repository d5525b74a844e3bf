"""The engine: the one trainer of every network. It knows no network.

A network supplies a `NetworkTraining` (its model, loss, batches, settings and final report); this module does
the rest: `keras.Model.fit`, a checkpoint after every epoch, exact resume, the best model by validation loss,
early stopping, a time budget, CSV and TensorBoard logs, a plot of the curves, and the model folder; on
several devices or machines where the ini's `distribution` asks for it (octrack/distribution.py).

Exact resume: batch number k of the whole run is a pure function of (seed, k) (`SeededBatches`), so a resumed
run draws the same batches as an uninterrupted one; weights and optimizer state come from the checkpoint. The
checkpoint is written under a new name and only then named in `state.json` (written atomically), so a
crash at any moment leaves a state file that points at a complete checkpoint.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np

from octrack.distribution import Placement, place
from octrack.errors import UserError
from octrack.files import atomic_path, remove_leftovers, write_text_atomic
from octrack.lock import writing
from octrack.model_folder import ModelSettings, TrainingRecord, load_keras_model, save_model_folder

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# Threads that make batches: one core is left to the training loop (on 2 cores, 1 thread measured 9 % waiting
# for data against 17 % with 2, at the same speed: docs/benchmarks.md).
DATA_WORKERS = min(8, max(1, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class TrainOptions:
    epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int
    steps_per_epoch: int | None
    pretrained_model_path: Path | None
    output_folder: Path
    max_minutes: float | None = None
    mixed_precision: str = "float32"
    distribution: str = "none"
    model_name: str | None = None  # the model goes to output_folder/model_<model_name>; None = the network's name


class SeededBatches(keras.utils.PyDataset):
    """An endless stream of training batches: batch i is `make_batch` with a random generator seeded by
    (seed, first_step + i) alone, so the batches do not depend on the worker thread that makes them, nor on
    where a run was resumed."""

    def __init__(self, seed: int, first_step: int, workers: int = DATA_WORKERS):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
        self.seed, self.first_step = seed, first_step

    @property
    def num_batches(self) -> None:
        return None

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.make_batch(np.random.default_rng([self.seed, self.first_step + index]))

    def make_batch(self, rng: np.random.Generator) -> tuple[Any, Any]:
        """(inputs, targets) of one batch, every random choice from `rng`."""
        raise NotImplementedError


@dataclass(frozen=True)
class FinalReport:
    """What a network reports on its best model: scores to print, and its settings completed by what the
    validation data decided (e.g. a peak threshold, a calibration)."""

    scores: dict[str, Any]
    settings: ModelSettings


class NetworkTraining(Protocol):
    """What a network tells the trainer."""

    name: str

    def build_model(self) -> Any: ...

    def loss(self) -> Callable: ...

    def training_batches(self, batch_size: int, seed: int, first_step: int) -> SeededBatches: ...

    def validation_batches(self, batch_size: int) -> Any:
        """A finite keras PyDataset, the same every epoch."""

    def samples_per_pass(self) -> int:
        """Training samples in one pass over the training data (sets the default steps per epoch)."""

    def settings(self) -> ModelSettings:
        """Everything prediction needs; also compared on resume."""

    def final_report(self, model: Any) -> FinalReport:
        """Scores on the validation data, and the settings with what they decided."""


@dataclass
class TrainState:
    epoch: int = 0
    best_epoch: int = 0
    best_validation_loss: float = math.inf
    epochs_without_improvement: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # the model's settings as JSON, compared on resume
    steps_per_epoch: int = 0
    seed: int = 0
    stopped_early_at_target: int | None = None  # the `epochs` of the run that early stopping ended


@dataclass
class TrainResult:
    model_folder: Path
    state: TrainState
    report: dict[str, Any]

    def describe(self) -> str:
        state = self.state
        lines = [f"model: {self.model_folder}",
                 f"best epoch {state.best_epoch} of {state.epoch}, validation loss {state.best_validation_loss:.5f}"]
        lines += [f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}"
                  for key, value in self.report.items()]
        return "\n".join(lines)


class TrainingFolders:
    def __init__(self, output_folder: Path, name: str):
        self.model = output_folder / f"model_{name}"
        self.training = output_folder / f"training_{name}"

    @property
    def state(self) -> Path:
        return self.training / STATE_FILE

    @property
    def best(self) -> Path:
        """The best model so far; it becomes the model folder, with its final settings, when training ends."""
        return self.training / "best.keras"


def train(network: NetworkTraining, options: TrainOptions, *, restart: bool = False,
          report: Callable[[str], None] = print) -> TrainResult:
    """Trains `network`, resuming where an earlier run stopped; one process at a time per model (the chief's
    lock, octrack/lock.py), which first removes what killed runs left half-written."""
    name = options.model_name or network.name
    placement = place(options.distribution)
    if not placement.is_chief:
        return _train(network, options, placement, restart, report)
    with writing(options.output_folder, f"train-{name}", f"model_{name} and training_{name}"):
        folders = TrainingFolders(options.output_folder, name)
        remove_leftovers(options.output_folder, f".{folders.model.name}.")
        remove_leftovers(folders.training)
        return _train(network, options, placement, restart, report)


def _train(network: NetworkTraining, options: TrainOptions, placement: Placement, restart: bool,
           report: Callable[[str], None]) -> TrainResult:
    name = options.model_name or network.name
    folders = TrainingFolders(options.output_folder, name)
    state = TrainState() if restart else _load_state(folders)
    model_settings = network.settings().replace(mixed_precision=options.mixed_precision)
    settings = model_settings.to_json()
    if state.checkpoint and state.settings != settings:
        raise UserError(f"{folders.state}: the ini changed since this training started ({_changed(state.settings, settings)}); "
                        f"run again with --restart to start over, or undo the change to resume")
    steps = options.steps_per_epoch or max(1, math.ceil(network.samples_per_pass() / options.batch_size))
    if state.checkpoint and state.steps_per_epoch != steps:
        raise UserError(f"{folders.state}: steps_per_epoch changed from {state.steps_per_epoch} to {steps}; "
                        f"run again with --restart, or set steps_per_epoch = {state.steps_per_epoch}")
    placement.check_batch_size(options.batch_size)
    state.settings, state.steps_per_epoch, state.seed = settings, steps, options.seed
    with placement.scope(), placement.writable_folder(options.output_folder) as writable:
        model = _starting_model(network, options, folders, state, report)
        if state.stopped_early_at_target == options.epochs:
            report(f"{network.name}: training stopped early at epoch {state.epoch} (patience {options.patience}); "
                   f"ask for more with --epochs, or start over with --restart")
        elif state.epoch < options.epochs:
            state.stopped_early_at_target = None
            report(f"training {network.name}: epochs {state.epoch + 1}–{options.epochs}, {steps} steps of "
                   f"{options.batch_size} samples each{_on_replicas(placement, options.batch_size)}")
            model.fit(network.training_batches(options.batch_size, options.seed, state.epoch * steps),
                      validation_data=network.validation_batches(options.batch_size),
                      epochs=options.epochs, initial_epoch=state.epoch, steps_per_epoch=steps, shuffle=False,
                      callbacks=_callbacks(network, options, TrainingFolders(writable, name), state,
                                           placement),
                      verbose=1 if sys.stdout.isatty() else 2)
        else:
            report(f"{network.name}: already trained for {state.epoch} epochs (ask for more with --epochs)")
    if not placement.is_chief:
        report(f"{network.name}: this worker's part is done; the chief writes {folders.model}")
        return TrainResult(folders.model, state, {})
    best = load_keras_model(folders.best, "the best model of this training; run with --restart")
    final = network.final_report(best)
    record = TrainingRecord(best_epoch=state.best_epoch, epochs=state.epoch,
                            validation_loss=state.best_validation_loss, distribution=placement.distribution,
                            replicas=placement.replicas)
    save_model_folder(folders.model, best, final.settings.replace(mixed_precision=options.mixed_precision,
                                                                  training=record))
    return TrainResult(folders.model, state, final.scores)


def _on_replicas(placement: Placement, batch_size: int) -> str:
    if placement.distribution == "none":
        return ""
    return f" ({placement.distribution}: {placement.replicas} replicas of {batch_size // placement.replicas})"


def _load_state(folders: TrainingFolders) -> TrainState:
    if not folders.state.exists():
        return TrainState()
    try:
        state = TrainState(**json.loads(folders.state.read_text()))
    except (ValueError, TypeError) as error:
        raise UserError(f"{folders.state}: unreadable training state ({error}); run with --restart") from None
    if state.checkpoint and not (folders.training / state.checkpoint).exists():
        raise UserError(f"{folders.state}: its checkpoint {state.checkpoint} is missing; run with --restart")
    return state


def _changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    return ", ".join(f"{key}: {old.get(key)} → {new.get(key)}" for key in keys[:3])


def _starting_model(network: NetworkTraining, options: TrainOptions, folders: TrainingFolders,
                    state: TrainState, report: Callable[[str], None]) -> Any:
    if state.checkpoint:
        report(f"resuming {network.name} from {folders.training / state.checkpoint} (epoch {state.epoch})")
        return load_keras_model(folders.training / state.checkpoint, "a checkpoint; run with --restart",
                           custom_objects={network.loss().__name__: network.loss()}, compile=True)
    keras.utils.set_random_seed(options.seed)
    model = _build_model(network, options.mixed_precision)
    if options.pretrained_model_path:
        _load_pretrained(model, options.pretrained_model_path, report)
    compile_for_training(model, options.learning_rate, network.loss())
    return model


def compile_for_training(model: Any, learning_rate: float, loss: Callable) -> None:
    """Adam and the network's loss: how every training step of octrack is compiled.

    The optimizer's variables are made here, not in the first step: TensorFlow traces a step that creates
    variables twice (seconds each: a third of a short training's time)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    model.optimizer.build(model.trainable_variables)


def _build_model(network: NetworkTraining, precision: str) -> Any:
    """The network with its layers computing in `precision` (each layer keeps the policy it was built with,
    also in the saved model; the global policy is restored at once)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        return network.build_model()
    finally:
        keras.config.set_dtype_policy(previous)


def _load_pretrained(model: Any, folder: Path, report: Callable[[str], None]) -> None:
    path = folder / "model.keras" if folder.is_dir() else folder
    pretrained = load_keras_model(path, "pretrained_model_path: give a model folder written by octrack train")
    try:
        model.set_weights(pretrained.get_weights())
    except ValueError as error:
        raise UserError(f"pretrained_model_path: {path} does not fit this network ({error}); use a model "
                        f"trained with the same network settings") from None
    report(f"starting from the weights of {path}")


def _callbacks(network: NetworkTraining, options: TrainOptions, folders: TrainingFolders,
               state: TrainState, placement: Placement) -> list[Any]:
    callbacks = [EpochCheckpoint(network, options, folders, state, placement)]
    tensorboard = _tensorboard(folders.training / "tensorboard")
    if tensorboard is not None:
        callbacks.append(tensorboard)
    return callbacks


def _tensorboard(folder: Path) -> Any:
    """TensorBoard logs where the backend can write them (the TensorFlow backend)."""
    if keras.backend.backend() != "tensorflow":
        return None
    return keras.callbacks.TensorBoard(str(folder), write_graph=False, profile_batch=0)


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: checkpoint, state, best model, CSV log, curves; early stopping by patience.

    Every worker of a multi-worker run does the same, each in its own folder (only the chief's is the
    output folder), so that all stop at the same epoch."""

    def __init__(self, network: NetworkTraining, options: TrainOptions, folders: TrainingFolders,
                 state: TrainState, placement: Placement):
        super().__init__()
        self.network, self.options, self.folders, self.state = network, options, folders, state
        self.placement = placement
        self.started = time.monotonic()
        self.epoch_started = self.started

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epoch_started = self.validation_started = time.monotonic()

    def on_test_begin(self, logs: dict[str, float] | None = None) -> None:
        self.validation_started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = {key: float(value) for key, value in (logs or {}).items()}
        state = self.state
        state.epoch = epoch + 1
        state.history.append({"epoch": state.epoch, **logs,
                              "train_seconds": round(self.validation_started - self.epoch_started, 2),
                              "seconds": round(time.monotonic() - self.epoch_started, 2)})
        validation_loss = logs.get("val_loss", logs.get("loss", math.inf))
        if validation_loss < state.best_validation_loss:
            state.best_validation_loss, state.best_epoch = validation_loss, state.epoch
            state.epochs_without_improvement = 0
            self.folders.training.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.folders.best) as temporary:
                self.model.save(temporary)
        else:
            state.epochs_without_improvement += 1
        if 0 < self.options.patience <= state.epochs_without_improvement:
            log.info(f"stopping early: no better validation loss for {self.options.patience} epochs")
            state.stopped_early_at_target = self.options.epochs
            self.model.stop_training = True
        self._save_checkpoint()
        write_history(self.folders.training, state.history)
        if self.placement.any_worker(self._next_epoch_would_overrun()):
            log.info(f"stopping after epoch {state.epoch}: the next would end after max_training_minutes = "
                     f"{self.options.max_minutes:g}")
            self.model.stop_training = True

    def _next_epoch_would_overrun(self) -> bool:
        if self.options.max_minutes is None:
            return False
        now = time.monotonic()
        return (now - self.started) + (now - self.epoch_started) > 60 * self.options.max_minutes

    def _save_checkpoint(self) -> None:
        folder = self.folders.training
        folder.mkdir(parents=True, exist_ok=True)
        previous = self.state.checkpoint
        name = f"checkpoint_epoch{self.state.epoch:04d}.keras"
        with atomic_path(folder / name) as temporary:
            self.model.save(temporary)
        self.state.checkpoint = name
        write_text_atomic(self.folders.state, json.dumps(asdict(self.state), indent=1))
        if previous and previous != name:
            (folder / previous).unlink(missing_ok=True)


def write_history(folder: Path, history: list[dict[str, float]]) -> None:
    """log.csv and curves.png of the whole run (rewritten each epoch, so a resumed run logs once per epoch)."""
    columns = list(dict.fromkeys(key for row in history for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(folder / "log.csv", text.getvalue())
    plot_curves(folder / "curves.png", history)


def plot_curves(path: Path, history: list[dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    epochs = [row["epoch"] for row in history]
    for key in (key for key in history[0] if key != "epoch" and "loss" in key):
        axes.plot(epochs, [row.get(key, math.nan) for row in history], marker="o", markersize=3,
                  label={"loss": "training loss", "val_loss": "validation loss"}.get(key, key))
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.set_yscale("log")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
