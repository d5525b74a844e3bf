"""`octrack train`, `train-detect`, `train-divide`, `train-link`: brings the cache up to date, then trains each
network with the engine (octrack/training.py)."""

from __future__ import annotations

from collections.abc import Callable

from octrack.config import Config, TrainSection
from octrack.dataset import require_voxel_size
from octrack.devices import log_device, resolve_precision
from octrack.errors import UserError
from octrack.networks import NETWORKS
from octrack.stages.prepare import cache_path, networks_in_config, prepare, read_section, section_for_data
from octrack.training import TrainOptions, TrainResult, train


def train_options(section: TrainSection, epochs: int | None) -> TrainOptions:
    """The engine's options from a [train_NAME] section (`epochs` from the command line replaces the ini's)."""
    return TrainOptions(
        epochs=epochs or section.epochs, batch_size=section.batch_size, learning_rate=section.learning_rate,
        patience=section.patience, seed=section.seed, steps_per_epoch=section.steps_per_epoch,
        pretrained_model_path=section.pretrained_model_path, output_folder=section.output_folder,
        max_minutes=section.max_training_minutes, mixed_precision=resolve_precision(section.mixed_precision),
        distribution=section.distribution, model_name=section.model_name)


def run_training(config: Config, names: list[str] | None = None, *, epochs: int | None = None,
                 restart: bool = False, report: Callable[[str], None] = print) -> list[TrainResult]:
    """Trains the named networks (default: those the ini has a [train_NAME] section for, else detection)."""
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs {epochs}: must be a whole number >= 1")
    names = names or networks_in_config(config)
    datasets, _ = prepare(config, report=report, networks=names)
    for dataset in datasets:
        require_voxel_size(dataset)  # targets and distances are in µm
    prepare_section = read_section(config)
    log_device()
    results = []
    for name in names:
        network = NETWORKS[name]
        section, _ = section_for_data(config, name, datasets)  # prepare said what it chose
        result = train(network.training(section, cache_path(prepare_section, name)), train_options(section, epochs),
                       restart=restart, report=report)
        report(result.describe())
        results.append(result)
    return results
