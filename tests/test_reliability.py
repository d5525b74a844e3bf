"""Interruption, concurrent runs and a full disk: files written as whole units (octrack/files.py), the model
folder exchanged in one step, leftovers of killed runs removed, one writer at a time (octrack/lock.py), the cache
left alone where nothing changed, and a full disk as one line with the previous outputs intact."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from octrack.cache import CacheEntry, update_cache
from octrack.cli import main
from octrack.errors import UserError, is_disk_full
from octrack.files import atomic_path, remove_leftovers, write_text_atomic
from octrack.lock import lock_path, writing
from octrack.model_folder import load_model_folder, save_model_folder
from octrack.training import TrainOptions, train
from tests.fake_network import DenseSettings, DenseTraining
from tests.helpers import set_keys


def disk_full(*arguments: object, **keywords: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def quiet(_: str) -> None:
    """Reports go nowhere."""


# ---- whole units


def test_a_folder_replaces_the_old_one_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a").write_text("old a")
    (target / "b").write_text("old b")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "a").write_text("new a")
        raise RuntimeError("killed before b")
    assert (target / "a").read_text() == "old a" and (target / "b").read_text() == "old b"
    with atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "a").write_text("new a")
        (temporary / "b").write_text("new b")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
    assert (target / "a").read_text() == "new a" and (target / "b").read_text() == "new b"


def tiny_model() -> keras.Model:
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


def test_model_folder_is_one_unit(tmp_path, monkeypatch):
    folder = tmp_path / "model_dense"
    settings = DenseTraining().settings()
    old = tiny_model()
    save_model_folder(folder, old, settings)
    (folder / "notes.txt").write_text("kept")
    import octrack.model_folder

    def settings_then_fail(*arguments: object) -> None:
        raise KeyboardInterrupt  # a kill after the new model.keras is written, before its settings

    monkeypatch.setattr(octrack.model_folder.json, "dumps", settings_then_fail)
    with pytest.raises(KeyboardInterrupt):
        save_model_folder(folder, tiny_model(), settings.replace(hidden=99))
    monkeypatch.undo()
    model, loaded = load_model_folder(folder, DenseSettings)
    assert loaded.hidden == 8
    for a, b in zip(model.get_weights(), old.get_weights()):
        np.testing.assert_array_equal(a, b)
    save_model_folder(folder, tiny_model(), settings.replace(hidden=99))
    assert load_model_folder(folder, DenseSettings)[1].hidden == 99
    assert (folder / "notes.txt").read_text() == "kept"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model_dense"]


def test_leftovers_of_killed_runs_are_removed(tmp_path):
    (tmp_path / ".detect.h5.abc.partial.h5").write_text("half")
    (tmp_path / ".model_detect.xyz.partial").mkdir()
    (tmp_path / ".link.h5.abc.partial.h5").write_text("another cache's")
    (tmp_path / "detect.h5").write_text("whole")
    removed = remove_leftovers(tmp_path, ".detect.h5.") + remove_leftovers(tmp_path, ".model_detect.")
    assert len(removed) == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == [".link.h5.abc.partial.h5", "detect.h5"]


def test_training_removes_leftovers_and_resumes(tmp_path):
    folder = tmp_path / "out"
    options = TrainOptions(epochs=1, batch_size=8, learning_rate=0.01, patience=0, seed=1, steps_per_epoch=2,
                           pretrained_model_path=None, output_folder=folder)
    train(DenseTraining(), options, report=quiet)
    leftovers = [folder / ".model_dense.k1.partial", folder / "training_dense" / ".best.keras.k2.partial.keras"]
    leftovers[0].mkdir()
    leftovers[1].write_text("half a model")
    train(DenseTraining(), options, report=quiet)
    assert not any(path.exists() for path in leftovers)


# ---- the cache


def entries(value: float) -> list[CacheEntry]:
    def build(group: h5py.Group) -> None:
        group["data"] = np.full(3, value)

    return [CacheEntry(f"t{t}", f"fingerprint {t} {value}", build, {"split": "train"}) for t in range(3)]


def test_cache_is_not_rewritten_when_nothing_changed(tmp_path):
    path = tmp_path / "detect.h5"
    assert update_cache(path, entries(1.0), {"network": "detect"}).built == 3
    before = path.stat()
    report = update_cache(path, entries(1.0), {"network": "detect"})
    assert (report.built, report.reused) == (0, 3)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert update_cache(path, entries(1.0), {"network": "detect", "patch": 2}).reused == 3  # attributes: rewritten
    assert path.stat().st_ino != before.st_ino
    assert update_cache(path, entries(2.0), {"network": "detect", "patch": 2}).built == 3


def the_error_line(stderr: str) -> str:
    """The one line of an error (progress bars aside), failing the test on a traceback or more lines."""
    lines = [line for line in stderr.splitlines() if "octrack: error" in line or "Traceback" in line]
    assert len(lines) == 1 and lines[0].startswith("octrack: error"), stderr
    return lines[0]


# ---- one writer at a time


def hold_lock_in_another_process(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from octrack.lock import lock_path, writing\n"
            "with writing(Path(sys.argv[1]), 'train-detect', 'model_detect'):\n"
            "    print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(tmp_path):
    holder = hold_lock_in_another_process(tmp_path)
    try:
        with pytest.raises(UserError) as refused, writing(tmp_path, "train-detect", "model_detect"):
            pytest.fail("a second writer got the lock")
        message = str(refused.value)
        assert "another octrack command is writing model_detect" in message and f"process {holder.pid}" in message
        assert "\n" not in message
        with writing(tmp_path, "train-link", "model_link"):  # another network's training may run beside it
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(tmp_path, "train-detect").exists()  # left by the killed holder, locked by no one
    with writing(tmp_path, "train-detect", "model_detect"):
        with writing(tmp_path, "train-detect", "model_detect"):  # the same process may take it again
            pass
    assert not lock_path(tmp_path, "train-detect").exists()  # a run that ends removes its lock file


def test_two_trainings_of_one_model_are_refused(tmp_path, capsys, movie_3d):
    holder = hold_lock_in_another_process(movie_3d / "training_output")
    try:
        assert main(["train-detect", "--config", str(movie_3d / "organoid_tracker.ini"), "--epochs", "1"]) == 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    error = the_error_line(capsys.readouterr().err)
    assert "training_output: another octrack command is writing model_detect" in error


# ---- a full disk


def test_disk_full_is_recognised_also_when_wrapped():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:
        try:
            disk_full()
        except OSError as error:
            raise ValueError("saving failed") from error
    except ValueError as wrapped:
        assert is_disk_full(wrapped)
    assert is_disk_full(RuntimeError("Can't write data (file write failed: errno = 28, error message = ...)"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_full_disk_keeps_the_previous_file(tmp_path):
    target = tmp_path / "tracks.csv"
    write_text_atomic(target, "old")
    with pytest.raises(UserError, match="tracks.csv: the disk is full"):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            disk_full()
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["tracks.csv"]


def one_line_exit_2(capsys: pytest.CaptureFixture, *arguments: str) -> str:
    code = main(list(arguments))
    error = the_error_line(capsys.readouterr().err)
    assert code == 2 and "disk is full" in error
    return error


def test_full_disk_in_prepare(capsys, movie_3d, monkeypatch):
    from octrack.networks import detect

    ini = str(movie_3d / "organoid_tracker.ini")
    assert main(["prepare", "--config", ini]) == 0
    cache = movie_3d / "training_output" / "cache" / "detect.h5"
    before = cache.read_bytes()
    (movie_3d / "images" / "nuclei_t003.tif").touch()  # t = 2 and 3 must be rebuilt
    monkeypatch.setattr(detect, "write_array", disk_full)
    one_line_exit_2(capsys, "prepare", "--config", ini)
    assert cache.read_bytes() == before
    assert not [path for path in cache.parent.iterdir() if "partial" in path.name]


def test_full_disk_in_training_keeps_the_checkpoint(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "out"
    options = TrainOptions(epochs=1, batch_size=8, learning_rate=0.01, patience=0, seed=1, steps_per_epoch=2,
                           pretrained_model_path=None, output_folder=folder)
    train(DenseTraining(), options, report=quiet)
    state = (folder / "training_dense" / "state.json").read_text()
    monkeypatch.setattr(keras.Model, "save", disk_full)
    with pytest.raises(UserError, match=r"best.keras: the disk is full"):
        train(DenseTraining(), TrainOptions(**{**options.__dict__, "epochs": 2}), report=quiet)
    assert (folder / "training_dense" / "state.json").read_text() == state
    monkeypatch.undo()
    assert json.loads(state)["epoch"] == 1
    load_model_folder(folder / "model_dense", DenseSettings)


def test_full_disk_in_convert(capsys, movie_3d, tmp_path, monkeypatch):
    import octrack.files

    target = tmp_path / "out" / "converted.csv"
    target.parent.mkdir()
    target.write_text("previous")
    monkeypatch.setattr(octrack.files.os, "replace", disk_full)
    assert "converted.csv: the disk is full" in one_line_exit_2(capsys, "convert", str(movie_3d / "ground_truth.aut"),
                                                                str(target))
    assert os.listdir(target.parent) == ["converted.csv"] and target.read_text() == "previous"


def test_full_disk_in_predict_keeps_the_previous_results(capsys, movie_3d, monkeypatch):
    import octrack.tracking.aut

    ini = movie_3d / "organoid_tracker.ini"
    set_keys(ini, "predict", positions_file_1="ground_truth.aut")
    arguments = ["predict", "--config", str(ini), "--steps", "positions,tracks"]
    assert main(arguments) == 0
    folder = movie_3d / "training_output" / "predictions" / "1"
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file() and not path.name.startswith(".")}
    monkeypatch.setattr(octrack.tracking.aut.json, "dumps", disk_full)  # outside any atomic write
    one_line_exit_2(capsys, *arguments)
    assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file() and not path.name.startswith(".")} == before
