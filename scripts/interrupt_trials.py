"""Interruption trials: `kill -9` of octrack commands at random moments, then the re-run must give the result of
an uninterrupted run, and no file may look complete while it is not (docs/reliability.md, "Interruption").

On a tiny synthetic 2D time lapse with divisions (`octrack synth`'s generator), with tiny networks:
1. the reference: `prepare`, `train-detect`, `train-divide`, `train-link`, `predict` uninterrupted, each in the
   same folder, which is saved before each command (so that every trial starts a command from the same state, at
   the same absolute path, as the files' fingerprints hold their paths);
2. `--trials` rounds of one trial per command (with `--minutes`, no trial starts after that time): the folder
   as it was before the command, the command started and killed with SIGKILL `--kills` times (at a random moment between 15 % and 100 % of its reference duration; for training,
   every other trial (the first, third, ...) while its n-th checkpoint, best model or model folder is being written,
   n at random from 1 to 7), after each kill every
   .h5, .keras, .aut, .csv and .json file under a final name must open; then the command run to its end (the
   resume), and its result compared with the reference: the caches' datasets and attributes, the trained
   weights, the predicted positions, links and tracks.

Run (from the project root; about 15 minutes on 2 cores with the defaults):
    nice python scripts/interrupt_trials.py --trials 3
It prints one line per trial and the counts at the end; exit code 1 if any result differs or a file is broken.
"""

from __future__ import annotations

import argparse
import configparser
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

COMMANDS = ("prepare", "train-detect", "train-divide", "train-link", "predict")
TINY_DETECT = {"patch_shape": "48, 48, 1", "epochs": 3, "steps_per_epoch": 3, "batch_size": 2, "unet_levels": 2,
               "unet_filters": 4, "patience": 0}  # 3 epochs: checkpoints to resume from
TINY_CLASSIFIER = {"patch_shape": "24, 24, 1", "epochs": 3, "steps_per_epoch": 2, "batch_size": 4,
                   "encoder_levels": 2, "encoder_filters": 4, "patience": 0}
BEING_WRITTEN = re.compile(r"^\.(checkpoint_epoch\d+\.keras|best\.keras|model_\w+)\..*\.partial")
CHECKED_SUFFIXES = (".h5", ".keras", ".aut", ".csv", ".json")
WRITES = 7  # of a tiny training: a checkpoint and a best model per epoch (3), the model folder


@dataclass
class Counts:
    kills: int = 0
    at_a_write: int = 0  # kills while a checkpoint, best model or model folder was being written
    ended_before_the_kill: int = 0
    resumes: int = 0
    resumed_from_a_checkpoint: int = 0
    results_equal: int = 0
    results_different: list[str] = field(default_factory=list)
    files_opened: int = 0
    broken_files: list[str] = field(default_factory=list)


def octrack(folder: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "octrack", *arguments, "--config", str(folder / "organoid_tracker.ini")]


def make_movie(folder: Path) -> None:
    """A tiny 2D movie with divisions (`octrack synth`'s generator): time points 0-3 train, 4-5 validate; dataset 1
    of [predict] is detected, dataset 2 takes the true positions (so that the division and link steps have
    positions to score even where the tiny detector finds few)."""
    from octrack.synth import generate

    generate(folder, two_d=True, seed=4, time_points=6, size_xyz=(96, 96, 1), nuclei=8, division_rate=0.3)
    ini = folder / "organoid_tracker.ini"
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.read(ini)
    prepare = parser["prepare"]
    for key, value in list(prepare.items()):
        if key.endswith("_1"):
            prepare[key[:-1] + "2"] = value
    prepare.update(max_time_point_1="3", use_for_1="train", min_time_point_2="4", use_for_2="validation")
    parser["train_detect"] = {key: str(value) for key, value in TINY_DETECT.items()}
    for section in ("train_divide", "train_link"):
        parser[section] = {key: str(value) for key, value in TINY_CLASSIFIER.items()}
    predict = parser["predict"]
    for key, value in list(predict.items()):
        if key.endswith("_1"):
            predict[key[:-1] + "2"] = value.replace("predictions/1", "predictions/2")
    predict["positions_file_2"] = "ground_truth.aut"
    with open(ini, "w") as file:
        parser.write(file)


def run_to_end(folder: Path, command: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(octrack(folder, command), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`octrack {command}` failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.monotonic() - started, done.stdout


def run_and_kill(folder: Path, command: str, kill_after: float | None, at_write: int) -> str:
    """Starts the command and kills it (SIGKILL) after `kill_after` seconds, or, without one, as soon as the
    `at_write`-th checkpoint, best model or model folder is being written. Returns "killed", "killed at write N"
    or "ended"."""
    process = subprocess.Popen(octrack(folder, command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started, seen = time.monotonic(), set()
    while process.poll() is None:
        if kill_after is None:
            seen |= _being_written(folder / "training_output")
        if (time.monotonic() - started >= kill_after) if kill_after is not None else len(seen) >= at_write:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return "killed" if kill_after is not None else f"killed at write {at_write}"
        time.sleep(0.002)
    return "ended"


def _being_written(output: Path) -> set[str]:
    folders = [output, *(path for path in output.glob("training_*") if path.is_dir())] if output.is_dir() else []
    return {entry for folder in folders for entry in os.listdir(folder) if BEING_WRITTEN.match(entry)}


def files_to_check(folder: Path) -> list[Path]:
    """Every file under a final name (temporary files are hidden and named .partial; lock files hold no data)."""
    return [path for path in sorted(folder.rglob("*")) if path.is_file() and path.suffix in CHECKED_SUFFIXES
            and ".partial" not in path.name and not path.name.startswith(".octrack-")]


def opens(path: Path) -> bool:
    try:
        if path.suffix == ".h5":
            import h5py

            with h5py.File(path, "r") as file:
                file.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
        elif path.suffix == ".keras":
            import keras

            keras.saving.load_model(path, compile=False)
        elif path.suffix == ".aut":
            from octrack.tracking import load_tracking

            load_tracking(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        else:
            rows = list(csv.reader(path.open()))
            if not rows or any(len(row) != len(rows[0]) for row in rows):
                return False
        return True
    except Exception:  # noqa: BLE001 - any failure to open is what this looks for
        return False


def result_of(folder: Path, command: str) -> dict[str, Any]:
    """What the command produced, in a form that compares with ==."""
    output = folder / "training_output"
    if command == "prepare":
        return {path.name: _h5_contents(path) for path in sorted((output / "cache").glob("*.h5"))}
    if command.startswith("train-"):
        import keras

        model = keras.saving.load_model(output / f"model_{command[6:]}" / "model.keras", compile=False)
        return {"weights": [weights.tobytes() for weights in model.get_weights()]}
    return {str(path.relative_to(output)): path.read_text() for path in sorted(output.glob("predictions/*/*.csv"))}


def _h5_contents(path: Path) -> dict[str, Any]:
    import h5py

    contents: dict[str, Any] = {}
    with h5py.File(path, "r") as file:
        contents["/"] = {key: _plain(value) for key, value in file.attrs.items()}

        def add(name: str, item: Any) -> None:
            contents[name] = {key: _plain(value) for key, value in item.attrs.items()}
            if isinstance(item, h5py.Dataset):
                contents[name]["data"] = np.asarray(item[()]).tobytes()

        file.visititems(add)
    return contents


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def trial(snapshot: Path, folder: Path, command: str, kill_after: float | None, kills: int, reference: Any,
          counts: Counts, random: np.random.Generator) -> str:
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(snapshot, folder)
    outcomes = []
    for _ in range(kills):
        outcome = run_and_kill(folder, command, kill_after, int(random.integers(1, WRITES + 1)))
        outcomes.append(outcome)
        if outcome == "ended":
            counts.ended_before_the_kill += 1
            break
        counts.kills += 1
        counts.at_a_write += outcome.startswith("killed at write")
        _check_files(folder, counts)
    _, said = run_to_end(folder, command)
    if outcomes[-1] != "ended":
        counts.resumes += 1
        counts.resumed_from_a_checkpoint += "resuming" in said
    _check_files(folder, counts)
    equal = result_of(folder, command) == reference
    if equal:
        counts.results_equal += 1
    else:
        counts.results_different.append(f"{command} after {outcomes}")
    return f"{', '.join(outcomes)}; {'resumed from a checkpoint; ' if 'resuming' in said else ''}" \
           f"result {'equal' if equal else 'DIFFERENT'}"


def _check_files(folder: Path, counts: Counts) -> None:
    for path in files_to_check(folder):
        counts.files_opened += 1
        if not opens(path):
            counts.broken_files.append(str(path.relative_to(folder)))


def run_trials(work: Path, commands: tuple[str, ...], trials: int, kills: int, seed: int,
               report: Any = print, minutes: float | None = None) -> Counts:
    """The trials, round by round (one trial of each command per round), until `trials` rounds or, with
    `minutes`, until that time has passed (no new trial starts then)."""
    started = time.monotonic()
    random = np.random.default_rng(seed)
    folder, snapshots = work / "movie", work / "snapshots"
    for earlier in (folder, snapshots):
        shutil.rmtree(earlier, ignore_errors=True)
    make_movie(folder)
    references, durations = {}, {}
    for command in COMMANDS[:max(COMMANDS.index(command) for command in commands) + 1]:
        shutil.copytree(folder, snapshots / command)
        durations[command], _ = run_to_end(folder, command)
        references[command] = result_of(folder, command)
        report(f"reference `octrack {command}`: {durations[command]:.1f} s")
    counts = Counts()
    for number in range(trials):
        for command in commands:
            if minutes is not None and time.monotonic() - started > 60 * minutes:
                report(f"stopped after {minutes:g} minutes")
                return counts
            at_a_write = command.startswith("train-") and number % 2 == 0
            kill_after = None if at_a_write else float(random.uniform(0.15, 1.0) * durations[command])
            said = trial(snapshots / command, folder, command, kill_after, kills, references[command], counts,
                          random)
            when = "at a checkpoint write" if at_a_write else f"after {kill_after:.1f} s"
            report(f"{command} trial {number + 1} (kill {when}): {said}; so far {counts.kills} kills, "
                   f"{counts.files_opened} files opened, {len(counts.broken_files)} broken")
    return counts


def describe(counts: Counts) -> str:
    return (f"kills: {counts.kills} ({counts.at_a_write} while a checkpoint, best model or model folder was being "
            f"written; {counts.ended_before_the_kill} runs ended before their kill)\n"
            f"resumes: {counts.resumes} ({counts.resumed_from_a_checkpoint} from a training checkpoint)\n"
            f"results equal to the uninterrupted run: {counts.results_equal} of "
            f"{counts.results_equal + len(counts.results_different)}"
            + "".join(f"\n  DIFFERENT: {what}" for what in counts.results_different) + "\n"
            f"files opened after kills and resumes: {counts.files_opened}, broken: {len(counts.broken_files)}"
            + "".join(f"\n  BROKEN: {path}" for path in counts.broken_files))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="trials per command (default %(default)s)")
    parser.add_argument("--kills", type=int, default=1, help="kills per trial before the run to the end")
    parser.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, help="start no trial after this many minutes (default: no limit)")
    parser.add_argument("--work", type=Path, help="folder for the trials (default: a temporary one)")
    arguments = parser.parse_args()
    commands = tuple(command.strip() for command in arguments.commands.split(","))
    unknown = [command for command in commands if command not in COMMANDS]
    if unknown:
        parser.error(f"--commands: {unknown[0]} is not one of {', '.join(COMMANDS)}")
    with tempfile.TemporaryDirectory(prefix="octrack-interrupt-") as scratch:
        work = arguments.work or Path(scratch)
        counts = run_trials(work, commands, arguments.trials, arguments.kills, arguments.seed,
                            minutes=arguments.minutes)
    print(describe(counts))
    return 0 if not counts.results_different and not counts.broken_files else 1


if __name__ == "__main__":
    sys.exit(main())
