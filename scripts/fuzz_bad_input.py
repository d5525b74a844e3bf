"""Bad input never crashes octrack and never fools it: generated broken inputs, each run through the command line.

Usage: python scripts/fuzz_bad_input.py [--cases N] [--seed S] [--subprocess K] [--verbose]

Each case copies a tiny synthetic movie (3D, 4 time points, with its ini and ground truth), breaks one input
(an ini value or the ini itself, an image file, an .aut, CSV or Cell Tracking Challenge file, a command-line value)
and runs the octrack command that reads it, in this process (`octrack.cli.main`; `--subprocess K`: the first K
cases as real `python -m octrack` runs). What counts as passing depends on the input:

- refused: exit code 2, exactly one line on stderr (besides progress bars), `octrack: error: ...`, naming the
  broken file or key; no traceback; no file left behind (the folder's files are as before the run, apart from the
  broken input itself).
- warned: legal but odd input (NaN pixels among finite ones, positions outside the image): exit 0 and a warning
  line naming the file; the result is checked where the case says how (e.g. the cache holds only finite values).
- accepted: legal input of an unusual kind (bool, int64, float64 images; an ini with a UTF-8 byte order mark):
  exit 0.

Prints one line per failure and the counts: cases tried, refused with one line, warned, accepted, failures.
`tests/test_bad_input.py` runs a sample of these generators; docs/reliability.md ("Bad input") records the counts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's octrack and tests.helpers

REFUSED, WARNED, ACCEPTED = "refused", "warned", "accepted"
INI = "organoid_tracker.ini"
_PROGRESS = re.compile(r"[^|\r\n]*\d+%\|[^|]*\|[^\]\r\n]*\]")  # a tqdm progress bar (a message may follow it)


@dataclass
class Case:
    """A broken input and what octrack must do with it."""

    name: str
    arguments: list[str]  # the octrack command line
    expect: str  # REFUSED, WARNED or ACCEPTED
    names: str = ""  # what the error or warning line must contain: the file or the key
    check: Callable[[], str | None] | None = None  # after exit 0: a problem with the result, or None
    changed: list[Path] = field(default_factory=list)  # inputs the case wrote (not outputs of octrack)


@dataclass(frozen=True)
class Outcome:
    case: Case
    code: int | str
    lines: list[str]
    problem: str | None


def make_movie(folder: Path) -> Path:
    """The tiny movie every case starts from: a synthetic 3D time lapse, its ini, and a CTC ground truth folder."""
    from octrack.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["synth", str(folder), "--time-points", "4", "--size", "8", "32", "32", "--nuclei", "4",
                     "--seed", "2"]) == 0
        assert main(["convert", str(folder / "ground_truth.csv"), str(folder / "ctc"), "--shape", "8", "32", "32",
                     "--ground-truth"]) == 0
    return folder


# Broken ini values: every key that takes a number, choice or list gets values that no key accepts
_BAD_VALUES = ["inf", "-inf", "nan", "1e400", str(10 ** 30), "abc", "0x10", "1,,2", "ä"]


def _checked_keys() -> list[tuple[str, bool]]:
    """(key, is a dataset key) for every key whose value is not a free path or text."""
    from octrack.config import DATASET_KEYS, KEYS

    free = ("output_folder", "cache_folder", "pretrained_model_path", "detect_model_folder", "divide_model_folder",
            "link_model_folder", "images_container", "images_pattern", "tracking_file", "predictions_folder")
    return [(name, name in DATASET_KEYS) for name in [*KEYS, *DATASET_KEYS] if name not in free]


def ini_value(movie: Path, random: np.random.Generator) -> Case:
    from tests.helpers import set_keys

    keys = _checked_keys()
    key, numbered = keys[random.integers(len(keys))]
    value = _BAD_VALUES[random.integers(len(_BAD_VALUES))]
    if numbered:
        set_keys(movie / INI, "prepare", **{f"{key}_1": value})
    else:
        set_keys(movie / INI, "DEFAULTS", **{key: value})
    return Case(f"ini {key} = {value}", ["prepare", "--config", str(movie / INI)], REFUSED,
                f"{key}_1" if numbered else key, changed=[movie / INI])


def ini_structure(movie: Path, random: np.random.Generator) -> Case:
    from tests.helpers import set_keys

    ini = movie / INI
    kind = ["no header", "garbage", "gap", "bom", "duplicate key", "stop"][random.integers(6)]
    text = ini.read_text()
    if kind == "no header":
        ini.write_text("epochs = 3\n" + text)
    elif kind == "garbage":
        ini.write_bytes(bytes(random.integers(0, 256, 200, dtype=np.uint8)))
    elif kind == "gap":
        set_keys(ini, "prepare", images_container_3="images", images_pattern_3="nuclei_t{time:03}.tif")
        return Case("ini: dataset 3 without 2", ["prepare", "--config", str(ini)], REFUSED, "images_container_3",
                    changed=[ini])
    elif kind == "bom":
        ini.write_bytes(b"\xef\xbb\xbf" + ini.read_bytes())
        return Case("ini with a UTF-8 byte order mark", ["prepare", "--config", str(ini)], ACCEPTED, changed=[ini])
    elif kind == "duplicate key":
        ini.write_text(text.replace("[prepare]\n", "[prepare]\nseed = 1\nseed = 2\n"))
    else:
        set_keys(ini, "prepare", images_container_2="<stop>", images_container_3="images")
        return Case("ini: <stop> ends the list on purpose", ["prepare", "--config", str(ini)], ACCEPTED,
                    changed=[ini])
    return Case(f"ini: {kind}", ["prepare", "--config", str(ini)], REFUSED, INI, changed=[ini])


# Image files
def _image(movie: Path, random: np.random.Generator) -> Path:
    return movie / "images" / f"nuclei_t{random.integers(4):03}.tif"


def damaged_tiff(movie: Path, random: np.random.Generator) -> Case:
    path = _image(movie, random)
    kinds = ["truncated", "zero bytes", "text", "magic and garbage", "2D among 3D", "RGB", "complex"]
    kind = kinds[random.integers(len(kinds))]
    if kind == "truncated":
        _cut_in_the_pixels(path, random)
    elif kind == "zero bytes":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an image\n")
    elif kind == "magic and garbage":
        path.write_bytes(b"II*\x00" + bytes(random.integers(0, 256, 500, dtype=np.uint8)))
    elif kind == "2D among 3D":
        tifffile.imwrite(path, np.zeros((32, 32), np.uint16))
    elif kind == "complex":
        tifffile.imwrite(path, tifffile.imread(path) * (1 + 1j))
    else:
        tifffile.imwrite(path, np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    return Case(f"image {kind}: {path.name}", ["prepare", "--config", str(movie / INI)], REFUSED, path.name,
                changed=[path])


def _cut_in_the_pixels(path: Path, random: np.random.Generator) -> None:
    """Truncates a TIFF file somewhere before the end of its pixel data (a file cut only in its trailing metadata
    still holds the whole image, and reading it is right)."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        size = path.stat().st_size
        end = min(series.dataoffset + series.nbytes, size) if series.dataoffset is not None else size
    path.write_bytes(path.read_bytes()[:int(end * random.uniform(0.0, 0.99))])


def odd_tiff(movie: Path, random: np.random.Generator) -> Case:
    """Legal images in unusual number types, and NaN/inf among finite pixels: read right (with a warning for the
    latter), and the cache holds only finite values."""
    path = _image(movie, random)
    pixels = tifffile.imread(path).astype(np.float64)
    kind = ["bool", "int64", "float64", "uint32", "int8", "NaN and inf", "float64 beyond float32"][random.integers(7)]
    if kind == "bool":
        stored = pixels > np.median(pixels)
    elif kind == "int64":
        stored = (pixels * 1e9).astype(np.int64)
    elif kind == "float64":
        stored = pixels / 7.0
    elif kind == "uint32":
        stored = pixels.astype(np.uint32)
    elif kind == "int8":
        stored = (pixels / pixels.max() * 254 - 127).astype(np.int8)
    elif kind == "NaN and inf":
        stored = pixels.astype(np.float32)
        flat = stored.reshape(-1)
        spots = random.choice(flat.size, size=int(random.integers(1, 50)), replace=False)
        flat[spots] = random.choice([np.nan, np.inf, -np.inf], size=len(spots))
    else:
        stored = pixels.copy()
        stored.reshape(-1)[: int(random.integers(1, 20))] = 1e300
    tifffile.imwrite(path, stored)
    expect = WARNED if kind in ("NaN and inf", "float64 beyond float32") else ACCEPTED
    return Case(f"image {kind}: {path.name}", ["prepare", "--config", str(movie / INI)], expect, path.name,
                check=lambda: _cache_is_finite(movie), changed=[path])


def all_non_finite(movie: Path, random: np.random.Generator) -> Case:
    path = _image(movie, random)
    value = [np.nan, np.inf, -np.inf][random.integers(3)]
    tifffile.imwrite(path, np.full((8, 32, 32), value, np.float32))
    return Case(f"image all {value}: {path.name}", ["prepare", "--config", str(movie / INI)], REFUSED, path.name,
                changed=[path])


def hyperstack(movie: Path, random: np.random.Generator) -> Case:
    """The movie as one ImageJ or OME hyperstack: cut short (refused, not read as one 2D frame), or with metadata
    that make a 3D movie 2D (refused: the annotations lie at many depths)."""
    from tests.helpers import set_keys

    movie_data = np.stack([tifffile.imread(movie / "images" / f"nuclei_t{t:03}.tif") for t in range(4)])
    path = movie / "movie.tif"
    kind = ["truncated ImageJ", "truncated OME", "3D as 2D"][random.integers(3)]
    if kind == "3D as 2D":
        tifffile.imwrite(path, movie_data.reshape(32, 32, 32), imagej=True, metadata={"axes": "TYX"})
    else:
        tifffile.imwrite(path, movie_data, imagej=kind == "truncated ImageJ", ome=kind == "truncated OME",
                         metadata={"axes": "TZYX"})
        _cut_in_the_pixels(path, random)
    set_keys(movie / INI, "prepare", images_container_1="movie.tif", images_pattern_1=None)
    return Case(f"hyperstack {kind}", ["prepare", "--config", str(movie / INI)], REFUSED,
                "tracking_file_1" if kind == "3D as 2D" else path.name, changed=[path, movie / INI])


# Tracking files
def broken_aut(movie: Path, random: np.random.Generator) -> Case:
    data = json.loads((movie / "ground_truth.aut").read_text())
    path = movie / "broken.aut"
    kinds = ["truncated JSON", "missing key", "non-numeric", "fractional time point", "negative time point",
             "NaN coordinate", "deep nesting", "unknown version", "a list", "same-time link", "null coordinates"]
    kind = kinds[random.integers(len(kinds))]
    entry = data["positions"][random.integers(len(data["positions"]))]
    track = data["tracks"][random.integers(len(data["tracks"]))]
    text = None
    if kind == "truncated JSON":
        whole = json.dumps(data)
        text = whole[:int(len(whole) * random.uniform(0.0, 0.99))]
    elif kind == "missing key":
        target = entry if random.integers(2) else track
        keys = ["coords_xyz_px", "time_point" if target is entry else "time_point_start"]
        del target[keys[random.integers(2)]]
    elif kind == "non-numeric":
        entry["coords_xyz_px"][0][random.integers(3)] = "abc"
    elif kind == "fractional time point":
        entry["time_point"] = entry["time_point"] + 0.5
    elif kind == "negative time point":
        entry["time_point"] = -1 - int(random.integers(5))
    elif kind == "NaN coordinate":
        entry["coords_xyz_px"][0][random.integers(3)] = float(random.choice([np.nan, np.inf, -np.inf]))
    elif kind == "deep nesting":
        text = "[" * 100_000 + "]" * 100_000
    elif kind == "unknown version":
        data["version"] = "v9"
    elif kind == "a list":
        text = json.dumps([data])
    elif kind == "same-time link":
        track["coords_xyz_px_before"] = [[1.0, 2.0, 3.0]]
        track["time_point_start"] = track["time_point_start"]
        data.setdefault("positions", []).append({"time_point": track["time_point_start"],
                                                 "coords_xyz_px": [[1.0, 2.0, 3.0]]})
        track["coords_xyz_px_before"] = [track["coords_xyz_px"][0]]  # a link from a position to itself
    else:
        entry["coords_xyz_px"][0] = None
    path.write_text(text if text is not None else json.dumps(data))
    return Case(f".aut {kind}", ["stats", str(path)], REFUSED, path.name, changed=[path])


def broken_csv(movie: Path, random: np.random.Generator) -> Case:
    lines = (movie / "ground_truth.csv").read_text().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    column = {name: index for index, name in enumerate(header.split(","))}
    row = rows[random.integers(len(rows))]
    kinds = ["NaN coordinate", "non-numeric", "duplicate id", "unknown parent", "parent not earlier", "own parent",
             "negative time point", "fractional time point", "three children", "missing column", "extra value"]
    kind = kinds[random.integers(len(kinds))]
    if kind == "NaN coordinate":
        row[column[["z", "y", "x"][random.integers(3)]]] = ["nan", "inf", "-inf"][random.integers(3)]
    elif kind == "non-numeric":
        row[column[["t", "z", "y", "x"][random.integers(4)]]] = "abc"
    elif kind == "duplicate id":
        row[column["node_id"]] = rows[0][column["node_id"]] if row is not rows[0] else rows[1][column["node_id"]]
    elif kind == "unknown parent":
        row[column["parent_id"]] = "99999"
    elif kind in ("parent not earlier", "own parent"):
        later = max(rows, key=lambda other: int(other[column["t"]]))
        row = later
        row[column["parent_id"]] = row[column["node_id"]] if kind == "own parent" else next(
            other[column["node_id"]] for other in rows if other[column["t"]] == row[column["t"]])
    elif kind == "negative time point":
        row[column["t"]] = str(-1 - int(random.integers(5)))
    elif kind == "fractional time point":
        row[column["t"]] = row[column["t"]] + ".5"
    elif kind == "three children":
        mother = next(other for other in rows if int(other[column["t"]]) == 0)
        next_id = max(int(other[column["node_id"]]) for other in rows) + 1
        for offset in range(3):
            child = list(mother)
            child[column["node_id"]], child[column["t"]] = str(next_id + offset), "1"
            child[column["x"]] = str(float(mother[column["x"]]) + 0.25 * (offset + 1))
            child[column["parent_id"]] = mother[column["node_id"]]
            rows.append(child)
    elif kind == "missing column":
        name = ["t", "y", "x"][random.integers(3)]
        header = ",".join(part if part != name else "other" for part in header.split(","))
    else:
        row.append("7")
    path = movie / "broken.csv"
    path.write_text("\n".join([header, *(",".join(one) for one in rows)]) + "\n")
    if kind == "three children":  # legal in candidate links (input of `track`), not in a lineage to score
        return Case(f"CSV {kind}", ["evaluate", "--ground-truth", str(path), "--predicted",
                                    str(movie / "ground_truth.csv")], REFUSED, path.name, changed=[path])
    return Case(f"CSV {kind}", ["track", str(path), "--output", str(movie / "tracks.aut")], REFUSED, path.name,
                changed=[path])


def broken_ctc(movie: Path, random: np.random.Generator) -> Case:
    folder = movie / "ctc" / "TRA"
    track_file = folder / "man_track.txt"
    rows = [line.split() for line in track_file.read_text().splitlines()]
    masks = sorted(folder.glob("man_track*.tif"))
    kinds = ["missing mask", "truncated mask", "zero-byte mask", "line left out", "unknown label", "wrong end",
             "duplicate label", "unknown parent", "non-numeric line", "negative begin"]
    kind = kinds[random.integers(len(kinds))]
    names = track_file.name
    if kind == "missing mask":
        mask = masks[random.integers(1, len(masks))]  # one with tracks in it (each frame has nuclei)
        mask.unlink()
        names = mask.name
    elif kind in ("truncated mask", "zero-byte mask"):
        mask = masks[random.integers(len(masks))]
        data = mask.read_bytes()
        mask.write_bytes(b"" if kind == "zero-byte mask" else data[:int(len(data) * random.uniform(0.05, 0.9))])
        names = mask.name
    elif kind == "line left out":
        del rows[random.integers(len(rows))]
    elif kind == "unknown label":
        rows.append([str(max(int(row[0]) for row in rows) + 1), "0", "0", "0"])
    elif kind == "wrong end":
        row = rows[random.integers(len(rows))]
        row[2] = str(int(row[2]) + int(random.integers(-1, 2) or 1))
        if int(row[2]) < int(row[1]):
            row[2] = str(int(row[1]) + 1)
    elif kind == "duplicate label":
        rows.append(list(rows[random.integers(len(rows))]))
    elif kind == "unknown parent":
        rows[random.integers(len(rows))][3] = "9999"
    elif kind == "non-numeric line":
        rows[random.integers(len(rows))][random.integers(4)] = "x"
    else:
        rows[random.integers(len(rows))][1] = "-1"
    if kind not in ("missing mask", "truncated mask", "zero-byte mask"):
        track_file.write_text("".join(" ".join(row) + "\n" for row in rows))
    return Case(f"CTC {kind}", ["stats", str(movie / "ctc")], REFUSED, names, changed=[folder])


def positions_outside(movie: Path, random: np.random.Generator) -> Case:
    """Positions outside the image: a few are left out with a warning (CTC output); most, and the dataset is
    refused (the annotations do not belong to the images as read)."""
    from tests.helpers import set_keys

    lines = (movie / "ground_truth.csv").read_text().splitlines()
    path = movie / "outside.csv"
    if random.integers(2):
        values = {"node_id": "9999", "t": "0", "z": "2", "y": str(random.integers(40, 1000)), "x": "5",
                  "parent_id": "-1"}
        row = ",".join(values.get(name, "") for name in lines[0].split(","))
        path.write_text("\n".join([*lines, row]) + "\n")
        return Case("CSV position outside the image (CTC output)", [
            "convert", str(path), str(movie / "out_ctc"), "--shape", "8", "32", "32"], WARNED, "outside the image",
            changed=[path])
    header, *rows = lines
    y = header.split(",").index("y")
    shifted = [row.split(",") for row in rows]
    for row in shifted:
        row[y] = str(float(row[y]) + 500)
    path.write_text("\n".join([header, *(",".join(row) for row in shifted)]) + "\n")
    set_keys(movie / INI, "prepare", tracking_file_1="outside.csv")
    return Case("annotations outside the images", ["prepare", "--config", str(movie / INI)], REFUSED,
                "tracking_file_1", changed=[path, movie / INI])


def command_line(movie: Path, random: np.random.Generator) -> Case:
    source, output = str(movie / "ground_truth.csv"), movie / "out_ctc"
    kinds = {
        "--shape 0": ["--shape", "0", "32", "32"],
        "--shape negative": ["--shape", "8", "-32", "32"],
        "--shape huge": ["--shape", "100000", "100000", "100000"],
        "--shape nan": ["--shape", "nan", "32", "32"],
        "--radius-px huge": ["--shape", "8", "32", "32", "--radius-px", "1e9"],
        "--radius-px nan": ["--shape", "8", "32", "32", "--radius-px", "nan"],
        "--radius-px negative": ["--shape", "8", "32", "32", "--radius-px", "-3"],
        "--voxel-size inf": ["--shape", "8", "32", "32", "--voxel-size", "inf", "1", "1"],
        "--voxel-size negative": ["--shape", "8", "32", "32", "--voxel-size", "2", "-1", "1"],
    }
    names = {"--shape": "--shape", "--radius-px": "radius", "--voxel-size": "--voxel-size"}
    if random.integers(len(kinds) + 1) == len(kinds):
        late = movie / "late.csv"
        late.write_text(f"node_id,t,z,y,x,parent_id\n0,{10 ** int(random.integers(7, 10))},2,5,5,-1\n")
        return Case("convert with t = 1e9", ["convert", str(late), str(output), "--shape", "8", "32", "32"],
                    REFUSED, "label images", changed=[late])
    kind = list(kinds)[random.integers(len(kinds))]
    return Case(f"convert {kind}", ["convert", source, str(output), *kinds[kind]], REFUSED,
                names[kind.split()[0]])


def other_options(movie: Path, random: np.random.Generator) -> Case:
    """Out-of-range values of the other commands' options: refused before anything is written."""
    truth = str(movie / "ground_truth.aut")
    kinds = {
        "view --fps 0": (["view", truth, "--fps", "0", "--output", str(movie / "view")], "--fps"),
        "view --fps nan": (["view", truth, "--fps", "nan", "--output", str(movie / "view")], "--fps"),
        "synth 1e8 time points": (["synth", str(movie / "synth"), "--time-points", "100000000"], "time points"),
        "synth huge size": (["synth", str(movie / "synth"), "--size", "100000", "100000", "100000"], "image size"),
        "evaluate --max-distance-um inf": (["evaluate", "--ground-truth", truth, "--predicted", truth,
                                            "--max-distance-um", "inf"], "--max-distance-um"),
        "predict --time-points 9:1": (["predict", "--config", str(movie / INI), "--time-points", "9:1"],
                                      "--time-points"),
    }
    kind = list(kinds)[random.integers(len(kinds))]
    return Case(kind, kinds[kind][0], REFUSED, kinds[kind][1])


GENERATORS: dict[str, Callable[[Path, np.random.Generator], Case]] = {
    "ini_value": ini_value, "ini_structure": ini_structure, "damaged_tiff": damaged_tiff, "odd_tiff": odd_tiff,
    "all_non_finite": all_non_finite, "hyperstack": hyperstack, "broken_aut": broken_aut, "broken_csv": broken_csv,
    "broken_ctc": broken_ctc, "positions_outside": positions_outside, "command_line": command_line,
    "other_options": other_options}


def _cache_is_finite(movie: Path) -> str | None:
    import h5py

    cache = movie / "training_output" / "cache" / "detect.h5"
    if not cache.exists():
        return f"{cache} not written"
    problems = []
    with h5py.File(cache, "r") as file:
        file.visititems(lambda name, item: problems.append(name) if isinstance(item, h5py.Dataset) and
                        item.dtype.kind == "f" and not np.isfinite(item[()]).all() else None)
    return f"the cache holds NaN or inf in {problems[0]}" if problems else None


# Running and judging
def run_in_process(arguments: list[str]) -> tuple[int | str, str]:
    """Exit code (or 'crash: ...' for an exception that escaped) and stderr of `octrack ARGUMENTS`."""
    from octrack.cli import main

    err = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        warnings.simplefilter("always")  # each case its own warnings, as a fresh process shows them
        try:
            code: int | str = main(arguments)
        except SystemExit as error:  # argparse
            code = error.code if isinstance(error.code, int) else 2
        except BaseException as error:  # noqa: BLE001: a crash is what this looks for
            code = f"crash: {type(error).__name__}: {str(error)[:200]}"
    return code, err.getvalue()


def run_subprocess(arguments: list[str]) -> tuple[int | str, str]:
    done = subprocess.run([sys.executable, "-m", "octrack", *arguments], capture_output=True, text=True,
                          timeout=300)
    return done.returncode, done.stderr


def judge(case: Case, code: int | str, stderr: str, before: set[Path], movie: Path) -> Outcome:
    lines = [line.strip() for line in re.split(r"[\r\n]", _PROGRESS.sub("", stderr)) if line.strip()]
    problem = None
    if "Traceback" in stderr or isinstance(code, str):
        problem = f"crashed: {code}" if isinstance(code, str) else "traceback on stderr"
    elif case.expect == REFUSED:
        left = sorted(path for path in _files(movie) - before if not _inside(path, case.changed))
        if code != 2:
            problem = f"exit {code}, expected 2"
        elif len(lines) != 1 or not lines[0].startswith("octrack: error: "):
            problem = f"{len(lines)} lines on stderr, expected one error line"
        elif case.names not in lines[0]:
            problem = f"the error does not name {case.names!r}"
        elif left:
            problem = f"left behind {left[0].relative_to(movie)}"
    elif code != 0:
        problem = f"exit {code}, expected 0"
    elif case.expect == WARNED and not any(case.names in line for line in lines):
        problem = f"no warning naming {case.names!r}"
    if problem is None and code == 0 and case.check is not None:
        problem = case.check()
    return Outcome(case, code, lines, problem)


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def _inside(path: Path, changed: list[Path]) -> bool:
    return any(path == one or one in path.parents for one in changed)


def run_case(name: str, seed: int, template: Path, work: Path, *, in_subprocess: bool = False) -> Outcome:
    movie = work / f"case_{seed}"
    shutil.rmtree(movie, ignore_errors=True)
    shutil.copytree(template, movie)
    case = GENERATORS[name](movie, np.random.default_rng(seed))
    before = _files(movie)
    code, stderr = (run_subprocess if in_subprocess else run_in_process)(case.arguments)
    outcome = judge(case, code, stderr, before, movie)
    shutil.rmtree(movie, ignore_errors=True)
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300, help="cases to generate (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (default %(default)s)")
    parser.add_argument("--subprocess", type=int, default=5,
                        help="run the first K cases as real `python -m octrack` processes (default %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    arguments = parser.parse_args()
    names = list(GENERATORS)
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="octrack_fuzz_") as temporary:
        work = Path(temporary)
        template = make_movie(work / "template")
        for index in range(arguments.cases):
            seed = arguments.seed + index
            outcome = run_case(names[index % len(names)], seed, template, work,
                               in_subprocess=index < arguments.subprocess)
            counts["tried"] += 1
            counts[outcome.case.expect if outcome.problem is None else "failures"] += 1
            if outcome.problem is not None or arguments.verbose:
                verdict = outcome.problem or "ok"
                print(f"{'FAIL' if outcome.problem else 'ok  '} [{seed}] {outcome.case.name}: {verdict}"
                      f"{' | ' + outcome.lines[-1][:300] if outcome.lines else ''}", flush=True)
    print(f"cases tried: {counts['tried']}; refused with exit 2 and one line naming the file or key: "
          f"{counts[REFUSED]}; warned (legal but odd, exit 0 with a warning): {counts[WARNED]}; accepted (legal, "
          f"exit 0): {counts[ACCEPTED]}; failures: {counts['failures']}")
    return 1 if counts["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
