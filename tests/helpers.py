"""Helpers for tests: the real data folder, editing ini files, running the CLI."""

from __future__ import annotations

import configparser
import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_data(relative: str) -> Path:
    """A path in ../shared/data, or a skip where the real data are absent (e.g. a user's fresh clone)."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path} (only CI and developers have ../shared/data)")
    return path


def set_keys(ini: Path, section: str, **values: object) -> None:
    """Changes keys of an ini file in place, keeping everything else."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.read(ini)
    if not parser.has_section(section):
        parser.add_section(section)
    for key, value in values.items():
        if value is None:
            parser.remove_option(section, key)
        else:
            parser.set(section, key, str(value))
    with open(ini, "w") as file:
        parser.write(file)


def octrack(capsys: pytest.CaptureFixture, *arguments: str) -> str:
    """Runs an octrack command in this process; returns what it printed, failing the test on a nonzero exit."""
    from octrack.cli import main

    code = main(list(arguments))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def write_noise_movie(folder: Path, size_xyz: tuple[int, int, int], time_points: int, seed: int = 0) -> Path:
    """uint16 TIFFs of noise, one per time point (nuclei_tNNN.tif), for memory and speed checks on large frames."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    random = np.random.default_rng(seed)
    x, y, z = size_xyz
    for time_point in range(time_points):
        frame = random.integers(100, 1000, size=(z, y, x), dtype=np.uint16)
        tifffile.imwrite(folder / f"nuclei_t{time_point:03}.tif", frame)
    return folder


def write_tiny_detection_model(folder: Path, *, time_window: tuple[int, int] = (1, 1), patch_depth: int = 16,
                               levels: int = 2, filters: int = 2) -> Path:
    """An untrained detection model folder, fast to run; its output sits far below the peak threshold, so that
    decoding finds (almost) no peaks in noise."""
    from octrack.model_folder import save_model_folder
    from octrack.networks.detect_model import DetectSettings, build_model, unet_tile_multiple
    from octrack.time_window import TimeWindow
    from octrack.tracking import VoxelSize

    model = build_model(sum(time_window) + 1, patch_depth, levels, filters)
    kernel, _ = model.get_layer("centres").get_weights()
    model.get_layer("centres").set_weights([kernel, np.full(1, -6.0, dtype=np.float32)])
    save_model_folder(folder, model, DetectSettings(
        network="detect", time_window=TimeWindow(*time_window), patch_shape=(patch_depth, 64, 64),
        voxel_size=VoxelSize(0.32, 0.32, 2.0), unet_levels=levels, unet_filters=filters,
        tile_multiple_zyx=unet_tile_multiple(patch_depth, levels), min_distance_um=3.0, peak_threshold=0.5))
    return folder


@contextlib.contextmanager
def interrupted_after_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> Iterator[None]:
    """Inside the block, training raises KeyboardInterrupt (as Ctrl-C would) right after the checkpoint of `epoch`
    (counted from 1) is written; after it, training runs as usual."""
    from octrack.training import EpochCheckpoint

    original = EpochCheckpoint.on_epoch_end

    def interrupt(self: EpochCheckpoint, index: int, logs: dict[str, float] | None = None) -> None:
        original(self, index, logs)
        if index + 1 == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", interrupt)
    try:
        yield
    finally:
        monkeypatch.setattr(EpochCheckpoint, "on_epoch_end", original)


def refused(capsys: pytest.CaptureFixture, arguments: list, *fragments: str) -> str:
    """Runs the command line in process and checks that it refused the input as a user's mistake: exit code 2,
    one line on stderr (progress bars aside) that starts with "octrack: error: " and holds every fragment, no
    traceback and no tifffile object names. Returns that line."""
    from octrack.cli import main

    code = main([str(argument) for argument in arguments])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("octrack: error: "), err
    assert "Traceback" not in err and "<tifffile" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def prepare_args(movie: Path) -> list[str]:
    """`octrack prepare` on a movie folder's own ini."""
    return ["prepare", "--config", str(movie / "organoid_tracker.ini")]


def counted_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, original, *,
                  interrupt_at: int | None = None) -> list[int]:
    """Replaces `owner.name` by `original` that counts its calls (in the returned list) and, at call number
    `interrupt_at`, raises KeyboardInterrupt instead (as Ctrl-C would)."""
    calls: list[int] = []

    def counting(*arguments):
        calls.append(1)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return original(*arguments)

    monkeypatch.setattr(owner, name, counting)
    return calls
